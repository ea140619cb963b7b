using PureFlux.Model.Layers;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// One Qwen-Image dual-stream (MMDiT) block, diffusers QwenImageTransformerBlock, for one sample whose streams are
/// views into one joint buffer x [T + S, D] (text rows first, as the joint attention orders them):
/// per stream LayerNorm (no affine) · (1 + scale) + shift → separate q/k/v projections with biases → per-head RMSNorm
/// (separate weights per stream) → interleaved RoPE → one attention over [text; image] (padded text keys masked) →
/// separate output projections, gated residual; then LayerNorm · (1 + scale) + shift → GELU(tanh) MLP, gated residual.
/// Modulation per stream: Linear(SiLU(temb)) [6D] = (shift1, scale1, gate1, shift2, scale2, gate2).
/// </summary>
public sealed class QwenImageBlock : IDisposable
{
    private readonly int _dim, _heads, _headDim, _mlp;
    private readonly Linear _imgMod, _txtMod, _toQ, _toK, _toV, _addQ, _addK, _addV, _toOut, _toAddOut;
    private readonly Linear _imgMlpIn, _imgMlpOut, _txtMlpIn, _txtMlpOut;
    private readonly Tensor _normQ, _normK, _normAddedQ, _normAddedK;

    public QwenImageBlock(WeightLoader load, string p, QwenImageTransformerConfig c, QuantMode quant)
    {
        _dim = c.Dim; _heads = c.NumAttentionHeads; _headDim = c.AttentionHeadDim; _mlp = c.MlpHidden;
        int d = _dim;
        _imgMod = new Linear(load, p + ".img_mod.1", d, 6 * d, bias: true, quant: quant);
        _txtMod = new Linear(load, p + ".txt_mod.1", d, 6 * d, bias: true, quant: quant);
        _toQ = new Linear(load, p + ".attn.to_q", d, d, bias: true, quant: quant);
        _toK = new Linear(load, p + ".attn.to_k", d, d, bias: true, quant: quant);
        _toV = new Linear(load, p + ".attn.to_v", d, d, bias: true, quant: quant);
        _addQ = new Linear(load, p + ".attn.add_q_proj", d, d, bias: true, quant: quant);
        _addK = new Linear(load, p + ".attn.add_k_proj", d, d, bias: true, quant: quant);
        _addV = new Linear(load, p + ".attn.add_v_proj", d, d, bias: true, quant: quant);
        _toOut = new Linear(load, p + ".attn.to_out.0", d, d, bias: true, quant: quant);
        _toAddOut = new Linear(load, p + ".attn.to_add_out", d, d, bias: true, quant: quant);
        _normQ = load(p + ".attn.norm_q.weight", _headDim);
        _normK = load(p + ".attn.norm_k.weight", _headDim);
        _normAddedQ = load(p + ".attn.norm_added_q.weight", _headDim);
        _normAddedK = load(p + ".attn.norm_added_k.weight", _headDim);
        _imgMlpIn = new Linear(load, p + ".img_mlp.net.0.proj", d, _mlp, bias: true, quant: quant);
        _imgMlpOut = new Linear(load, p + ".img_mlp.net.2", _mlp, d, bias: true, quant: quant);
        _txtMlpIn = new Linear(load, p + ".txt_mlp.net.0.proj", d, _mlp, bias: true, quant: quant);
        _txtMlpOut = new Linear(load, p + ".txt_mlp.net.2", _mlp, d, bias: true, quant: quant);
    }

    /// <summary>SiLU(temb) [B, D] → image and text modulation [B, 6, D] each (rows shift1, scale1, gate1, shift2, scale2, gate2).</summary>
    public (Tensor Img, Tensor Txt) Modulation(Tensor siluTemb)
    {
        int b = siluTemb.Shape[0];
        var img = Tensor.Empty(siluTemb.Device, DType.F32, b, 6, _dim);
        var txt = Tensor.Empty(siluTemb.Device, DType.F32, b, 6, _dim);
        _imgMod.Forward(siluTemb, img.Reshape(b, 6 * _dim));
        _txtMod.Forward(siluTemb, txt.Reshape(b, 6 * _dim));
        return (img, txt);
    }

    private static Tensor Row(Tensor mod, int r) => mod.Slice(r, 1).Reshape(mod.Shape[1]);

    /// <summary>
    /// Updates one sample's joint stream x [T + S, D] (text rows first) in place. imgMod / txtMod [6, D]: this sample's
    /// modulation. txtCos/txtSin [T, head_dim], imgCos/imgSin [S, head_dim]: RoPE factors (each pair's factor twice).
    /// keyMask: U8 [T + S] (1 = attend) or null when every text token is real.
    /// <para>Token merging (<c>tome</c>): with <paramref name="merge"/> (a plan over the S image rows alone) the image stream's
    /// branches — q/k/v projections, attention, output projection; the MLP — run on its S' merged rows (each the mean of its
    /// group, RoPE rows the destinations'), and their outputs are copied back to all S rows before the gated residuals; the
    /// text stream is untouched. <paramref name="imageKeys"/> (optional [S, D]) receives the image key projections (before
    /// norm and RoPE), from which the transformer plans the merge.</para>
    /// </summary>
    public void Forward(Tensor x, int textLength, Tensor imgMod, Tensor txtMod, Tensor txtCos, Tensor txtSin, Tensor imgCos, Tensor imgSin,
        Tensor? keyMask, Action<string, Tensor>? trace = null, TokenMergePlan? merge = null, Tensor? imageKeys = null)
    {
        var dev = x.Device;
        int n = x.Shape[0], t = textLength, s = n - t;
        int sm = merge?.MergedRows ?? s, nm = t + sm; // image rows and joint rows the attention sees
        if (merge is not null) (imgCos, imgSin, trace) = (merge.Cos, merge.Sin, null);
        var txt = x.Slice(0, t);
        var img = x.Slice(t, s);
        const float eps = QwenImageTransformerConfig.NormEps;
        trace?.Invoke("img_mod", imgMod.Reshape(1, 6 * _dim));
        trace?.Invoke("txt_mod", txtMod.Reshape(1, 6 * _dim));

        using var norm = Tensor.Empty(dev, DType.F32, n, _dim);
        var normTxt = norm.Slice(0, t);
        var normImg = norm.Slice(t, s);
        if (trace is not null)
        {
            LayerNormModulate.LayerNorm(img, normImg, eps);
            trace("img_norm1", normImg);
            LayerNormModulate.LayerNorm(txt, normTxt, eps);
            trace("txt_norm1", normTxt);
        }
        LayerNormModulate.Forward(img, Row(imgMod, 0), Row(imgMod, 1), normImg, eps);
        LayerNormModulate.Forward(txt, Row(txtMod, 0), Row(txtMod, 1), normTxt, eps);
        trace?.Invoke("img_mod1.modulated", normImg);
        trace?.Invoke("txt_mod1.modulated", normTxt);
        using var mergedImg = merge is null ? null : Tensor.Empty(dev, DType.F32, sm, _dim);
        if (merge is not null) RowGroups.Mean(normImg, merge.Merge, mergedImg!);
        var imgIn = mergedImg ?? normImg;

        using var q = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim);
        using var k = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim);
        using var v = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim);
        Tensor Rows(Tensor a, int from, int count) => a.Slice(from, count).Reshape(count, _dim);
        _addQ.Forward(normTxt, Rows(q, 0, t));
        _addK.Forward(normTxt, Rows(k, 0, t));
        _addV.Forward(normTxt, Rows(v, 0, t));
        _toQ.Forward(imgIn, Rows(q, t, sm));
        _toK.Forward(imgIn, Rows(k, t, sm));
        _toV.Forward(imgIn, Rows(v, t, sm));
        if (imageKeys is not null) Rows(k, t, sm).CopyTo(imageKeys);
        trace?.Invoke("attn.to_q", Rows(q, t, s));
        trace?.Invoke("attn.to_k", Rows(k, t, s));
        trace?.Invoke("attn.to_v", Rows(v, t, s));
        trace?.Invoke("attn.add_q_proj", Rows(q, 0, t));
        trace?.Invoke("attn.add_k_proj", Rows(k, 0, t));
        trace?.Invoke("attn.add_v_proj", Rows(v, 0, t));

        var qTxt = q.Slice(0, t); var kTxt = k.Slice(0, t);
        var qImg = q.Slice(t, sm); var kImg = k.Slice(t, sm);
        RmsNorm.Forward(qImg, _normQ, qImg, eps);
        RmsNorm.Forward(kImg, _normK, kImg, eps);
        RmsNorm.Forward(qTxt, _normAddedQ, qTxt, eps);
        RmsNorm.Forward(kTxt, _normAddedK, kTxt, eps);
        trace?.Invoke("attn.norm_q", qImg);
        trace?.Invoke("attn.norm_k", kImg);
        trace?.Invoke("attn.norm_added_q", qTxt);
        trace?.Invoke("attn.norm_added_k", kTxt);
        Rope.ApplyInterleaved(qImg, imgCos, imgSin, qImg);
        Rope.ApplyInterleaved(kImg, imgCos, imgSin, kImg);
        Rope.ApplyInterleaved(qTxt, txtCos, txtSin, qTxt);
        Rope.ApplyInterleaved(kTxt, txtCos, txtSin, kTxt);
        trace?.Invoke("attn.img_q_rope", qImg);
        trace?.Invoke("attn.img_k_rope", kImg);
        trace?.Invoke("attn.txt_q_rope", qTxt);
        trace?.Invoke("attn.txt_k_rope", kTxt);
        trace?.Invoke("attn.joint_q", q);
        trace?.Invoke("attn.joint_k", k);
        trace?.Invoke("attn.joint_v", v);

        using (var o = Tensor.Empty(dev, DType.F32, nm, _heads, _headDim))
        {
            // Merged image rows are all real: the mask's first T + S' entries are the text's, then ones.
            Attention.Forward(q, k, v, o, new AttentionOptions { KeyMask = keyMask?.Slice(0, nm) });
            trace?.Invoke("attn.sdpa_out", o);
            // The attention outputs reuse the q buffer.
            _toAddOut.Forward(Rows(o, 0, t), Rows(q, 0, t));
            _toOut.Forward(Rows(o, t, sm), Rows(q, t, sm));
        }
        trace?.Invoke("attn.img", Rows(q, t, s));
        trace?.Invoke("attn.txt", Rows(q, 0, t));
        using (var unmerged = merge is null ? null : Tensor.Empty(dev, DType.F32, s, _dim))
        {
            if (merge is not null) RowGroups.Mean(Rows(q, t, sm), merge.Unmerge, unmerged!);
            GatedResidual.Forward(img, Row(imgMod, 2), unmerged ?? Rows(q, t, s));
        }
        GatedResidual.Forward(txt, Row(txtMod, 2), Rows(q, 0, t));

        Mlp(img, imgMod, normImg, _imgMlpIn, _imgMlpOut, "img", trace, merge);
        Mlp(txt, txtMod, normTxt, _txtMlpIn, _txtMlpOut, "txt", trace);
    }

    /// <summary>stream += gate2 · net.2(GELU_tanh(net.0.proj(LN(stream) · (1 + scale2) + shift2))); with a merge plan the
    /// MLP runs on the merged rows and its output is copied back to every row.</summary>
    private void Mlp(Tensor stream, Tensor mod, Tensor norm, Linear lin, Linear lout, string name, Action<string, Tensor>? trace, TokenMergePlan? merge = null)
    {
        var dev = stream.Device;
        int rows = merge?.MergedRows ?? stream.Shape[0];
        const float eps = QwenImageTransformerConfig.NormEps;
        if (trace is not null)
        {
            LayerNormModulate.LayerNorm(stream, norm, eps);
            trace($"{name}_norm2", norm);
        }
        LayerNormModulate.Forward(stream, Row(mod, 3), Row(mod, 4), norm, eps);
        trace?.Invoke($"{name}_mod2.modulated", norm);
        using var merged = merge is null ? null : Tensor.Empty(dev, DType.F32, rows, _dim);
        if (merge is not null) RowGroups.Mean(norm, merge.Merge, merged!);
        using var hidden = Tensor.Empty(dev, DType.F32, rows, _mlp);
        lin.Forward(merged ?? norm, hidden);
        Gelu.Forward(hidden, hidden, GeluApproximation.Tanh);
        trace?.Invoke($"{name}_mlp.gelu", hidden);
        using var output = Tensor.Empty(dev, DType.F32, rows, _dim);
        lout.Forward(hidden, output);
        trace?.Invoke($"{name}_mlp", output);
        using var unmerged = merge is null ? null : Tensor.Empty(dev, DType.F32, stream.Shape[0], _dim);
        if (merge is not null) RowGroups.Mean(output, merge.Unmerge, unmerged!);
        GatedResidual.Forward(stream, Row(mod, 5), unmerged ?? output);
    }

    public void Dispose()
    {
        foreach (var l in new[] { _imgMod, _txtMod, _toQ, _toK, _toV, _addQ, _addK, _addV, _toOut, _toAddOut, _imgMlpIn, _imgMlpOut, _txtMlpIn, _txtMlpOut }) l.Dispose();
        foreach (var t in new[] { _normQ, _normK, _normAddedQ, _normAddedK }) t.Dispose();
    }
}
