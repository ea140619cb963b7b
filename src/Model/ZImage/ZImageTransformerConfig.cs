using PureFlux.Model.Config;

namespace PureFlux.Model.ZImage;

/// <summary>
/// transformer/config.json of a Z-Image snapshot (diffusers ZImageTransformer2DModel). Defaults are diffusers'
/// constructor defaults (Z-Image-Turbo: dim 3840, 30 heads, 30 layers, 2 refiner layers, caption features 2560).
/// </summary>
public sealed record ZImageTransformerConfig
{
    /// <summary>The timestep embedding's sinusoid width and the modulation width cap (diffusers' ADALN_EMBED_DIM).</summary>
    public const int FrequencyDim = 256, AdaLnCap = 256;
    /// <summary>The timestep MLP's hidden width (t_embedder mid_size).</summary>
    public const int TimeHidden = 1024;
    /// <summary>Image and caption token counts are padded up to a multiple of this (SEQ_MULTI_OF).</summary>
    public const int SequenceMultiple = 32;

    public int PatchSize { get; init; } = 2;
    public int FramePatchSize { get; init; } = 1;
    public int InChannels { get; init; } = 16;
    public int Dim { get; init; } = 3840;
    public int NumLayers { get; init; } = 30;
    public int NumRefinerLayers { get; init; } = 2;
    public int NumHeads { get; init; } = 30;
    public double NormEps { get; init; } = 1e-5;
    public bool QkNorm { get; init; } = true;
    public int CapFeatDim { get; init; } = 2560;
    public double RopeTheta { get; init; } = 256;
    public double TScale { get; init; } = 1000;
    public int[] AxesDims { get; init; } = [32, 48, 48];
    public int[] AxesLens { get; init; } = [1024, 512, 512];

    public int HeadDim => Dim / NumHeads;
    /// <summary>Modulation input width: min(dim, 256).</summary>
    public int AdaLnDim => Math.Min(Dim, AdaLnCap);
    /// <summary>SwiGLU hidden width int(dim / 3 · 8) (10240 for dim 3840).</summary>
    public int FfnHidden => (int)(Dim / 3.0 * 8);
    /// <summary>Features of one patch token: p · p · in_channels (64).</summary>
    public int PatchChannels => PatchSize * PatchSize * FramePatchSize * InChannels;

    public static ZImageTransformerConfig Load(string path) => Read(ConfigJson.Load(path));

    public static ZImageTransformerConfig Parse(string json, string path = "transformer/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static ZImageTransformerConfig Read(ConfigJson j)
    {
        var d = new ZImageTransformerConfig();
        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, D = ConfigJson.MaxDim, C = ConfigJson.MaxChannels;
        int[] patch = j.BoundedIntArray("all_patch_size", [d.PatchSize], 1, 8, 1, 64)!;
        int[] fpatch = j.BoundedIntArray("all_f_patch_size", [d.FramePatchSize], 1, 8, 1, 64)!;
        var c = new ZImageTransformerConfig
        {
            PatchSize = patch[0],
            FramePatchSize = fpatch[0],
            InChannels = j.Positive("in_channels", d.InChannels, max: C),
            Dim = j.Positive("dim", d.Dim, max: D),
            NumLayers = j.Positive("n_layers", d.NumLayers, min: 0, max: L),
            NumRefinerLayers = j.Positive("n_refiner_layers", d.NumRefinerLayers, min: 0, max: L),
            NumHeads = j.Positive("n_heads", d.NumHeads, max: H),
            NormEps = j.Number("norm_eps", d.NormEps, 0, 1, minExclusive: true),
            QkNorm = j.Bool("qk_norm", d.QkNorm),
            CapFeatDim = j.Positive("cap_feat_dim", d.CapFeatDim, max: D),
            RopeTheta = j.Number("rope_theta", d.RopeTheta, 0, 1e12, minExclusive: true),
            TScale = j.Number("t_scale", d.TScale, 0, 1e9, minExclusive: true),
            AxesDims = j.BoundedIntArray("axes_dims", d.AxesDims, 1, 8, 1, ConfigJson.MaxHeadDim)!,
            AxesLens = j.BoundedIntArray("axes_lens", d.AxesLens, 1, 8, 1, 1 << 24)!,
        };
        // Only the text-to-image configuration (one patch size, no SigLIP image features) is supported.
        if (patch.Length != 1 || c.PatchSize != 2) throw j.Error("all_patch_size", $"is [{string.Join(", ", patch)}]; only [2] is supported (Z-Image)");
        if (fpatch.Length != 1 || c.FramePatchSize != 1) throw j.Error("all_f_patch_size", $"is [{string.Join(", ", fpatch)}]; only [1] is supported (Z-Image)");
        if (j.Has("siglip_feat_dim")) throw j.Error("siglip_feat_dim", "is set (image-conditioned Z-Image variant), which is not supported; expected null");
        if (c.Dim % c.NumHeads != 0) throw j.Error("dim", $"is {c.Dim}; expected a multiple of n_heads {c.NumHeads}");
        if (c.AxesDims.Any(a => a % 2 != 0)) throw j.Error("axes_dims", $"is [{string.Join(", ", c.AxesDims)}]; expected positive even sizes");
        if (c.AxesDims.Sum() != c.HeadDim) throw j.Error("axes_dims", $"sums to {c.AxesDims.Sum()}; expected the head dim dim / n_heads = {c.HeadDim}");
        if (c.AxesLens.Length != c.AxesDims.Length) throw j.Error("axes_lens", $"has {c.AxesLens.Length} entries; expected one per axes_dims entry ({c.AxesDims.Length})");
        return c;
    }
}
