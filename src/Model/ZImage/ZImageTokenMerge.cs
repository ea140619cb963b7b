using PureFlux.Model.Layers;

namespace PureFlux.Model.ZImage;

/// <summary>
/// Token merging (<c>tome</c>) on Z-Image's unified sequence, whose items are ragged segments [image rows (pads
/// included); caption rows]: one <see cref="TokenMergePlan"/> per item over its segment (the real image tokens merged,
/// pad and caption rows kept), the merged segments laid out back to back, and their RoPE rows (each plan's). A block's
/// branch reads <see cref="Merge"/>d rows and writes back through <see cref="Unmerge"/>.
/// </summary>
public sealed class ZImageTokenMerge : IDisposable
{
    private readonly TokenMergePlan[] _plans;
    private readonly IReadOnlyList<TokenSegment> _segments;

    /// <param name="plans">One plan per item, over the item's whole unified segment (plan rows = segment length).</param>
    /// <param name="segments">The items' unified segments.</param>
    public ZImageTokenMerge(TokenMergePlan[] plans, IReadOnlyList<TokenSegment> segments)
    {
        if (plans.Length != segments.Count) throw new ArgumentException($"{plans.Length} merge plans for {segments.Count} items");
        for (int b = 0; b < plans.Length; b++)
            if (plans[b].Rows != segments[b].Length)
                throw new ArgumentException($"item {b}: a merge plan over {plans[b].Rows} rows for a segment of {segments[b].Length}");
        _plans = plans;
        _segments = segments;
        var merged = new TokenSegment[plans.Length];
        int offset = 0;
        for (int b = 0; b < plans.Length; b++)
        {
            merged[b] = new TokenSegment(offset, plans[b].MergedRows);
            offset += plans[b].MergedRows;
        }
        Segments = merged;
        Rows = offset;
        var dev = plans[0].Cos.Device;
        int hd = plans[0].Cos.Shape[1];
        Cos = Tensor.Empty(dev, DType.F32, Rows, hd);
        Sin = Tensor.Empty(dev, DType.F32, Rows, hd);
        for (int b = 0; b < plans.Length; b++)
        {
            plans[b].Cos.CopyTo(Cos.Slice(merged[b].Offset, merged[b].Length));
            plans[b].Sin.CopyTo(Sin.Slice(merged[b].Offset, merged[b].Length));
        }
    }

    /// <summary>Rows of the merged sequence (Σ of the merged segments).</summary>
    public int Rows { get; }
    /// <summary>The items' segments in the merged sequence.</summary>
    public IReadOnlyList<TokenSegment> Segments { get; }
    /// <summary>RoPE rows of the merged sequence [Rows, head_dim]: a merged token keeps its destination's.</summary>
    public Tensor Cos { get; }
    public Tensor Sin { get; }

    /// <summary>x [N, D] (the unified sequence) → y [Rows, D]: each kept row the mean of its group.</summary>
    public void Merge(Tensor x, Tensor y)
    {
        for (int b = 0; b < _plans.Length; b++)
            RowGroups.Mean(x.Slice(_segments[b].Offset, _segments[b].Length), _plans[b].Merge, y.Slice(Segments[b].Offset, Segments[b].Length));
    }

    /// <summary>y [Rows, D] → x [N, D]: every row gets its group's row.</summary>
    public void Unmerge(Tensor y, Tensor x)
    {
        for (int b = 0; b < _plans.Length; b++)
            RowGroups.Mean(y.Slice(Segments[b].Offset, Segments[b].Length), _plans[b].Unmerge, x.Slice(_segments[b].Offset, _segments[b].Length));
    }

    public void Dispose()
    {
        foreach (var p in _plans) p.Dispose();
        Cos.Dispose();
        Sin.Dispose();
    }
}
