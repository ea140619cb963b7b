namespace PureFlux.Model.QwenImage;

/// <summary>
/// Qwen-Image's 3-axis RoPE positions and tables (diffusers QwenEmbedRope with scale_rope=True; facts from
/// transformer_qwenimage.py, diffusers @ 58eb52c0; the code is ours):
/// <list type="bullet">
/// <item>image token (r, c) of an h × w token grid → (frame 0, r − ⌈h/2⌉, c − ⌈w/2⌉): centred rows and columns;</item>
/// <item>text token k → max(⌊h/2⌋, ⌊w/2⌋) + k on all three axes;</item>
/// <item>factor j of head_dim/2: the first a0/2 use the frame position, the next a1/2 the row, the last a2/2 the column
/// (axes_dims_rope = [a0, a1, a2]), with frequency 1 / θ^(2i/a) in float32 and angle = position · frequency in float32;</item>
/// <item>applied to interleaved pairs (2j, 2j+1) as a complex multiplication (<c>Rope.ApplyInterleaved</c>).</item>
/// </list>
/// </summary>
public static class QwenImageRope
{
    /// <summary>Image positions [h·w, 3] (frame, row, col), row-major over the grid.</summary>
    public static long[] ImagePositions(int rows, int cols)
    {
        var p = new long[rows * cols * 3];
        int r0 = rows - rows / 2, c0 = cols - cols / 2;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                int i = (r * cols + c) * 3;
                p[i + 1] = r - r0;
                p[i + 2] = c - c0;
            }
        return p;
    }

    /// <summary>Text positions [T]: max(⌊h/2⌋, ⌊w/2⌋) + k.</summary>
    public static long[] TextPositions(int rows, int cols, int textLength)
    {
        int start = Math.Max(rows / 2, cols / 2);
        return Enumerable.Range(0, textLength).Select(k => (long)(start + k)).ToArray();
    }

    /// <summary>Per-axis float32 frequencies 1 / θ^(2i/a), rounded as torch computes them (pow, then reciprocal, in float32).</summary>
    private static float[] Frequencies(int axisDim)
    {
        var f = new float[axisDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            float exponent = (float)(2 * i) / axisDim;
            float pow = (float)Math.Pow(QwenImageTransformerConfig.RopeTheta, exponent);
            f[i] = 1f / pow;
        }
        return f;
    }

    /// <summary>
    /// cos/sin of the complex factors for positions [S, 3] (one (frame, row, col) triple per token): [S, head_dim/2].
    /// </summary>
    public static (float[] Cos, float[] Sin) Factors(ReadOnlySpan<long> positions, int[] axesDims)
    {
        int s = positions.Length / 3, half = axesDims.Sum() / 2;
        var cos = new float[s * half];
        var sin = new float[s * half];
        int j0 = 0;
        for (int a = 0; a < 3; a++)
        {
            var f = Frequencies(axesDims[a]);
            for (int p = 0; p < s; p++)
            {
                float pos = positions[p * 3 + a];
                for (int i = 0; i < f.Length; i++)
                {
                    float angle = pos * f[i];
                    cos[p * half + j0 + i] = (float)Math.Cos(angle);
                    sin[p * half + j0 + i] = (float)Math.Sin(angle);
                }
            }
            j0 += f.Length;
        }
        return (cos, sin);
    }

    /// <summary>Text positions [T] → the same index on all three axes, [T, 3].</summary>
    public static long[] OnAllAxes(long[] positions) => positions.SelectMany(p => new[] { p, p, p }).ToArray();

    /// <summary>[S, head_dim/2] factors → [S, head_dim] with each factor twice (the layout Rope.ApplyInterleaved takes).</summary>
    public static float[] Interleave(float[] half)
    {
        var full = new float[half.Length * 2];
        for (int i = 0; i < half.Length; i++) full[2 * i] = full[2 * i + 1] = half[i];
        return full;
    }
}
