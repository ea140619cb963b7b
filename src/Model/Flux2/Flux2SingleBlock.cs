using PureFlux.Model.Layers;

namespace PureFlux.Model.Flux2;

/// <summary>
/// FLUX.2 single-stream ("parallel") block on the joint stream x [S, D]: one fused projection gives
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

    internal void Forward(Tensor x, Flux2Modulation mod, Tensor cos, Tensor sin, Action<string, Tensor>? trace = null)
    {
        var dev = x.Device;
        int s = x.Shape[0];
        var m = mod.Single;
        using var norm = Tensor.Empty(dev, DType.F32, s, _dim);
        LayerNormModulate.Forward(x, Flux2Modulation.Row(m, 0), Flux2Modulation.Row(m, 1), norm, _eps);

        using var proj = Tensor.Empty(dev, DType.F32, s, 3 * _dim + 2 * _mlp);
        _qkvMlp.Forward(norm, proj);
        trace?.Invoke("attn.to_qkv_mlp_proj", proj);

        using var q = Tensor.Empty(dev, DType.F32, s, _heads, _headDim);
        using var k = Tensor.Empty(dev, DType.F32, s, _heads, _headDim);
        using var v = Tensor.Empty(dev, DType.F32, s, _heads, _headDim);
        Elementwise.CopyColumns(proj, 0, q.Reshape(s, _dim));
        Elementwise.CopyColumns(proj, _dim, k.Reshape(s, _dim));
        Elementwise.CopyColumns(proj, 2 * _dim, v.Reshape(s, _dim));
        RmsNorm.Forward(q, _normQ, q, _eps);
        RmsNorm.Forward(k, _normK, k, _eps);
        trace?.Invoke("attn.q_normed", q);
        trace?.Invoke("attn.k_normed", k);
        Rope.ApplyInterleaved(q, cos, sin, q);
        Rope.ApplyInterleaved(k, cos, sin, k);
        trace?.Invoke("attn.q_rope", q);
        trace?.Invoke("attn.k_rope", k);

        // cat(attention, swiglu(mlp)) is assembled in one [S, D + F] buffer for the fused output projection.
        using var cat = Tensor.Empty(dev, DType.F32, s, _dim + _mlp);
        using (var o = Tensor.Empty(dev, DType.F32, s, _heads, _headDim))
        {
            Attention.Forward(q, k, v, o);
            trace?.Invoke("attn.sdpa_out", o);
            Elementwise.WriteColumns(o.Reshape(s, _dim), cat, 0);
        }
        using (var mlpIn = Tensor.Empty(dev, DType.F32, s, 2 * _mlp))
        using (var mlpOut = Tensor.Empty(dev, DType.F32, s, _mlp))
        {
            Elementwise.CopyColumns(proj, 3 * _dim, mlpIn);
            SwiGlu.Forward(mlpIn, mlpOut);
            Elementwise.WriteColumns(mlpOut, cat, _dim);
        }
        using var output = Tensor.Empty(dev, DType.F32, s, _dim);
        _out.Forward(cat, output);
        trace?.Invoke("attn", output);
        GatedResidual.Forward(x, Flux2Modulation.Row(m, 2), output);
    }

    public void Dispose()
    {
        _qkvMlp.Dispose();
        _out.Dispose();
        _normQ.Dispose();
        _normK.Dispose();
    }
}
