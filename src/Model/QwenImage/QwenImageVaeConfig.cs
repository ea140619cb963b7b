using PureFlux.Model.Config;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// vae/config.json of a Qwen-Image snapshot (diffusers AutoencoderKLQwenImage, a Wan-2.1-style causal 3D VAE).
/// Defaults are diffusers' (the real model's): base_dim 96, z_dim 16, dim_mult [1, 2, 4, 4], 2 residual blocks,
/// no attention scales, and the 16 + 16 latent statistics.
/// </summary>
public sealed record QwenImageVaeConfig
{
    public int BaseDim { get; init; } = 96;
    public int ZDim { get; init; } = 16;
    public int[] DimMult { get; init; } = [1, 2, 4, 4];
    public int NumResBlocks { get; init; } = 2;
    public int InputChannels { get; init; } = 3;
    public float[] LatentsMean { get; init; } = [];
    public float[] LatentsStd { get; init; } = [];

    /// <summary>Pixels per latent pixel on each side: 2^(levels − 1) (8).</summary>
    public int SpatialScale => 1 << (DimMult.Length - 1);

    public static QwenImageVaeConfig Load(string path) => Read(ConfigJson.Load(path));

    private static QwenImageVaeConfig Read(ConfigJson j)
    {
        var d = new QwenImageVaeConfig();
        var c = new QwenImageVaeConfig
        {
            BaseDim = j.Positive("base_dim", d.BaseDim, max: ConfigJson.MaxChannels),
            ZDim = j.Positive("z_dim", d.ZDim, max: ConfigJson.MaxChannels),
            DimMult = j.BoundedIntArray("dim_mult", d.DimMult, 2, 8, 1, 64)!,
            NumResBlocks = j.Positive("num_res_blocks", d.NumResBlocks, max: 64),
            InputChannels = j.Positive("input_channels", d.InputChannels, max: 16),
        };
        if (j.Raw("attn_scales") is { } a && a.ValueKind == System.Text.Json.JsonValueKind.Array && a.GetArrayLength() > 0)
            throw j.Error("attn_scales", "is not empty; only the Qwen-Image VAE without attention in the resolution levels is supported");
        if (c.InputChannels != 3) throw j.Error("input_channels", $"is {c.InputChannels}; only RGB (3) is supported");
        if ((long)c.BaseDim * c.DimMult.Max() > ConfigJson.MaxChannels) throw j.Error("base_dim", $"× dim_mult reaches {(long)c.BaseDim * c.DimMult.Max()} channels; too many");
        float[] Stats(string field)
        {
            if (j.Raw(field) is not { } v) throw j.Error(field, $"is missing; expected {c.ZDim} numbers (Qwen-Image's latent statistics)");
            if (v.ValueKind != System.Text.Json.JsonValueKind.Array || v.GetArrayLength() != c.ZDim || v.EnumerateArray().Any(e => e.ValueKind != System.Text.Json.JsonValueKind.Number))
                throw j.Error(field, $"must be an array of z_dim = {c.ZDim} numbers");
            var f = v.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
            if (f.Any(x => !float.IsFinite(x))) throw j.Error(field, "has a non-finite entry");
            return f;
        }
        var std = Stats("latents_std");
        if (std.Any(x => x <= 0)) throw j.Error("latents_std", "has an entry ≤ 0; expected positive standard deviations");
        return c with { LatentsMean = Stats("latents_mean"), LatentsStd = std };
    }
}
