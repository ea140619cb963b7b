using PureFlux.Model.Config;

namespace PureFlux.Model.Flux1;

/// <summary>
/// transformer/config.json of a FLUX.1 snapshot (diffusers FluxTransformer2DModel). Defaults are diffusers' constructor
/// defaults, which are the real dev / schnell / Kontext sizes: 19 double + 38 single blocks, 24 heads × 128, T5 width
/// 4096, CLIP pooled width 768, RoPE axes [16, 56, 56]; guidance_embeds true for dev and Kontext, false for schnell.
/// Fixed by the architecture (not in the file): RoPE θ = 10⁴, MLP ratio 4 (GELU-tanh), eps 1e-6, 256 sinusoid channels.
/// </summary>
public sealed record Flux1TransformerConfig
{
    public const double RopeTheta = 10000;
    public const float Eps = 1e-6f;
    public const int MlpRatio = 4;
    /// <summary>Width of the sinusoidal timestep / guidance embedding (diffusers Timesteps(256)).</summary>
    public const int TimeProjChannels = 256;

    public int PatchSize { get; init; } = 1;
    public int InChannels { get; init; } = 64;
    /// <summary>null in the file means "same as in_channels"; see <see cref="OutputChannels"/>.</summary>
    public int? OutChannels { get; init; }
    public int NumLayers { get; init; } = 19;
    public int NumSingleLayers { get; init; } = 38;
    public int AttentionHeadDim { get; init; } = 128;
    public int NumAttentionHeads { get; init; } = 24;
    public int JointAttentionDim { get; init; } = 4096;
    public int PooledProjectionDim { get; init; } = 768;
    public bool GuidanceEmbeds { get; init; }
    public int[] AxesDimsRope { get; init; } = [16, 56, 56];

    /// <summary>num_attention_heads × attention_head_dim (3072).</summary>
    public int InnerDim => NumAttentionHeads * AttentionHeadDim;
    /// <summary>GELU-tanh MLP width: 4 × inner_dim (12288).</summary>
    public int MlpHiddenDim => MlpRatio * InnerDim;
    public int OutputChannels => OutChannels ?? InChannels;

    public static Flux1TransformerConfig Load(string path) => Read(ConfigJson.Load(path));

    public static Flux1TransformerConfig Parse(string json, string path = "transformer/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static Flux1TransformerConfig Read(ConfigJson j)
    {
        var d = new Flux1TransformerConfig();
        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, HD = ConfigJson.MaxHeadDim, D = ConfigJson.MaxDim, C = ConfigJson.MaxChannels;
        var c = new Flux1TransformerConfig
        {
            PatchSize = j.Positive("patch_size", d.PatchSize, max: 64),
            InChannels = j.Positive("in_channels", d.InChannels, max: C),
            OutChannels = j.IntOrNull("out_channels"),
            NumLayers = j.Positive("num_layers", d.NumLayers, min: 0, max: L),
            NumSingleLayers = j.Positive("num_single_layers", d.NumSingleLayers, min: 0, max: L),
            AttentionHeadDim = j.Positive("attention_head_dim", d.AttentionHeadDim, max: HD),
            NumAttentionHeads = j.Positive("num_attention_heads", d.NumAttentionHeads, max: H),
            JointAttentionDim = j.Positive("joint_attention_dim", d.JointAttentionDim, max: D),
            PooledProjectionDim = j.Positive("pooled_projection_dim", d.PooledProjectionDim, max: D),
            GuidanceEmbeds = j.Bool("guidance_embeds", d.GuidanceEmbeds),
            AxesDimsRope = j.BoundedIntArray("axes_dims_rope", d.AxesDimsRope, 1, 16, 1, HD)!,
        };
        // Unsupported values are bad data (exit 1), named by file and field.
        if (c.PatchSize != 1) throw j.Error("patch_size", $"is {c.PatchSize}; only 1 is supported (every FLUX.1 snapshot uses 1: 2x2 patches are packed outside the model)");
        if (c.InChannels % 4 != 0) throw j.Error("in_channels", $"is {c.InChannels}; expected 4 × the VAE's latent channels (64 for FLUX.1)");
        if (c.OutChannels is < 1 or > C) throw j.Error("out_channels", $"is {c.OutChannels}; expected an integer in 1..{C} or null");
        if (c.OutputChannels != c.InChannels) throw j.Error("out_channels", $"is {c.OutChannels}; the sampler needs a prediction shaped like the input ({c.InChannels} channels) or null");
        if ((long)c.NumAttentionHeads * c.AttentionHeadDim * MlpRatio > D)
            throw j.Error("num_attention_heads", $"× attention_head_dim × 4 = {(long)c.NumAttentionHeads * c.AttentionHeadDim * MlpRatio}; expected at most {D}");
        if (c.AxesDimsRope.Length != 3) throw j.Error("axes_dims_rope", $"has {c.AxesDimsRope.Length} entries; FLUX.1 positions have 3 axes (t, row, col)");
        if (c.AxesDimsRope.Any(a => a % 2 != 0)) throw j.Error("axes_dims_rope", $"is [{string.Join(", ", c.AxesDimsRope)}]; expected positive even sizes");
        if (c.AxesDimsRope.Sum() != c.AttentionHeadDim)
            throw j.Error("axes_dims_rope", $"sums to {c.AxesDimsRope.Sum()}; expected attention_head_dim = {c.AttentionHeadDim}");
        return c;
    }
}
