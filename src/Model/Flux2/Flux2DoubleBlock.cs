using PureFlux.Model.Layers;

namespace PureFlux.Model.Flux2;

/// <summary>
/// FLUX.2 double-stream block: image and text streams with their own weights, joint attention over
/// [text; image]. Streams are views into one joint buffer X [S_txt + S_img, D] (text rows first), so the
/// single-stream blocks that follow need no concatenation.
/// </summary>
public sealed class Flux2DoubleBlock : IDisposable
{
    private readonly int _dim, _heads, _headDim, _mlp;
    private readonly float _eps;
    private readonly Linear? _toQ, _toK, _toV, _addQ, _addK, _addV;
    private readonly Linear? _toQkv, _addQkv; // fused-qkv: Q, K, V of a stream as one [3D, D] projection
    private readonly Linear _toOut, _toAddOut;
    private readonly Linear _ffIn, _ffOut, _ffCtxIn, _ffCtxOut;
    private readonly Tensor _normQ, _normK, _normAddedQ, _normAddedK;

    /// <param name="fusedQkv">The experiment switch <c>fused-qkv</c>: each stream's Q, K and V projections stacked into one
    /// [3D, D] matrix at load, one GEMM per stream instead of three (the single blocks' weights come fused already).</param>
    public Flux2DoubleBlock(WeightLoader load, string p, int dim, int heads, int headDim, int mlpHidden, float eps, QuantMode quant,
        bool fusedQkv = false)
    {
        _dim = dim; _heads = heads; _headDim = headDim; _mlp = mlpHidden; _eps = eps;
        if (fusedQkv)
        {
            string a = p + ".attn.";
            _toQkv = new Linear(load.StackingRows(a + "to_qkv", a + "to_q", a + "to_k", a + "to_v"), a + "to_qkv", dim, 3 * dim, quant: quant);
            _addQkv = new Linear(load.StackingRows(a + "add_qkv_proj", a + "add_q_proj", a + "add_k_proj", a + "add_v_proj"), a + "add_qkv_proj", dim, 3 * dim, quant: quant);
        }
        else
        {
            _toQ = new Linear(load, p + ".attn.to_q", dim, dim, quant: quant);
            _toK = new Linear(load, p + ".attn.to_k", dim, dim, quant: quant);
            _toV = new Linear(load, p + ".attn.to_v", dim, dim, quant: quant);
            _addQ = new Linear(load, p + ".attn.add_q_proj", dim, dim, quant: quant);
            _addK = new Linear(load, p + ".attn.add_k_proj", dim, dim, quant: quant);
            _addV = new Linear(load, p + ".attn.add_v_proj", dim, dim, quant: quant);
        }
        _toOut = new Linear(load, p + ".attn.to_out.0", dim, dim, quant: quant);
        _toAddOut = new Linear(load, p + ".attn.to_add_out", dim, dim, quant: quant);
        _normQ = load(p + ".attn.norm_q.weight", headDim);
        _normK = load(p + ".attn.norm_k.weight", headDim);
        _normAddedQ = load(p + ".attn.norm_added_q.weight", headDim);
        _normAddedK = load(p + ".attn.norm_added_k.weight", headDim);
        _ffIn = new Linear(load, p + ".ff.linear_in", dim, 2 * mlpHidden, quant: quant);
        _ffOut = new Linear(load, p + ".ff.linear_out", mlpHidden, dim, quant: quant);
        _ffCtxIn = new Linear(load, p + ".ff_context.linear_in", dim, 2 * mlpHidden, quant: quant);
        _ffCtxOut = new Linear(load, p + ".ff_context.linear_out", mlpHidden, dim, quant: quant);
    }

    /// <summary>
    /// Updates the joint stream x [S_txt + S_img, D] in place. cos/sin [S, head_dim] are the RoPE tables
    /// for [text; image]. <paramref name="trace"/> (optional) receives named intermediates for golden checks.
    /// <paramref name="imageKeys"/> (optional, [N, D]) receives the key projections of the first N image rows, before
    /// their norm and RoPE: token merging's similarity metric.
    /// </summary>
    internal void Forward(Tensor x, int textLen, Flux2Modulation mod, Tensor cos, Tensor sin, Action<string, Tensor>? trace = null, Tensor? imageKeys = null)
    {
        var dev = x.Device;
        int s = x.Shape[0], imgLen = s - textLen;
        var txt = x.Slice(0, textLen);
        var img = x.Slice(textLen, imgLen);
        var mImg = mod.DoubleImg;
        var mTxt = mod.DoubleTxt;

        using var norm = Tensor.Empty(dev, DType.F32, s, _dim);
        var normTxt = norm.Slice(0, textLen);
        var normImg = norm.Slice(textLen, imgLen);
        LayerNormModulate.Forward(img, Flux2Modulation.Row(mImg, 0), Flux2Modulation.Row(mImg, 1), normImg, _eps);
        LayerNormModulate.Forward(txt, Flux2Modulation.Row(mTxt, 0), Flux2Modulation.Row(mTxt, 1), normTxt, _eps);
        if (trace is not null)
        {
            // diffusers' norm1 is the plain LayerNorm (modulation is applied outside the module).
            using var ln = Tensor.Empty(dev, DType.F32, imgLen, _dim);
            LayerNormModulate.LayerNorm(img, ln, _eps);
            trace("norm1", ln);
        }

        using var q = Tensor.Empty(dev, DType.F32, s, _dim);
        using var k = Tensor.Empty(dev, DType.F32, s, _dim);
        using var v = Tensor.Empty(dev, DType.F32, s, _dim);
        if (_toQkv is not null)
        {
            // One GEMM per stream, then its [rows, 3D] output split into the Q, K, V rows attention reads.
            foreach (var (proj, input, start, rows) in new[] { (_addQkv!, normTxt, 0, textLen), (_toQkv, normImg, textLen, imgLen) })
            {
                using var qkv = Tensor.Empty(dev, DType.F32, rows, 3 * _dim);
                proj.Forward(input, qkv);
                Elementwise.CopyColumns(qkv, 0, q.Slice(start, rows));
                Elementwise.CopyColumns(qkv, _dim, k.Slice(start, rows));
                Elementwise.CopyColumns(qkv, 2 * _dim, v.Slice(start, rows));
            }
        }
        else
        {
            _addQ!.Forward(normTxt, q.Slice(0, textLen));
            _addK!.Forward(normTxt, k.Slice(0, textLen));
            _addV!.Forward(normTxt, v.Slice(0, textLen));
            _toQ!.Forward(normImg, q.Slice(textLen, imgLen));
            _toK!.Forward(normImg, k.Slice(textLen, imgLen));
            _toV!.Forward(normImg, v.Slice(textLen, imgLen));
        }

        if (imageKeys is not null) k.Slice(textLen, imageKeys.Shape[0]).CopyTo(imageKeys);

        // Per-head QK RMSNorm (text rows with the added-stream weights), RoPE and attention: the core FLUX.1 shares.
        using var o = Tensor.Empty(dev, DType.F32, s, _heads, _headDim);
        JointAttention.Forward(q.Reshape(s, _heads, _headDim), k.Reshape(s, _heads, _headDim), v.Reshape(s, _heads, _headDim), textLen,
            new JointAttention.QkNorm(_normAddedQ, _normAddedK), new JointAttention.QkNorm(_normQ, _normK), cos, sin, o, _eps, trace);
        var o2 = o.Reshape(s, _dim);

        // Attention outputs reuse the q buffer (no longer needed).
        var attnTxt = q.Slice(0, textLen);
        var attnImg = q.Slice(textLen, imgLen);
        _toAddOut.Forward(o2.Slice(0, textLen), attnTxt);
        _toOut.Forward(o2.Slice(textLen, imgLen), attnImg);
        trace?.Invoke("attn.img", attnImg);
        trace?.Invoke("attn.txt", attnTxt);
        GatedResidual.Forward(img, Flux2Modulation.Row(mImg, 2), attnImg);
        GatedResidual.Forward(txt, Flux2Modulation.Row(mTxt, 2), attnTxt);

        FeedForward(img, mImg, normImg, _ffIn, _ffOut, "ff", trace);
        FeedForward(txt, mTxt, normTxt, _ffCtxIn, _ffCtxOut, "ff_context", trace);
        trace?.Invoke("txt", txt);
        trace?.Invoke("img", img);
    }

    /// <summary>stream += gate_mlp · linear_out(SwiGLU(linear_in((1+scale_mlp)·LN(stream) + shift_mlp))).</summary>
    private void FeedForward(Tensor stream, Tensor mod, Tensor norm, Linear ffIn, Linear ffOut, string name, Action<string, Tensor>? trace)
    {
        var dev = stream.Device;
        int rows = stream.Shape[0];
        LayerNormModulate.Forward(stream, Flux2Modulation.Row(mod, 3), Flux2Modulation.Row(mod, 4), norm, _eps);
        using var hidden = Tensor.Empty(dev, DType.F32, rows, 2 * _mlp);
        ffIn.Forward(norm, hidden);
        using var act = Tensor.Empty(dev, DType.F32, rows, _mlp);
        SwiGlu.Forward(hidden, act);
        using var output = Tensor.Empty(dev, DType.F32, rows, _dim);
        ffOut.Forward(act, output);
        trace?.Invoke(name, output);
        GatedResidual.Forward(stream, Flux2Modulation.Row(mod, 5), output);
    }

    public void Dispose()
    {
        foreach (var l in new[] { _toQ, _toK, _toV, _addQ, _addK, _addV, _toQkv, _addQkv, _toOut, _toAddOut, _ffIn, _ffOut, _ffCtxIn, _ffCtxOut }) l?.Dispose();
        foreach (var t in new[] { _normQ, _normK, _normAddedQ, _normAddedK }) t.Dispose();
    }
}
