using PureFlux.Model.Config;

namespace PureFlux.Model.Bench;

/// <summary>
/// Floating-point operations of one stage, split by kind. A multiply-add counts as 2 operations.
/// Elementwise work (norms, RoPE, SiLU, residuals, softmax) is not counted: it is O(S·D), not O(S·D²).
/// </summary>
public readonly record struct FlopCount(double Linear, double Attention, double Conv)
{
    public double Total => Linear + Attention + Conv;
    public double GFlop => Total / 1e9;

    public static FlopCount operator +(FlopCount a, FlopCount b) => new(a.Linear + b.Linear, a.Attention + b.Attention, a.Conv + b.Conv);
    public static FlopCount operator *(double n, FlopCount a) => new(n * a.Linear, n * a.Attention, n * a.Conv);
    public static readonly FlopCount Zero = new(0, 0, 0);
}

/// <summary>
/// Analytic FLOP counts of the FLUX.2 [klein] pipeline, from the configs alone (what the model code runs):
/// a linear x[M, K]·Wᵀ[K, N] costs 2·M·N·K; attention over S tokens with H heads of width D costs 4·S²·D·H
/// (QKᵀ and P·V, each 2·S²·D per head; causal/padding masks are not discounted: the kernels compute every score);
/// a k×k convolution from C to O channels with an Ho×Wo output costs 2·O·C·k²·Ho·Wo.
/// </summary>
public static class FlopModel
{
    public static double Linear(double m, double k, double n) => 2.0 * m * n * k;
    public static double Attention(double s, double headDim, double heads) => 4.0 * s * s * headDim * heads;
    public static double Conv(double outC, double inC, int k, double outH, double outW) => 2.0 * outC * inC * k * k * outH * outW;

    /// <summary>
    /// Qwen3 prompt encoding of <paramref name="seqLen"/> tokens through the first <paramref name="layersRun"/> layers
    /// (klein runs max(9, 18, 27) = 27 of 36; see <see cref="Flux2.Flux2KleinModel.DefaultTextLayers"/>).
    /// The embedding lookup is a gather (0 FLOP).
    /// </summary>
    public static FlopCount TextEncoder(Qwen3Config c, int seqLen, int layersRun)
    {
        double s = seqLen, h = c.HiddenSize, q = c.QueryWidth, kv = c.KeyValueWidth, f = c.IntermediateSize;
        double linear = Linear(s, h, q) + 2 * Linear(s, h, kv) + Linear(s, q, h) // q, k, v, o projections
                      + 2 * Linear(s, h, f) + Linear(s, f, h);                      // gate, up, down
        double attention = Attention(s, c.HeadDim, c.NumAttentionHeads);           // GQA shares K/V, not the score work
        return layersRun * new FlopCount(linear, attention, 0);
    }

    /// <summary>One transformer forward (= one denoising step) on <paramref name="textLen"/> + <paramref name="imageTokens"/> tokens.</summary>
    public static FlopCount TransformerStep(Flux2TransformerConfig c, int textLen, int imageTokens)
    {
        double d = c.InnerDim, f = c.MlpHiddenDim, txt = textLen, img = imageTokens, s = txt + img;
        // Timestep MLP and the four modulation linears run on one row (M = 1).
        double linear = Linear(1, c.TimestepGuidanceChannels, d) + Linear(1, d, d)
                      + 2 * Linear(1, d, 6 * d) + Linear(1, d, 3 * d) + Linear(1, d, 2 * d);
        linear += Linear(txt, c.JointAttentionDim, d) + Linear(img, c.InChannels, d); // context_embedder, x_embedder
        linear += Linear(img, d, c.OutputChannels);                                   // proj_out
        // Double block: per stream q, k, v, out (4·D×D) and the SwiGLU MLP (D→2F, F→D); both streams cover all S rows.
        double dbl = 4 * Linear(s, d, d) + Linear(s, d, 2 * f) + Linear(s, f, d);
        // Single block: fused [q|k|v|gate|up] projection (D→3D+2F) and fused output (D+F→D).
        double sgl = Linear(s, d, 3 * d + 2 * f) + Linear(s, d + f, d);
        double attention = Attention(s, c.AttentionHeadDim, c.NumAttentionHeads);
        return new FlopCount(linear, 0, 0)
             + c.NumLayers * new FlopCount(dbl, attention, 0)
             + c.NumSingleLayers * new FlopCount(sgl, attention, 0);
    }

    /// <summary>
    /// One Z-Image transformer forward on <paramref name="imageTokens"/> patch tokens and a caption of
    /// <paramref name="captionTokens"/>, both padded to multiples of 32 as the model runs them: noise refiners on the image
    /// rows, context refiners on the caption rows, main blocks on both; per block q, k, v, out (4·D×D), the SwiGLU
    /// (D→F twice, F→D) and attention.
    /// </summary>
    public static FlopCount ZImageStep(ZImage.ZImageTransformerConfig c, int captionTokens, int imageTokens)
    {
        double d = c.Dim, f = c.FfnHidden, img = ZImage.ZImageTransformer.Padded(imageTokens), cap = ZImage.ZImageTransformer.Padded(captionTokens), u = img + cap;
        FlopCount Block(double n, bool modulated) =>
            new(4 * Linear(n, d, d) + 2 * Linear(n, d, f) + Linear(n, f, d) + (modulated ? Linear(1, c.AdaLnDim, 4 * d) : 0), Attention(n, c.HeadDim, c.NumHeads), 0);
        double linear = Linear(1, ZImage.ZImageTransformerConfig.FrequencyDim, ZImage.ZImageTransformerConfig.TimeHidden)
                      + Linear(1, ZImage.ZImageTransformerConfig.TimeHidden, c.AdaLnDim) + Linear(1, c.AdaLnDim, d)
                      + Linear(imageTokens, c.PatchChannels, d) + Linear(captionTokens, c.CapFeatDim, d) + Linear(imageTokens, d, c.PatchChannels);
        return new FlopCount(linear, 0, 0)
             + c.NumRefinerLayers * (Block(img, true) + Block(cap, false))
             + c.NumLayers * Block(u, true);
    }

    /// <summary>
    /// CLIP text encoding of <paramref name="seqLen"/> tokens (FLUX.1: all 77 positions, every layer — the pooled vector
    /// needs the final layer): per layer q, k, v, out_proj (D×D), fc1 (D→I), fc2 (I→D) and causal attention, counted whole.
    /// </summary>
    public static FlopCount ClipEncode(ClipTextConfig c, int seqLen)
    {
        double s = seqLen, d = c.HiddenSize, i = c.IntermediateSize;
        double linear = 4 * Linear(s, d, d) + Linear(s, d, i) + Linear(s, i, d);
        return c.NumHiddenLayers * new FlopCount(linear, Attention(s, c.HeadDim, c.NumAttentionHeads), 0);
    }

    /// <summary>
    /// T5 encoding of <paramref name="seqLen"/> tokens (FLUX.1: the padded 512 / 256, no mask): per block q, k, v
    /// (D→heads·d_kv), o (heads·d_kv→D), the gated-GELU wi_0, wi_1 (D→F) and wo (F→D), and attention with d_kv-wide heads.
    /// </summary>
    public static FlopCount T5Encode(T5Config c, int seqLen)
    {
        double s = seqLen, d = c.DModel, inner = c.InnerDim, f = c.DFf;
        double linear = 3 * Linear(s, d, inner) + Linear(s, inner, d) + 2 * Linear(s, d, f) + Linear(s, f, d);
        return c.NumLayers * new FlopCount(linear, Attention(s, c.DKv, c.NumHeads), 0);
    }

    /// <summary>
    /// One FLUX.1 transformer forward for one sample on <paramref name="textLen"/> T5 tokens, <paramref name="imageTokens"/>
    /// generated tokens and <paramref name="referenceTokens"/> Kontext reference tokens (S = sum of the three):
    /// conditioning MLPs on one row (timestep 256→D→D, guidance 256→D→D when embedded, pooled text P→D→D), every block's
    /// modulation on one row (double 2·(D→6D), single D→3D, norm_out D→2D), context_embedder on the text rows, x_embedder
    /// on the image rows; double blocks: q, k, v, out and the GELU MLP (D→4D→D) on all S rows (each stream its own weights),
    /// single blocks: q, k, v, proj_mlp (D→4D) and proj_out (5D→D) on S rows; attention over S in every block; proj_out on
    /// the generated rows only. A true-CFG step runs this twice (bench counts each pass).
    /// </summary>
    public static FlopCount Flux1Step(Flux1.Flux1TransformerConfig c, int textLen, int imageTokens, int referenceTokens = 0)
    {
        double d = c.InnerDim, f = c.MlpHiddenDim, txt = textLen, img = imageTokens + referenceTokens, s = txt + img;
        int tp = Flux1.Flux1TransformerConfig.TimeProjChannels;
        double linear = Linear(1, tp, d) + Linear(1, d, d)                                  // timestep_embedder
                      + (c.GuidanceEmbeds ? Linear(1, tp, d) + Linear(1, d, d) : 0)          // guidance_embedder
                      + Linear(1, c.PooledProjectionDim, d) + Linear(1, d, d)                // text_embedder
                      + Linear(1, d, 2 * d)                                                  // norm_out
                      + Linear(txt, c.JointAttentionDim, d) + Linear(img, c.InChannels, d)   // context_embedder, x_embedder
                      + Linear(imageTokens, d, c.OutputChannels);                            // proj_out
        double dbl = 2 * Linear(1, d, 6 * d) + 4 * Linear(s, d, d) + Linear(s, d, f) + Linear(s, f, d);
        double sgl = Linear(1, d, 3 * d) + 3 * Linear(s, d, d) + Linear(s, d, f) + Linear(s, d + f, d);
        double attention = Attention(s, c.AttentionHeadDim, c.NumAttentionHeads);
        return new FlopCount(linear, 0, 0)
             + c.NumLayers * new FlopCount(dbl, attention, 0)
             + c.NumSingleLayers * new FlopCount(sgl, attention, 0);
    }

    /// <summary>VAE decode of a latent [latent_channels, h, w] to an image [3, 8h, 8w] (decoder only).</summary>
    public static FlopCount VaeDecode(VaeConfig c, int latentH, int latentW)
    {
        var ch = c.DecoderChannels;
        int top = ch[^1];
        double conv = 0, linear = 0, attention = 0;
        double hh = latentH, ww = latentW;
        double Resnet(int inC, int outC, double h, double w) =>
            Conv(outC, inC, 3, h, w) + Conv(outC, outC, 3, h, w) + (inC != outC ? Conv(outC, inC, 1, h, w) : 0);

        if (c.UsePostQuantConv) conv += Conv(c.LatentChannels, c.LatentChannels, 1, hh, ww); // post_quant_conv (FLUX.2 only)
        conv += Conv(top, c.LatentChannels, 3, hh, ww);                      // decoder.conv_in
        conv += 2 * Resnet(top, top, hh, ww);                                // mid resnets
        double n = hh * ww;
        if (c.MidBlockAddAttention)
        {
            linear += 4 * Linear(n, top, top);                               // mid attention q, k, v, out (one head of width C)
            attention += Attention(n, top, 1);
        }
        int prev = top;
        var rev = ch.Reverse().ToArray();
        for (int i = 0; i < rev.Length; i++)
        {
            for (int j = 0; j <= c.LayersPerBlock; j++) conv += Resnet(j == 0 ? prev : rev[i], rev[i], hh, ww);
            if (i < rev.Length - 1)
            {
                hh *= 2; ww *= 2;                                            // nearest ×2, then a 3×3 conv at the new size
                conv += Conv(rev[i], rev[i], 3, hh, ww);
            }
            prev = rev[i];
        }
        conv += Conv(c.OutChannels, ch[0], 3, hh, ww);                       // conv_out
        return new FlopCount(linear, attention, conv);
    }
}
