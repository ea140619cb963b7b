using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace PureFlux.Model.Layers;

/// <summary>
/// One forward's token merge on a joint sequence [text; image tokens on a rows × cols grid; other rows], for one sample:
/// <see cref="Merge"/> averages each merged image token into its destination (S rows → S' groups, text and other rows
/// untouched), <see cref="Unmerge"/> copies every destination's result back to the tokens merged into it (S' → S), and
/// <see cref="Cos"/> / <see cref="Sin"/> [S', head_dim] are the RoPE rows of the kept tokens: a merged token takes its
/// destination's position (it is averaged into it, and the destination keeps the row it had).
/// </summary>
public sealed class TokenMergePlan : IDisposable
{
    internal TokenMergePlan(RowGrouping merge, RowGrouping unmerge, Tensor cos, Tensor sin, int merged)
    {
        (Merge, Unmerge, Cos, Sin, MergedTokens) = (merge, unmerge, cos, sin, merged);
    }

    public RowGrouping Merge { get; }
    public RowGrouping Unmerge { get; }
    public Tensor Cos { get; }
    public Tensor Sin { get; }
    /// <summary>Image tokens merged away (r): the merged sequence has S − r rows.</summary>
    public int MergedTokens { get; }
    public int Rows => Unmerge.Groups;
    public int MergedRows => Merge.Groups;

    public void Dispose()
    {
        Merge.Dispose();
        Unmerge.Dispose();
        Cos.Dispose();
        Sin.Dispose();
    }
}

/// <summary>
/// Token merging (the experiment switch <c>tome RATIO</c>), after ToMe for Stable Diffusion (Bolya &amp; Hoffman, 2023,
/// "Token Merging for Fast Stable Diffusion"; its bipartite soft matching with 2×2 destination strides): the image
/// tokens are split into destinations (the top-left token of every 2×2 cell of the grid, as tomesd without its random
/// pick, so runs are repeatable) and sources (the other three); each source is matched to its most similar destination
/// by the cosine similarity of their keys, and the r = ⌊ratio · N⌋ best-matched sources (at most all of them, so 0.75 is the
/// most a 2×2 stride can merge) are averaged into their destinations. The merged sequence keeps the original order.
/// </summary>
public static class TokenMerging
{
    /// <summary>r for a ratio on a rows × cols grid: ⌊ratio · N⌋, at most the number of sources.</summary>
    public static int MergeCount(double ratio, int rows, int cols)
    {
        if (!(ratio >= 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"tome ratio {ratio}: expected 0 ≤ ratio < 1");
        int n = rows * cols;
        return Math.Min((int)Math.Floor(ratio * n), n - Destinations(rows, cols).Length);
    }

    /// <summary>Image-token indices (row-major on the grid) of the destinations: the top-left of every 2×2 cell.</summary>
    public static int[] Destinations(int rows, int cols)
    {
        var dst = new List<int>();
        for (int h = 0; h < rows; h += 2)
            for (int w = 0; w < cols; w += 2) dst.Add(h * cols + w);
        return dst.ToArray();
    }

    /// <summary>
    /// The bipartite matching on the host: for image tokens on a rows × cols grid with keys [N, D] (row-major), returns
    /// for every token the token it is merged into (its own index when it is kept). <paramref name="similarity"/>(src, dst)
    /// gives the [S_src, S_dst] cosine similarities of the L2-normalised keys (the model computes it with the device GEMM).
    /// Ties go to the lower index, so the plan is deterministic.
    /// </summary>
    public static int[] Match(int rows, int cols, int merge, Func<int[], int[], float[]> similarity)
    {
        int n = rows * cols;
        var target = Enumerable.Range(0, n).ToArray();
        if (merge == 0) return target;
        var dst = Destinations(rows, cols);
        var isDst = new bool[n];
        foreach (int t in dst) isDst[t] = true;
        var src = Enumerable.Range(0, n).Where(t => !isDst[t]).ToArray();
        if (merge > src.Length) throw new ArgumentOutOfRangeException(nameof(merge), $"{merge} tokens to merge but only {src.Length} sources");
        var scores = similarity(src, dst);
        var best = new int[src.Length];
        var bestScore = new float[src.Length];
        for (int i = 0; i < src.Length; i++)
        {
            var row = scores.AsSpan(i * dst.Length, dst.Length);
            int j = 0;
            for (int c = 1; c < row.Length; c++) if (row[c] > row[j]) j = c;
            (best[i], bestScore[i]) = (j, row[j]);
        }
        var order = Enumerable.Range(0, src.Length).OrderByDescending(i => bestScore[i]).ThenBy(i => i).Take(merge);
        foreach (int i in order) target[src[i]] = dst[best[i]];
        return target;
    }

    /// <summary>
    /// The plan for one sample: image keys [N = rows·cols, D] on the device (the projection of the block before the merged
    /// ones), a joint sequence of <paramref name="sequenceRows"/> rows with the image tokens at rows textLen .. textLen+N−1,
    /// and its RoPE tables cos/sin [sequenceRows, head_dim].
    /// </summary>
    public static TokenMergePlan Plan(Tensor imageKeys, int rows, int cols, double ratio, int textLen, int sequenceRows, Tensor cos, Tensor sin)
    {
        const string op = nameof(TokenMerging);
        int n = rows * cols;
        Check.Rank(op, "image keys", imageKeys, 2);
        Check.That(imageKeys.Shape[0] == n, op, $"image keys {imageKeys.Shape}: expected {n} rows for a {rows}×{cols} token grid");
        Check.That(textLen >= 0 && textLen + n <= sequenceRows, op, $"{textLen} text + {n} image rows do not fit a sequence of {sequenceRows}");
        var dev = imageKeys.Device;
        int d = imageKeys.Shape[1];
        int merge = MergeCount(ratio, rows, cols);
        var target = Match(rows, cols, merge, (src, dst) =>
        {
            // Cosine similarity = dot products of unit rows: normalise on the host, one [S_src, S_dst] GEMM on the device.
            var keys = imageKeys.ToFloatArray();
            for (int t = 0; t < n; t++)
            {
                var row = keys.AsSpan(t * d, d);
                float norm = TensorPrimitives.Norm(row);
                if (norm > 0) TensorPrimitives.Divide(row, norm, row);
            }
            float[] Pick(int[] ids)
            {
                var m = new float[ids.Length * d];
                for (int i = 0; i < ids.Length; i++) keys.AsSpan(ids[i] * d, d).CopyTo(m.AsSpan(i * d, d));
                return m;
            }
            using var a = Tensor.FromSpan<float>(dev, Pick(src), new Shape(src.Length, d));
            using var b = Tensor.FromSpan<float>(dev, Pick(dst), new Shape(dst.Length, d));
            using var s = Tensor.Empty(dev, DType.F32, src.Length, dst.Length);
            Gemm.Linear(a, b, null, s);
            return s.ToFloatArray();
        });

        // Kept rows in their original order; each image destination's group lists itself, then its sources in index order.
        var keptIndex = new int[sequenceRows];
        var offsets = new List<int> { 0 };
        var members = new List<int>();
        var sourcesOf = new List<int>[n];
        for (int t = 0; t < n; t++)
            if (target[t] != t) (sourcesOf[target[t]] ??= []).Add(t);
        var positions = new List<int>();
        for (int r = 0; r < sequenceRows; r++)
        {
            int t = r - textLen;
            bool image = t >= 0 && t < n;
            if (image && target[t] != t) continue; // merged away
            keptIndex[r] = positions.Count;
            positions.Add(r);
            members.Add(r);
            if (image && sourcesOf[t] is { } list) members.AddRange(list.Select(x => x + textLen));
            offsets.Add(members.Count);
        }
        var unmerge = new int[sequenceRows];
        for (int r = 0; r < sequenceRows; r++)
        {
            int t = r - textLen;
            unmerge[r] = t >= 0 && t < n && target[t] != t ? keptIndex[target[t] + textLen] : keptIndex[r];
        }

        RowGrouping? mergeGroups = null, unmergeGroups = null;
        Tensor? mc = null, ms = null;
        try
        {
            mergeGroups = new RowGrouping(dev, sequenceRows, offsets.ToArray(), members.ToArray());
            unmergeGroups = RowGrouping.Gather(dev, positions.Count, unmerge);
            using var kept = RowGrouping.Gather(dev, sequenceRows, positions.ToArray());
            mc = Tensor.Empty(dev, DType.F32, positions.Count, cos.Shape[1]);
            ms = Tensor.Empty(dev, DType.F32, positions.Count, sin.Shape[1]);
            RowGroups.Mean(cos, kept, mc);
            RowGroups.Mean(sin, kept, ms);
            return new TokenMergePlan(mergeGroups, unmergeGroups, mc, ms, merge);
        }
        catch
        {
            mergeGroups?.Dispose();
            unmergeGroups?.Dispose();
            mc?.Dispose();
            ms?.Dispose();
            throw;
        }
    }
}
