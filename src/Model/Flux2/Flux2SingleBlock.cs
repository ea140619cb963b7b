using PureFlux.Model.Layers;

namespace PureFlux.Model.Flux2;

/// <summary>
/// FLUX.2 single-stream ("parallel") block on the joint stream x [B, S, D]: one fused projection gives
/// [q | k | v | mlp_gate | mlp_up], attention and SwiGLU run side by side, and one fused output projection
/// maps cat(attention, mlp) back to D.
/// </summary>
public sealed class Flux2SingleBlock : IDisposable
{
    private readonly int _dim, _heads, _headDim, _mlp;
    private readonly float _eps;
    private readonly Linear _qkvMlp, _out;
    private readonly Tensor _normQ, _normK;

    public Flux2SingleBlock(WeightLoader load, string p, int dim, int heads, int headDim, int mlpHidden, float eps, QuantMode quant)
    {
        _dim = dim; _heads = heads; _headDim = headDim; _mlp = mlpHidden; _eps = eps;
        _qkvMlp = new Linear(load, p + ".attn.to_qkv_mlp_proj", dim, 3 * dim + 2 * mlpHidden, quant: quant);
        _out = new Linear(load, p + ".attn.to_out", dim + mlpHidden, dim, quant: quant);
        _normQ = load(p + ".attn.norm_q.weight", headDim);
        _normK = load(p + ".attn.norm_k.weight", headDim);
    }

    /// <summary>
    /// Updates the joint stream x [B, S, D] in place (each sample's modulation rows from <paramref name="mod"/>). The
    /// projections run on all B·S rows at once; modulation, RoPE and attention per sample.
    /// With <paramref name="merge"/> (token merging, B = 1) the block's branch — projections, attention, MLP — runs on the
    /// plan's S' merged rows, and its output is copied back to all S rows before the gated residual, so the residual
    /// stream itself keeps every token (as ToMe for Stable Diffusion merges inside each block and unmerges after it).
    /// </summary>
    internal void Forward(Tensor x, Flux2Modulation mod, Tensor cos, Tensor sin, Action<string, Tensor>? trace = null, TokenMergePlan? merge = null)
    {
        var dev = x.Device;
        int batch = x.Shape[0], fullRows = x.Shape[1];
        if (merge is not null && (batch != 1 || merge.Rows != fullRows))
            throw new ArgumentException($"Flux2SingleBlock: a token-merge plan for {merge.Rows} rows of one sample, but x is {x.Shape}");
        using var norm = Tensor.Empty(dev, DType.F32, batch, fullRows, _dim);
        for (int b = 0; b < batch; b++)
        {
            var m = mod.Sample(b).Single;
            LayerNormModulate.Forward(x.Slice(b, 1), Flux2Modulation.Row(m, 0), Flux2Modulation.Row(m, 1), norm.Slice(b, 1), _eps);
        }
        Tensor? merged = null;
        if (merge is not null)
        {
            merged = Tensor.Empty(dev, DType.F32, 1, merge.MergedRows, _dim);
            RowGroups.Mean(norm.Reshape(fullRows, _dim), merge.Merge, merged.Reshape(merge.MergedRows, _dim));
            (cos, sin) = (merge.Cos, merge.Sin);
        }
        using var mergedOwner = merged;
        var branchIn = merged ?? norm;
        int s = branchIn.Shape[1], rows = batch * s;

        using var proj = Tensor.Empty(dev, DType.F32, rows, 3 * _dim + 2 * _mlp);
        _qkvMlp.Forward(branchIn.Reshape(rows, _dim), proj);
        trace?.Invoke("attn.to_qkv_mlp_proj", proj);

        using var q = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim);
        using var k = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim);
        using var v = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim);
        Elementwise.CopyColumns(proj, 0, q.Reshape(rows, _dim));
        Elementwise.CopyColumns(proj, _dim, k.Reshape(rows, _dim));
        Elementwise.CopyColumns(proj, 2 * _dim, v.Reshape(rows, _dim));
        // cat(attention, swiglu(mlp)) is assembled in one [B·S, D + F] buffer for the fused output projection.
        using var cat = Tensor.Empty(dev, DType.F32, rows, _dim + _mlp);
        using (var o = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim))
        {
            JointAttention.Forward(q, k, v, 0, null, new JointAttention.QkNorm(_normQ, _normK), cos, sin, o, _eps,
                trace is null ? null : (n, t) => trace(n, t.Reshape(s, _heads, _headDim)));
            Elementwise.WriteColumns(o.Reshape(rows, _dim), cat, 0);
        }
        using (var mlpIn = Tensor.Empty(dev, DType.F32, rows, 2 * _mlp))
        using (var mlpOut = Tensor.Empty(dev, DType.F32, rows, _mlp))
        {
            Elementwise.CopyColumns(proj, 3 * _dim, mlpIn);
            SwiGlu.Forward(mlpIn, mlpOut);
            Elementwise.WriteColumns(mlpOut, cat, _dim);
        }
        using var branchOut = Tensor.Empty(dev, DType.F32, batch, s, _dim);
        _out.Forward(cat, branchOut.Reshape(rows, _dim));
        Tensor? unmerged = null;
        if (merge is not null)
        {
            unmerged = Tensor.Empty(dev, DType.F32, 1, fullRows, _dim);
            RowGroups.Mean(branchOut.Reshape(s, _dim), merge.Unmerge, unmerged.Reshape(fullRows, _dim));
        }
        using var unmergedOwner = unmerged;
        var output = unmerged ?? branchOut;
        trace?.Invoke("attn", output.Reshape(fullRows, _dim));
        for (int b = 0; b < batch; b++)
            GatedResidual.Forward(x.Slice(b, 1), Flux2Modulation.Row(mod.Sample(b).Single, 2), output.Slice(b, 1));
    }

    public void Dispose()
    {
        _qkvMlp.Dispose();
        _out.Dispose();
        _normQ.Dispose();
        _normK.Dispose();
    }
}
