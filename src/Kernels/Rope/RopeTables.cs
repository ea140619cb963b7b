namespace PureFlux.Kernels;

/// <summary>Host-side cos/sin tables for the two rotary embeddings. Tables are [S, D] row-major float arrays.</summary>
public static class RopeTables
{
    /// <summary>
    /// FLUX.2 multi-axis RoPE (diffusers Flux2PosEmbed): ids [S, A] row-major (A = axesDims.Length, 4 for FLUX.2:
    /// t, h, w, l); per axis i with d_i dims, freq_k = 1 / theta^(2k / d_i) and angle = pos · freq_k in float64,
    /// cos/sin rounded to float32 once and repeated twice (dims 2k and 2k+1 share a frequency); axes concatenated.
    /// Returns cos, sin, each [S, sum(axesDims)]. With <paramref name="float32Angles"/> the float64 angle is rounded to
    /// float32 before cos/sin (Z-Image: torch.polar of the float32 angles) instead of rounding cos/sin of the float64 angle.
    /// </summary>
    public static (float[] Cos, float[] Sin) Flux2(ReadOnlySpan<long> ids, int[] axesDims, double theta, bool float32Angles = false)
    {
        ArgumentNullException.ThrowIfNull(axesDims);
        int axes = axesDims.Length;
        if (axes == 0) throw new ArgumentException("RopeTables.Flux2: axesDims is empty");
        foreach (var d in axesDims)
            if (d <= 0 || d % 2 != 0) throw new ArgumentException($"RopeTables.Flux2: axesDims [{string.Join(", ", axesDims)}] must be even and positive");
        if (ids.Length % axes != 0)
            throw new ArgumentException($"RopeTables.Flux2: {ids.Length} ids do not form [S, {axes}] rows");
        if (!(theta > 0)) throw new ArgumentException($"RopeTables.Flux2: theta is {theta}; expected > 0");
        int s = ids.Length / axes, dim = axesDims.Sum();
        var cos = new float[s * dim];
        var sin = new float[s * dim];
        int offset = 0;
        for (int a = 0; a < axes; a++)
        {
            int d = axesDims[a];
            for (int k = 0; k < d / 2; k++)
            {
                // diffusers: theta ** (arange(0, d, 2, float64) / d); positions are ids.float() promoted to float64.
                double freq = 1.0 / Math.Pow(theta, 2.0 * k / d);
                for (int p = 0; p < s; p++)
                {
                    double angle = (double)(float)ids[p * axes + a] * freq;
                    if (float32Angles) angle = (float)angle;
                    float c = (float)Math.Cos(angle), sn = (float)Math.Sin(angle);
                    int at = p * dim + offset + 2 * k;
                    cos[at] = cos[at + 1] = c;
                    sin[at] = sin[at + 1] = sn;
                }
            }
            offset += d;
        }
        return (cos, sin);
    }

    /// <summary>
    /// Qwen3 / Llama rotate-half RoPE tables for positions 0..positions−1: freq_k = 1 / theta^(2k / D) and
    /// emb = cat(freqs, freqs). Computed in float32 step by step as transformers does (inv_freq in float32,
    /// position · inv_freq in float32, then cos/sin of that float32 angle), which is what the reference model sees.
    /// Returns cos, sin, each [positions, headDim].
    /// </summary>
    public static (float[] Cos, float[] Sin) RotateHalf(int positions, int headDim, double theta)
    {
        if (positions < 0) throw new ArgumentException($"RopeTables.RotateHalf: positions is {positions}; expected ≥ 0");
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentException($"RopeTables.RotateHalf: headDim {headDim} must be even and positive");
        if (!(theta > 0)) throw new ArgumentException($"RopeTables.RotateHalf: theta is {theta}; expected > 0");
        int half = headDim / 2;
        var invFreq = new float[half];
        for (int k = 0; k < half; k++)
        {
            // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all float32.
            float exponent = (float)(2 * k) / headDim;
            invFreq[k] = 1f / (float)Math.Pow((float)theta, exponent);
        }
        var cos = new float[positions * headDim];
        var sin = new float[positions * headDim];
        for (int p = 0; p < positions; p++)
        {
            for (int k = 0; k < half; k++)
            {
                float angle = p * invFreq[k];
                float c = (float)Math.Cos(angle), sn = (float)Math.Sin(angle);
                cos[p * headDim + k] = cos[p * headDim + half + k] = c;
                sin[p * headDim + k] = sin[p * headDim + half + k] = sn;
            }
        }
        return (cos, sin);
    }
}
