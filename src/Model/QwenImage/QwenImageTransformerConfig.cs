using PureFlux.Model.Config;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// transformer/config.json of a Qwen-Image snapshot (diffusers QwenImageTransformer2DModel). Defaults are diffusers'
/// constructor defaults, which are the real Qwen-Image's: 60 dual-stream blocks, 24 heads × 128, text width 3584,
/// RoPE axes (16, 56, 56). Only the text-to-image variant is supported (no guidance embedding, no zero_cond_t,
/// no additional t condition, no layer-3D RoPE).
/// </summary>
public sealed record QwenImageTransformerConfig
{
    /// <summary>The timestep sinusoid width (Timesteps(num_channels=256)) and its scale (t · f · 1000).</summary>
    public const int FrequencyDim = 256;
    public const float TimestepScale = 1000f;
    /// <summary>Every LayerNorm / RMSNorm of the transformer uses eps 1e-6.</summary>
    public const float NormEps = 1e-6f;
    /// <summary>RoPE base of QwenEmbedRope.</summary>
    public const double RopeTheta = 10000;
    /// <summary>QwenEmbedRope holds position tables for indices −4096 … 4095 on each axis.</summary>
    public const int RopePositions = 4096;

    public int PatchSize { get; init; } = 2;
    /// <summary>Channels of one packed token: 16 latent channels × 2 × 2.</summary>
    public int InChannels { get; init; } = 64;
    /// <summary>Latent channels the output un-packs to (the token output is p · p · out_channels wide).</summary>
    public int OutChannels { get; init; } = 16;
    public int NumLayers { get; init; } = 60;
    public int AttentionHeadDim { get; init; } = 128;
    public int NumAttentionHeads { get; init; } = 24;
    /// <summary>Width of the text encoder's hidden states (3584 for Qwen2.5-VL-7B).</summary>
    public int JointAttentionDim { get; init; } = 3584;
    public int[] AxesDimsRope { get; init; } = [16, 56, 56];

    /// <summary>Inner width heads · head_dim (3072).</summary>
    public int Dim => NumAttentionHeads * AttentionHeadDim;
    /// <summary>FeedForward(mult 4) hidden width.</summary>
    public int MlpHidden => 4 * Dim;
    /// <summary>Width of one output token: p · p · out_channels.</summary>
    public int OutputChannels => PatchSize * PatchSize * OutChannels;

    public static QwenImageTransformerConfig Load(string path) => Read(ConfigJson.Load(path));

    public static QwenImageTransformerConfig Parse(string json, string path = "transformer/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static QwenImageTransformerConfig Read(ConfigJson j)
    {
        var d = new QwenImageTransformerConfig();
        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, HD = ConfigJson.MaxHeadDim, D = ConfigJson.MaxDim, C = ConfigJson.MaxChannels;
        var c = new QwenImageTransformerConfig
        {
            PatchSize = j.Positive("patch_size", d.PatchSize, max: 64),
            InChannels = j.Positive("in_channels", d.InChannels, max: C),
            OutChannels = j.Raw("out_channels") is null ? d.OutChannels : j.Positive("out_channels", max: C),
            NumLayers = j.Positive("num_layers", d.NumLayers, min: 0, max: L),
            AttentionHeadDim = j.Positive("attention_head_dim", d.AttentionHeadDim, max: HD),
            NumAttentionHeads = j.Positive("num_attention_heads", d.NumAttentionHeads, max: H),
            JointAttentionDim = j.Positive("joint_attention_dim", d.JointAttentionDim, max: D),
            AxesDimsRope = j.BoundedIntArray("axes_dims_rope", d.AxesDimsRope, 3, 3, 2, HD)!,
        };
        foreach (var flag in new[] { "guidance_embeds", "zero_cond_t", "use_additional_t_cond", "use_layer3d_rope" })
            if (j.Bool(flag, false)) throw j.Error(flag, "is true; only the text-to-image Qwen-Image transformer (false) is supported");
        if (c.PatchSize != 2) throw j.Error("patch_size", $"is {c.PatchSize}; only 2 is supported (Qwen-Image)");
        if ((long)c.NumAttentionHeads * c.AttentionHeadDim > D) throw j.Error("num_attention_heads", $"× attention_head_dim = {(long)c.NumAttentionHeads * c.AttentionHeadDim}; expected at most {D}");
        if (c.AxesDimsRope.Any(a => a % 2 != 0)) throw j.Error("axes_dims_rope", $"is [{string.Join(", ", c.AxesDimsRope)}]; expected even sizes");
        if (c.AxesDimsRope.Sum() != c.AttentionHeadDim)
            throw j.Error("axes_dims_rope", $"sums to {c.AxesDimsRope.Sum()}; expected attention_head_dim = {c.AttentionHeadDim}");
        if (c.InChannels != c.PatchSize * c.PatchSize * c.OutChannels)
            throw j.Error("in_channels", $"is {c.InChannels}; expected patch_size² × out_channels = {c.PatchSize * c.PatchSize * c.OutChannels} (packed latent tokens)");
        return c;
    }
}
