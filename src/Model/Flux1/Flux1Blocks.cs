using PureFlux.Model.Layers;

namespace PureFlux.Model.Flux1;

/// <summary>Row <paramref name="index"/> of a per-sample modulation tensor [n, D] as a [D] view.</summary>
internal static class ModulationRows
{
    public static Tensor Row(Tensor mod, int index) => mod.Slice(index, 1).Reshape(mod.Shape[1]);
}

/// <summary>
/// FLUX.1 double-stream block (diffusers FluxTransformerBlock): image and text streams with their own weights — each
/// with its own AdaLayerNormZero modulation linear(SiLU(temb)) → (shift, scale, gate) for attention then MLP — joint
/// attention over [text; image] (<see cref="JointAttention"/>), output projections with biases, GELU-tanh MLPs of width 4D.
/// The streams are views into one joint buffer X [S_txt + S_img, D] (text rows first).
/// </summary>
public sealed class Flux1DoubleBlock : IDisposable
{
    private readonly int _dim, _heads, _headDim, _mlp;
    private readonly Linear _modImg, _modTxt, _toQ, _toK, _toV, _addQ, _addK, _addV, _toOut, _toAddOut;
    private readonly Linear _ffIn, _ffOut, _ffCtxIn, _ffCtxOut;
    private readonly Tensor _normQ, _normK, _normAddedQ, _normAddedK;

    public Flux1DoubleBlock(WeightLoader load, string p, int dim, int heads, int headDim, int mlpHidden, QuantMode quant)
    {
        _dim = dim; _heads = heads; _headDim = headDim; _mlp = mlpHidden;
        _modImg = new Linear(load, p + ".norm1.linear", dim, 6 * dim, bias: true, quant: quant);
        _modTxt = new Linear(load, p + ".norm1_context.linear", dim, 6 * dim, bias: true, quant: quant);
        _toQ = new Linear(load, p + ".attn.to_q", dim, dim, bias: true, quant: quant);
        _toK = new Linear(load, p + ".attn.to_k", dim, dim, bias: true, quant: quant);
        _toV = new Linear(load, p + ".attn.to_v", dim, dim, bias: true, quant: quant);
        _addQ = new Linear(load, p + ".attn.add_q_proj", dim, dim, bias: true, quant: quant);
        _addK = new Linear(load, p + ".attn.add_k_proj", dim, dim, bias: true, quant: quant);
        _addV = new Linear(load, p + ".attn.add_v_proj", dim, dim, bias: true, quant: quant);
        _toOut = new Linear(load, p + ".attn.to_out.0", dim, dim, bias: true, quant: quant);
        _toAddOut = new Linear(load, p + ".attn.to_add_out", dim, dim, bias: true, quant: quant);
        _normQ = load(p + ".attn.norm_q.weight", headDim);
        _normK = load(p + ".attn.norm_k.weight", headDim);
        _normAddedQ = load(p + ".attn.norm_added_q.weight", headDim);
        _normAddedK = load(p + ".attn.norm_added_k.weight", headDim);
        _ffIn = new Linear(load, p + ".ff.net.0.proj", dim, mlpHidden, bias: true, quant: quant);
        _ffOut = new Linear(load, p + ".ff.net.2", mlpHidden, dim, bias: true, quant: quant);
        _ffCtxIn = new Linear(load, p + ".ff_context.net.0.proj", dim, mlpHidden, bias: true, quant: quant);
        _ffCtxOut = new Linear(load, p + ".ff_context.net.2", mlpHidden, dim, bias: true, quant: quant);
    }

    /// <summary>This block's modulation for every sample: silu(temb) [B, D] → img, txt [B, 6, D].</summary>
    internal (Tensor Img, Tensor Txt) Modulation(Tensor siluTemb)
    {
        int batch = siluTemb.Shape[0];
        var img = Tensor.Empty(siluTemb.Device, DType.F32, batch, 6, _dim);
        var txt = Tensor.Empty(siluTemb.Device, DType.F32, batch, 6, _dim);
        _modImg.Forward(siluTemb, img.Reshape(batch, 6 * _dim));
        _modTxt.Forward(siluTemb, txt.Reshape(batch, 6 * _dim));
        return (img, txt);
    }

    /// <summary>
    /// Updates one sample's joint stream x [S_txt + S_img, D] in place with its modulation rows mImg, mTxt [6, D];
    /// cos/sin [S, head_dim]. <paramref name="trace"/> receives the golden set's block-0 intermediates.
    /// </summary>
    /// <param name="imageKeys">Optional [N, D]: receives the key projections of the first N image rows (before norm and
    /// RoPE), token merging's similarity metric.</param>
    internal void Forward(Tensor x, int textLen, Tensor mImg, Tensor mTxt, Tensor cos, Tensor sin, Action<string, Tensor>? trace = null, Tensor? imageKeys = null)
    {
        var dev = x.Device;
        int s = x.Shape[0], imgLen = s - textLen;
        var txt = x.Slice(0, textLen);
        var img = x.Slice(textLen, imgLen);
        var eps = Flux1TransformerConfig.Eps;

        using var norm = Tensor.Empty(dev, DType.F32, s, _dim);
        var normTxt = norm.Slice(0, textLen);
        var normImg = norm.Slice(textLen, imgLen);
        LayerNormModulate.Forward(img, ModulationRows.Row(mImg, 0), ModulationRows.Row(mImg, 1), normImg, eps);
        LayerNormModulate.Forward(txt, ModulationRows.Row(mTxt, 0), ModulationRows.Row(mTxt, 1), normTxt, eps);
        trace?.Invoke("norm1.x", normImg);
        trace?.Invoke("norm1_context.x", normTxt);

        using var q = Tensor.Empty(dev, DType.F32, s, _dim);
        using var k = Tensor.Empty(dev, DType.F32, s, _dim);
        using var v = Tensor.Empty(dev, DType.F32, s, _dim);
        _addQ.Forward(normTxt, q.Slice(0, textLen));
        _addK.Forward(normTxt, k.Slice(0, textLen));
        _addV.Forward(normTxt, v.Slice(0, textLen));
        _toQ.Forward(normImg, q.Slice(textLen, imgLen));
        _toK.Forward(normImg, k.Slice(textLen, imgLen));
        _toV.Forward(normImg, v.Slice(textLen, imgLen));
        if (imageKeys is not null) k.Slice(textLen, imageKeys.Shape[0]).CopyTo(imageKeys);

        using var o = Tensor.Empty(dev, DType.F32, s, _heads, _headDim);
        JointAttention.Forward(q.Reshape(s, _heads, _headDim), k.Reshape(s, _heads, _headDim), v.Reshape(s, _heads, _headDim), textLen,
            new JointAttention.QkNorm(_normAddedQ, _normAddedK), new JointAttention.QkNorm(_normQ, _normK), cos, sin, o, eps, trace);
        var o2 = o.Reshape(s, _dim);

        // The projected attention outputs reuse the q buffer.
        var attnTxt = q.Slice(0, textLen);
        var attnImg = q.Slice(textLen, imgLen);
        _toAddOut.Forward(o2.Slice(0, textLen), attnTxt);
        _toOut.Forward(o2.Slice(textLen, imgLen), attnImg);
        trace?.Invoke("attn.img", attnImg);
        trace?.Invoke("attn.txt", attnTxt);
        GatedResidual.Forward(img, ModulationRows.Row(mImg, 2), attnImg);
        GatedResidual.Forward(txt, ModulationRows.Row(mTxt, 2), attnTxt);

        if (trace is not null)
        {
            // diffusers' norm2 is the plain LayerNorm (the modulation is applied outside the module).
            using var ln = Tensor.Empty(dev, DType.F32, imgLen, _dim);
            LayerNormModulate.LayerNorm(img, ln, eps);
            trace("norm2", ln);
        }
        FeedForward(img, mImg, normImg, _ffIn, _ffOut, "ff", trace);
        FeedForward(txt, mTxt, normTxt, _ffCtxIn, _ffCtxOut, "ff_context", trace);
    }

    /// <summary>stream += gate_mlp · net.2(gelu_tanh(net.0.proj((1 + scale_mlp)·LN(stream) + shift_mlp))).</summary>
    private void FeedForward(Tensor stream, Tensor mod, Tensor norm, Linear ffIn, Linear ffOut, string name, Action<string, Tensor>? trace)
    {
        var dev = stream.Device;
        int rows = stream.Shape[0];
        LayerNormModulate.Forward(stream, ModulationRows.Row(mod, 3), ModulationRows.Row(mod, 4), norm, Flux1TransformerConfig.Eps);
        using var hidden = Tensor.Empty(dev, DType.F32, rows, _mlp);
        ffIn.Forward(norm, hidden);
        Gelu.Forward(hidden, hidden, GeluApproximation.Tanh);
        using var output = Tensor.Empty(dev, DType.F32, rows, _dim);
        ffOut.Forward(hidden, output);
        trace?.Invoke(name, output);
        GatedResidual.Forward(stream, ModulationRows.Row(mod, 5), output);
    }

    public void Dispose()
    {
        foreach (var l in new[] { _modImg, _modTxt, _toQ, _toK, _toV, _addQ, _addK, _addV, _toOut, _toAddOut, _ffIn, _ffOut, _ffCtxIn, _ffCtxOut }) l.Dispose();
        foreach (var t in new[] { _normQ, _normK, _normAddedQ, _normAddedK }) t.Dispose();
    }
}

/// <summary>
/// FLUX.1 single-stream block (diffusers FluxSingleTransformerBlock) on the joint stream x [B, S, D]:
/// n = (1 + scale)·LN(x) + shift (AdaLayerNormZeroSingle: linear(SiLU(temb)) → shift, scale, gate); attention of n
/// (to_q/k/v with biases, per-head RMSNorm, RoPE) with <b>no</b> output projection; mlp = gelu_tanh(proj_mlp(n)) [4D];
/// x += gate · proj_out(cat(attention, mlp)) — proj_out takes 5D inputs, attention channels first.
/// </summary>
public sealed class Flux1SingleBlock : IDisposable
{
    private readonly int _dim, _heads, _headDim, _mlp;
    private readonly Linear _mod, _toQ, _toK, _toV, _projMlp, _projOut;
    private readonly Tensor _normQ, _normK;

    public Flux1SingleBlock(WeightLoader load, string p, int dim, int heads, int headDim, int mlpHidden, QuantMode quant)
    {
        _dim = dim; _heads = heads; _headDim = headDim; _mlp = mlpHidden;
        _mod = new Linear(load, p + ".norm.linear", dim, 3 * dim, bias: true, quant: quant);
        _toQ = new Linear(load, p + ".attn.to_q", dim, dim, bias: true, quant: quant);
        _toK = new Linear(load, p + ".attn.to_k", dim, dim, bias: true, quant: quant);
        _toV = new Linear(load, p + ".attn.to_v", dim, dim, bias: true, quant: quant);
        _normQ = load(p + ".attn.norm_q.weight", headDim);
        _normK = load(p + ".attn.norm_k.weight", headDim);
        _projMlp = new Linear(load, p + ".proj_mlp", dim, mlpHidden, bias: true, quant: quant);
        _projOut = new Linear(load, p + ".proj_out", dim + mlpHidden, dim, bias: true, quant: quant);
    }

    /// <summary>
    /// Updates x [B, S, D] in place (S = textLen + image rows; text first). silu(temb) [B, D]. The projections run on all
    /// B·S rows at once; modulation and the gated residual per sample. cos/sin [S, head_dim].
    /// </summary>
    /// With <paramref name="merge"/> (token merging, B = 1) the branch — projections, attention, MLP — runs on the plan's
    /// merged rows and its output is copied back to every row before the gated residual (as in FLUX.2 klein).
    internal void Forward(Tensor x, Tensor siluTemb, Tensor cos, Tensor sin, Action<string, Tensor>? trace = null, TokenMergePlan? merge = null)
    {
        var dev = x.Device;
        int batch = x.Shape[0], fullRows = x.Shape[1];
        if (merge is not null && (batch != 1 || merge.Rows != fullRows))
            throw new ArgumentException($"Flux1SingleBlock: a token-merge plan for {merge.Rows} rows of one sample, but x is {x.Shape}");
        int s = merge?.MergedRows ?? fullRows, rows = batch * s;
        var eps = Flux1TransformerConfig.Eps;
        using var mod = Tensor.Empty(dev, DType.F32, batch, 3, _dim);
        _mod.Forward(siluTemb, mod.Reshape(batch, 3 * _dim));
        trace?.Invoke("mod", mod.Reshape(1, 3 * _dim));
        using var fullNorm = Tensor.Empty(dev, DType.F32, batch, fullRows, _dim);
        for (int b = 0; b < batch; b++)
        {
            var m = mod.Slice(b, 1).Reshape(3, _dim);
            LayerNormModulate.Forward(x.Slice(b, 1), ModulationRows.Row(m, 0), ModulationRows.Row(m, 1), fullNorm.Slice(b, 1), eps);
        }
        trace?.Invoke("norm.x", fullNorm);
        using var merged = merge is null ? null : Tensor.Empty(dev, DType.F32, 1, s, _dim);
        if (merge is not null)
        {
            RowGroups.Mean(fullNorm.Reshape(fullRows, _dim), merge.Merge, merged!.Reshape(s, _dim));
            (cos, sin) = (merge.Cos, merge.Sin);
        }
        var flat = (merged ?? fullNorm).Reshape(rows, _dim);

        // cat(attention, mlp) is assembled in one [B·S, 5D] buffer for proj_out.
        using var cat = Tensor.Empty(dev, DType.F32, rows, _dim + _mlp);
        using (var mlp = Tensor.Empty(dev, DType.F32, rows, _mlp))
        {
            _projMlp.Forward(flat, mlp);
            Gelu.Forward(mlp, mlp, GeluApproximation.Tanh);
            trace?.Invoke("mlp_act", mlp);
            Elementwise.WriteColumns(mlp, cat, _dim);
        }
        using (var q = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim))
        using (var k = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim))
        using (var v = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim))
        using (var o = Tensor.Empty(dev, DType.F32, batch, s, _heads, _headDim))
        {
            _toQ.Forward(flat, q.Reshape(rows, _dim));
            _toK.Forward(flat, k.Reshape(rows, _dim));
            _toV.Forward(flat, v.Reshape(rows, _dim));
            JointAttention.Forward(q, k, v, 0, null, new JointAttention.QkNorm(_normQ, _normK), cos, sin, o, eps, trace);
            trace?.Invoke("attn", o.Reshape(s, _dim));
            Elementwise.WriteColumns(o.Reshape(rows, _dim), cat, 0);
        }
        using var branchOut = Tensor.Empty(dev, DType.F32, batch, s, _dim);
        _projOut.Forward(cat, branchOut.Reshape(rows, _dim));
        using var unmerged = merge is null ? null : Tensor.Empty(dev, DType.F32, 1, fullRows, _dim);
        if (merge is not null) RowGroups.Mean(branchOut.Reshape(s, _dim), merge.Unmerge, unmerged!.Reshape(fullRows, _dim));
        var output = unmerged ?? branchOut;
        trace?.Invoke("proj_out", output);
        for (int b = 0; b < batch; b++)
            GatedResidual.Forward(x.Slice(b, 1), ModulationRows.Row(mod.Slice(b, 1).Reshape(3, _dim), 2), output.Slice(b, 1));
    }

    public void Dispose()
    {
        foreach (var l in new[] { _mod, _toQ, _toK, _toV, _projMlp, _projOut }) l.Dispose();
        _normQ.Dispose();
        _normK.Dispose();
    }
}
