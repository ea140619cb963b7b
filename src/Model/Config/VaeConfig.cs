namespace PureFlux.Model.Config;

/// <summary>The diffusers VAE class a vae/config.json describes (its <c>_class_name</c>).</summary>
public enum VaeKind
{
    /// <summary>AutoencoderKL (FLUX.1, Z-Image, SD): latents are scaled and shifted by scaling_factor / shift_factor.</summary>
    AutoencoderKL,
    /// <summary>AutoencoderKLFlux2 (FLUX.2): latents are patchified 2×2 and normalised by the VAE's batch-norm statistics.</summary>
    AutoencoderKLFlux2,
}

/// <summary>
/// vae/config.json of diffusers AutoencoderKL or AutoencoderKLFlux2 (by <c>_class_name</c>; absent means
/// AutoencoderKLFlux2, the class this engine started with). Absent fields take that class's constructor defaults
/// (the record's initialisers are AutoencoderKLFlux2's). Fields of the other class are not read: diffusers ignores them.
/// </summary>
public sealed record VaeConfig
{
    public VaeKind Kind { get; init; } = VaeKind.AutoencoderKLFlux2;
    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public string[] DownBlockTypes { get; init; } = ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"];
    public string[] UpBlockTypes { get; init; } = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"];
    public int[] BlockOutChannels { get; init; } = [128, 256, 512, 512];
    /// <summary>null = same as <see cref="BlockOutChannels"/>; see <see cref="DecoderChannels"/>.</summary>
    public int[]? DecoderBlockOutChannels { get; init; }
    public int LayersPerBlock { get; init; } = 2;
    public string ActFn { get; init; } = "silu";
    public int LatentChannels { get; init; } = 32;
    public int NormNumGroups { get; init; } = 32;
    public int SampleSize { get; init; } = 1024;
    public bool ForceUpcast { get; init; } = true;
    public bool UseQuantConv { get; init; } = true;
    public bool UsePostQuantConv { get; init; } = true;
    public bool MidBlockAddAttention { get; init; } = true;
    /// <summary>AutoencoderKL only: pipelines decode <c>z / scaling_factor + shift_factor</c> and encode
    /// <c>(mode − shift_factor) · scaling_factor</c>. 1 for AutoencoderKLFlux2, which has no such field.</summary>
    public double ScalingFactor { get; init; } = 1;
    /// <summary>AutoencoderKL only; null = none (diffusers' default; SD's VAEs have none, FLUX.1 and Z-Image 0.1159).</summary>
    public double? ShiftFactor { get; init; }
    /// <summary>AutoencoderKLFlux2 only, like <see cref="BatchNormMomentum"/> and <see cref="PatchSize"/>.</summary>
    public double BatchNormEps { get; init; } = 1e-4;
    public double BatchNormMomentum { get; init; } = 0.1;
    /// <summary>Latent patchify size (height, width) before the BatchNorm: klein packs 2×2 → 4 × latent_channels.</summary>
    public int[] PatchSize { get; init; } = [2, 2];

    public int[] DecoderChannels => DecoderBlockOutChannels ?? BlockOutChannels;
    /// <summary>Image pixels per latent pixel: 2^(number of blocks − 1) = 8.</summary>
    public int ScaleFactor => 1 << (BlockOutChannels.Length - 1);
    /// <summary>Channels of the BatchNorm statistics (patch_h × patch_w × latent_channels = 128).</summary>
    public int PatchedChannels => PatchSize[0] * PatchSize[1] * LatentChannels;

    public static VaeConfig Load(string path) => Read(ConfigJson.Load(path));

    public static VaeConfig Parse(string json, string path = "vae/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    /// <summary>diffusers' AutoencoderKL constructor defaults (a one-block SD-style VAE), where they differ from AutoencoderKLFlux2's.</summary>
    private static VaeConfig AutoencoderKLDefaults => new()
    {
        Kind = VaeKind.AutoencoderKL,
        DownBlockTypes = ["DownEncoderBlock2D"],
        UpBlockTypes = ["UpDecoderBlock2D"],
        BlockOutChannels = [64],
        LayersPerBlock = 1,
        LatentChannels = 4,
        SampleSize = 32,
        ScalingFactor = 0.18215,
        ShiftFactor = null,
    };

    private static VaeConfig Read(ConfigJson j)
    {
        string cls = j.String("_class_name", nameof(VaeKind.AutoencoderKLFlux2));
        var kind = cls switch
        {
            nameof(VaeKind.AutoencoderKL) => VaeKind.AutoencoderKL,
            nameof(VaeKind.AutoencoderKLFlux2) => VaeKind.AutoencoderKLFlux2,
            _ => throw j.Error("_class_name", $"is \"{cls}\"; only AutoencoderKL and AutoencoderKLFlux2 are supported"),
        };
        bool flux2 = kind == VaeKind.AutoencoderKLFlux2;
        var d = flux2 ? new VaeConfig() : AutoencoderKLDefaults;
        const int C = ConfigJson.MaxChannels, Blocks = 8;
        var c = new VaeConfig
        {
            Kind = kind,
            InChannels = j.Positive("in_channels", d.InChannels, max: 64),
            OutChannels = j.Positive("out_channels", d.OutChannels, max: 64),
            DownBlockTypes = j.StringArray("down_block_types", d.DownBlockTypes, maxLength: Blocks),
            UpBlockTypes = j.StringArray("up_block_types", d.UpBlockTypes, maxLength: Blocks),
            BlockOutChannels = j.BoundedIntArray("block_out_channels", d.BlockOutChannels, 1, Blocks, 1, C)!,
            DecoderBlockOutChannels = flux2 ? j.BoundedIntArray("decoder_block_out_channels", null, 1, Blocks, 1, C) : null,
            LayersPerBlock = j.Positive("layers_per_block", d.LayersPerBlock, max: 64),
            ActFn = j.String("act_fn", d.ActFn),
            LatentChannels = j.Positive("latent_channels", d.LatentChannels, max: C),
            NormNumGroups = j.Positive("norm_num_groups", d.NormNumGroups, max: C),
            SampleSize = ReadSampleSize(j, d.SampleSize),
            ForceUpcast = j.Bool("force_upcast", d.ForceUpcast),
            UseQuantConv = j.Bool("use_quant_conv", d.UseQuantConv),
            UsePostQuantConv = j.Bool("use_post_quant_conv", d.UsePostQuantConv),
            MidBlockAddAttention = j.Bool("mid_block_add_attention", d.MidBlockAddAttention),
            ScalingFactor = flux2 ? d.ScalingFactor : j.Number("scaling_factor", d.ScalingFactor, 0, 1e6, minExclusive: true),
            ShiftFactor = flux2 ? null : j.DoubleOrNull("shift_factor"),
            BatchNormEps = flux2 ? j.Number("batch_norm_eps", d.BatchNormEps, 0, 1, minExclusive: true) : d.BatchNormEps,
            BatchNormMomentum = flux2 ? j.Number("batch_norm_momentum", d.BatchNormMomentum, 0, 1) : d.BatchNormMomentum,
            PatchSize = flux2 ? j.BoundedIntArray("patch_size", d.PatchSize, 2, 2, 1, 16)! : d.PatchSize,
        };
        if (c.DecoderBlockOutChannels is { } dec && (dec.Length != c.BlockOutChannels.Length || dec.Any(x => x < 1)))
            throw j.Error("decoder_block_out_channels", $"must have {c.BlockOutChannels.Length} positive entries like block_out_channels");
        if (c.DownBlockTypes.Length != c.BlockOutChannels.Length)
            throw j.Error("down_block_types", $"has {c.DownBlockTypes.Length} entries; expected one per block_out_channels entry ({c.BlockOutChannels.Length})");
        if (c.UpBlockTypes.Length != c.BlockOutChannels.Length)
            throw j.Error("up_block_types", $"has {c.UpBlockTypes.Length} entries; expected one per block_out_channels entry ({c.BlockOutChannels.Length})");
        int badDown = Array.FindIndex(c.DownBlockTypes, t => t != "DownEncoderBlock2D");
        if (badDown >= 0) throw j.Error("down_block_types", $"has \"{c.DownBlockTypes[badDown]}\"; only DownEncoderBlock2D is supported");
        int badUp = Array.FindIndex(c.UpBlockTypes, t => t != "UpDecoderBlock2D");
        if (badUp >= 0) throw j.Error("up_block_types", $"has \"{c.UpBlockTypes[badUp]}\"; only UpDecoderBlock2D is supported");
        if (c.ActFn != "silu") throw j.Error("act_fn", $"is \"{c.ActFn}\"; only \"silu\" is supported");
        foreach (var ch in c.BlockOutChannels.Concat(c.DecoderChannels))
            if (ch % c.NormNumGroups != 0)
                throw j.Error("norm_num_groups", $"is {c.NormNumGroups}; it must divide every block channel count (found {ch})");
        return c;
    }

    /// <summary>sample_size: an integer, or [height, width] as some exports write it (the first entry is kept).</summary>
    private static int ReadSampleSize(ConfigJson j, int fallback)
    {
        if (j.Raw("sample_size") is not { ValueKind: System.Text.Json.JsonValueKind.Array }) return j.Positive("sample_size", fallback, max: 1 << 20);
        return j.BoundedIntArray("sample_size", null, 1, 2, 1, 1 << 20)![0];
    }
}
