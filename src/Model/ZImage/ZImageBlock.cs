using PureFlux.Model.Layers;

namespace PureFlux.Model.ZImage;

/// <summary>Rows [Offset, Offset + Length) of a ragged token matrix: one batch item's sequence.</summary>
public readonly record struct TokenSegment(int Offset, int Length);

/// <summary>
/// One Z-Image transformer block (diffusers ZImageTransformerBlock) on a ragged token matrix x [N, D] holding several
/// items' sequences one after the other (<see cref="TokenSegment"/>s): projections and norms run on all N rows at once,
/// attention within each segment (so no masks are needed: batching never lets an item see another's rows).
/// Sandwich RMSNorms around both sublayers; modulated blocks scale the norm inputs by (1 + scale) and gate the residuals
/// with tanh(gate) — no shift, no SiLU in front of the modulation Linear; the context refiner's blocks are unmodulated.
/// </summary>
public sealed class ZImageBlock : IDisposable
{
    private readonly int _dim, _heads, _headDim, _ffn;
    private readonly float _eps;
    private readonly Linear _q, _k, _v, _out, _w1, _w2, _w3;
    private readonly Linear? _adaLn;
    private readonly Tensor? _normQ, _normK;
    private readonly Tensor _attnNorm1, _attnNorm2, _ffnNorm1, _ffnNorm2;

    public ZImageBlock(WeightLoader load, string p, ZImageTransformerConfig c, bool modulated, QuantMode quant)
    {
        _dim = c.Dim; _heads = c.NumHeads; _headDim = c.HeadDim; _ffn = c.FfnHidden; _eps = (float)c.NormEps;
        _q = new Linear(load, p + ".attention.to_q", _dim, _dim, quant: quant);
        _k = new Linear(load, p + ".attention.to_k", _dim, _dim, quant: quant);
        _v = new Linear(load, p + ".attention.to_v", _dim, _dim, quant: quant);
        _out = new Linear(load, p + ".attention.to_out.0", _dim, _dim, quant: quant);
        if (c.QkNorm)
        {
            _normQ = load(p + ".attention.norm_q.weight", _headDim);
            _normK = load(p + ".attention.norm_k.weight", _headDim);
        }
        _attnNorm1 = load(p + ".attention_norm1.weight", _dim);
        _attnNorm2 = load(p + ".attention_norm2.weight", _dim);
        _ffnNorm1 = load(p + ".ffn_norm1.weight", _dim);
        _ffnNorm2 = load(p + ".ffn_norm2.weight", _dim);
        _w1 = new Linear(load, p + ".feed_forward.w1", _dim, _ffn, quant: quant);
        _w2 = new Linear(load, p + ".feed_forward.w2", _ffn, _dim, quant: quant);
        _w3 = new Linear(load, p + ".feed_forward.w3", _dim, _ffn, quant: quant);
        if (modulated) _adaLn = new Linear(load, p + ".adaLN_modulation.0", c.AdaLnDim, 4 * _dim, bias: true);
    }

    public bool Modulated => _adaLn is not null;

    /// <summary>
    /// adaln [B, min(D, 256)] → modulation [B, 4, D]: rows (scale_msa, tanh(gate_msa), scale_mlp, tanh(gate_mlp)); the
    /// "1 +" of the scales is applied by the norms. Null for an unmodulated block.
    /// </summary>
    public Tensor? Modulation(Tensor adaln, Action<string, Tensor>? trace = null)
    {
        if (_adaLn is null) return null;
        int batch = adaln.Shape[0];
        var mod = Tensor.Empty(adaln.Device, DType.F32, batch, 4, _dim);
        _adaLn.Forward(adaln, mod.Reshape(batch, 4 * _dim));
        trace?.Invoke("mod", mod.Reshape(batch, 4 * _dim));
        for (int b = 0; b < batch; b++)
        {
            var m = mod.Slice(b, 1).Reshape(4, _dim);
            Tanh.Forward(m.Slice(1, 1), m.Slice(1, 1));
            Tanh.Forward(m.Slice(3, 1), m.Slice(3, 1));
        }
        return mod;
    }

    /// <summary>
    /// x [N, D] updated in place. <paramref name="segments"/> are the items' rows; item i uses modulation row i of
    /// <paramref name="mod"/> ([B, 4, D], null for an unmodulated block). cos/sin [N, head_dim]: each row's RoPE factors,
    /// interleaved pairs. <paramref name="trace"/> sees the first item's internals.
    /// <para>Token merging: with <paramref name="merge"/>, both branches (attention: q/k/v, attention per merged item,
    /// output projection and its norm; the FFN and its norm) run on the merged rows — the modulated norm of x averaged
    /// per group — and are copied back to every row before the gated residuals. <paramref name="keysOut"/> (optional
    /// [N, D]) receives the key projections (before norm and RoPE), from which the transformer plans the merge.</para>
    /// </summary>
    public void Forward(Tensor x, IReadOnlyList<TokenSegment> segments, Tensor? mod, Tensor cos, Tensor sin, Action<string, Tensor>? trace = null,
        ZImageTokenMerge? merge = null, Tensor? keysOut = null)
    {
        var dev = x.Device;
        int n = x.Shape[0];
        int nm = merge?.Rows ?? n; // rows the branches compute on
        var branchSegments = merge?.Segments ?? segments;
        if (merge is not null) (cos, sin, trace) = (merge.Cos, merge.Sin, null);
        if ((mod is null) != (_adaLn is null)) throw new InvalidOperationException("ZImageBlock: modulation must be given exactly for modulated blocks");
        Tensor? Row(int item, int r) => mod?.Slice(item, 1).Reshape(4, _dim).Slice(r, 1);

        using var h = Tensor.Empty(dev, DType.F32, n, _dim);
        NormScaled(x, _attnNorm1, h, segments, mod, 0, trace, "attn_in");
        using var hm = merge is null ? null : Tensor.Empty(dev, DType.F32, nm, _dim);
        if (merge is not null) merge.Merge(h, hm!);
        var branch = hm ?? h;

        using var q = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim);
        using var k = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim);
        using var v = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim);
        _q.Forward(branch, q.Reshape(nm, _dim));
        _k.Forward(branch, k.Reshape(nm, _dim));
        _v.Forward(branch, v.Reshape(nm, _dim));
        if (keysOut is not null) k.Reshape(nm, _dim).CopyTo(keysOut);
        trace?.Invoke("attn.to_q", q.Reshape(n, _dim));
        trace?.Invoke("attn.to_k", k.Reshape(n, _dim));
        trace?.Invoke("attn.to_v", v.Reshape(n, _dim));
        if (_normQ is not null)
        {
            RmsNorm.Forward(q, _normQ, q, _eps);
            RmsNorm.Forward(k, _normK!, k, _eps);
        }
        trace?.Invoke("attn.q_normed", q);
        trace?.Invoke("attn.k_normed", k);
        Rope.ApplyInterleaved(q, cos, sin, q);
        Rope.ApplyInterleaved(k, cos, sin, k);
        trace?.Invoke("attn.q_rope", q);
        trace?.Invoke("attn.k_rope", k);
        trace?.Invoke("attn.v", v);
        using (var o = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim))
        {
            foreach (var s in branchSegments)
                Attention.Forward(q.Slice(s.Offset, s.Length), k.Slice(s.Offset, s.Length), v.Slice(s.Offset, s.Length), o.Slice(s.Offset, s.Length));
            trace?.Invoke("attn.sdpa_out", o);
            _out.Forward(o.Reshape(nm, _dim), branch);
        }
        trace?.Invoke("attn.out", h);
        RmsNorm.Forward(branch, _attnNorm2, branch, _eps);
        trace?.Invoke("attention_norm2", h);
        if (merge is not null) merge.Unmerge(hm!, h);
        Residual(x, h, segments, mod, 1);

        NormScaled(x, _ffnNorm1, h, segments, mod, 2, trace, "ffn_in");
        if (merge is not null) merge.Merge(h, hm!);
        using (var a = Tensor.Empty(dev, DType.F32, nm, _ffn))
        using (var b = Tensor.Empty(dev, DType.F32, nm, _ffn))
        {
            _w1.Forward(branch, a);
            _w3.Forward(branch, b);
            trace?.Invoke("ffn.w1", a);
            trace?.Invoke("ffn.w3", b);
            SwiGlu.Forward(a, b, a);
            _w2.Forward(a, branch);
        }
        trace?.Invoke("ffn.out", h);
        RmsNorm.Forward(branch, _ffnNorm2, branch, _eps);
        trace?.Invoke("ffn_norm2", h);
        if (merge is not null) merge.Unmerge(hm!, h);
        Residual(x, h, segments, mod, 3);
        return;

        // RMSNorm(x) · (1 + scale) per item (one launch on all rows when unmodulated).
        void NormScaled(Tensor src, Tensor weight, Tensor dst, IReadOnlyList<TokenSegment> segs, Tensor? m, int row, Action<string, Tensor>? tr, string name)
        {
            if (m is null)
            {
                RmsNorm.Forward(src, weight, dst, _eps);
            }
            else
            {
                if (tr is not null)
                {
                    RmsNorm.Forward(src, weight, dst, _eps);
                    tr(row == 0 ? "attention_norm1" : "ffn_norm1", dst);
                }
                for (int i = 0; i < segs.Count; i++)
                    RmsNorm.Forward(src.Slice(segs[i].Offset, segs[i].Length), weight, dst.Slice(segs[i].Offset, segs[i].Length), _eps, Row(i, row));
            }
            tr?.Invoke(name, dst);
        }

        // x += tanh(gate) · y per item (plain x += y when unmodulated).
        void Residual(Tensor dst, Tensor y, IReadOnlyList<TokenSegment> segs, Tensor? m, int row)
        {
            if (m is null)
            {
                Elementwise.Add(dst, y, dst);
                return;
            }
            for (int i = 0; i < segs.Count; i++)
                GatedResidual.Forward(dst.Slice(segs[i].Offset, segs[i].Length), Row(i, row)!, y.Slice(segs[i].Offset, segs[i].Length));
        }
    }

    public void Dispose()
    {
        foreach (var l in new[] { _q, _k, _v, _out, _w1, _w2, _w3 }) l.Dispose();
        _adaLn?.Dispose();
        _normQ?.Dispose();
        _normK?.Dispose();
        foreach (var t in new[] { _attnNorm1, _attnNorm2, _ffnNorm1, _ffnNorm2 }) t.Dispose();
    }
}
