namespace PureFlux.Model.Config;

/// <summary>
/// transformer/config.json of a FLUX.2 snapshot (diffusers Flux2Transformer2DModel). Defaults are diffusers'
/// constructor defaults; klein 4B sets: 5 double / 20 single layers, 24 heads × 128, joint_attention_dim 7680,
/// guidance_embeds false.
/// </summary>
public sealed record Flux2TransformerConfig
{
    public int PatchSize { get; init; } = 1;
    public int InChannels { get; init; } = 128;
    /// <summary>null in the file means "same as in_channels"; see <see cref="OutputChannels"/>.</summary>
    public int? OutChannels { get; init; }
    public int NumLayers { get; init; } = 8;
    public int NumSingleLayers { get; init; } = 48;
    public int AttentionHeadDim { get; init; } = 128;
    public int NumAttentionHeads { get; init; } = 48;
    public int JointAttentionDim { get; init; } = 15360;
    public int TimestepGuidanceChannels { get; init; } = 256;
    public double MlpRatio { get; init; } = 3.0;
    public int[] AxesDimsRope { get; init; } = [32, 32, 32, 32];
    public double RopeTheta { get; init; } = 2000;
    public double Eps { get; init; } = 1e-6;
    public bool GuidanceEmbeds { get; init; } = true;

    /// <summary>num_attention_heads × attention_head_dim (3072 in klein 4B).</summary>
    public int InnerDim => NumAttentionHeads * AttentionHeadDim;
    /// <summary>SwiGLU hidden width, int(inner_dim × mlp_ratio) as in diffusers (9216 in klein 4B).</summary>
    public int MlpHiddenDim => (int)(InnerDim * MlpRatio);
    public int OutputChannels => OutChannels ?? InChannels;

    public static Flux2TransformerConfig Load(string path) => Read(ConfigJson.Load(path));

    public static Flux2TransformerConfig Parse(string json, string path = "transformer/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static Flux2TransformerConfig Read(ConfigJson j)
    {
        var d = new Flux2TransformerConfig();
        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, HD = ConfigJson.MaxHeadDim, D = ConfigJson.MaxDim, C = ConfigJson.MaxChannels;
        var c = new Flux2TransformerConfig
        {
            PatchSize = j.Positive("patch_size", d.PatchSize, max: 64),
            InChannels = j.Positive("in_channels", d.InChannels, max: C),
            OutChannels = j.IntOrNull("out_channels"),
            NumLayers = j.Positive("num_layers", d.NumLayers, min: 0, max: L),
            NumSingleLayers = j.Positive("num_single_layers", d.NumSingleLayers, min: 0, max: L),
            AttentionHeadDim = j.Positive("attention_head_dim", d.AttentionHeadDim, max: HD),
            NumAttentionHeads = j.Positive("num_attention_heads", d.NumAttentionHeads, max: H),
            JointAttentionDim = j.Positive("joint_attention_dim", d.JointAttentionDim, max: D),
            TimestepGuidanceChannels = j.Positive("timestep_guidance_channels", d.TimestepGuidanceChannels, min: 2, max: D),
            MlpRatio = j.Number("mlp_ratio", d.MlpRatio, 0, 64, minExclusive: true),
            AxesDimsRope = j.BoundedIntArray("axes_dims_rope", d.AxesDimsRope, 1, 16, 1, HD)!,
            RopeTheta = j.Number("rope_theta", d.RopeTheta, 0, 1e12, minExclusive: true),
            Eps = j.Number("eps", d.Eps, 0, 1, minExclusive: true),
            GuidanceEmbeds = j.Bool("guidance_embeds", d.GuidanceEmbeds),
        };
        if (c.OutChannels is < 1 or > C) throw j.Error("out_channels", $"is {c.OutChannels}; expected an integer in 1..{C} or null");
        if ((long)c.NumAttentionHeads * c.AttentionHeadDim > D)
            throw j.Error("num_attention_heads", $"× attention_head_dim = {(long)c.NumAttentionHeads * c.AttentionHeadDim}; expected at most {D}");
        if (c.MlpHiddenDim < 1) throw j.Error("mlp_ratio", $"is {c.MlpRatio}; int(inner_dim × mlp_ratio) must be at least 1");
        if (c.AxesDimsRope.Any(a => a % 2 != 0))
            throw j.Error("axes_dims_rope", $"is [{string.Join(", ", c.AxesDimsRope)}]; expected positive even sizes");
        // RoPE rotates the whole head: the axes must add up to attention_head_dim.
        if (c.AxesDimsRope.Sum() != c.AttentionHeadDim)
            throw j.Error("axes_dims_rope", $"sums to {c.AxesDimsRope.Sum()}; expected attention_head_dim = {c.AttentionHeadDim}");
        return c;
    }
}
