using PureFlux.Model.Bench;
using static PureFlux.Model.Bench.FlopModel;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// Analytic FLOPs of Qwen-Image's stages from the configs alone, with <see cref="FlopModel"/>'s conventions (a multiply-add
/// is 2; elementwise work, norms and RoPE are not counted).
/// </summary>
public static class QwenImageFlops
{
    /// <summary>
    /// One transformer pass (batch 1) on <paramref name="textTokens"/> + <paramref name="imageTokens"/> tokens: the timestep
    /// MLP (256 → D → D) and each block's two modulation linears (D → 6D) and norm_out (D → 2D) on one row; img_in
    /// (64 → D), txt_in (text width → D) and proj_out (D → 64); per block q, k, v, out for each stream (4·D×D over all S rows),
    /// the GELU MLP (D → 4D → D) over all rows, and joint attention over S = text + image tokens.
    /// </summary>
    public static FlopCount TransformerPass(QwenImageTransformerConfig c, int textTokens, int imageTokens)
    {
        double d = c.Dim, f = c.MlpHidden, txt = textTokens, img = imageTokens, s = txt + img;
        double linear = Linear(1, QwenImageTransformerConfig.FrequencyDim, d) + Linear(1, d, d) + Linear(1, d, 2 * d)
                      + Linear(img, c.InChannels, d) + Linear(txt, c.JointAttentionDim, d) + Linear(img, d, c.OutputChannels);
        double block = 2 * Linear(1, d, 6 * d) + 4 * Linear(s, d, d) + Linear(s, d, f) + Linear(s, f, d);
        return new FlopCount(linear, 0, 0) + c.NumLayers * new FlopCount(block, Attention(s, c.AttentionHeadDim, c.NumAttentionHeads), 0);
    }

    /// <summary>
    /// The causal-3D VAE's decoder on one frame, latent [z, h, w] → image [3, 8h, 8w] (every 3×3×3 kernel acts as 3×3):
    /// post_quant_conv (1×1), conv_in, the mid block (two residual blocks around single-head attention over the h·w pixels
    /// with its 1×1 qkv and output convolutions), per level num_res_blocks + 1 residual blocks (two 3×3 convs, a 1×1
    /// shortcut when the channels change) and, but for the last level, nearest 2× + a 3×3 conv that halves the channels; conv_out.
    /// </summary>
    public static FlopCount VaeDecode(QwenImageVaeConfig c, int latentH, int latentW)
    {
        var dims = new[] { c.DimMult[^1] }.Concat(c.DimMult.Reverse()).Select(m => c.BaseDim * m).ToArray();
        double h = latentH, w = latentW, conv = 0;
        double Res(int inC, int outC) => Conv(outC, inC, 3, h, w) + Conv(outC, outC, 3, h, w) + (inC != outC ? Conv(outC, inC, 1, h, w) : 0);
        conv += Conv(c.ZDim, c.ZDim, 1, h, w) + Conv(dims[0], c.ZDim, 3, h, w);
        conv += 2 * Res(dims[0], dims[0]) + Conv(3 * dims[0], dims[0], 1, h, w) + Conv(dims[0], dims[0], 1, h, w);
        double attention = Attention(h * w, dims[0], 1);
        int levels = c.DimMult.Length;
        for (int i = 0; i < levels; i++)
        {
            int inDim = i > 0 ? dims[i] / 2 : dims[i], outDim = dims[i + 1];
            for (int r = 0; r <= c.NumResBlocks; r++) conv += Res(r == 0 ? inDim : outDim, outDim);
            if (i == levels - 1) continue;
            h *= 2; w *= 2;
            conv += Conv(outDim / 2, outDim, 3, h, w);
        }
        conv += Conv(c.InputChannels, dims[^1], 3, h, w);
        return new FlopCount(0, attention, conv);
    }
}
