using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.ZImage;

/// <summary>
/// A Z-Image snapshot in the Hugging Face layout (Tongyi-MAI/Z-Image-Turbo):
/// <code>
/// model_index.json                       ZImagePipeline
/// transformer/config.json + diffusion_pytorch_model.safetensors (or .index.json + shards; FP32 in the real repo)
/// text_encoder/config.json + model.safetensors (or sharded; Qwen3-4B)
/// vae/config.json + diffusion_pytorch_model.safetensors (AutoencoderKL, 16 latent channels, no quant convs)
/// scheduler/scheduler_config.json        FlowMatchEulerDiscreteScheduler, static shift 3
/// tokenizer/tokenizer.json               optional: the built-in Qwen3 tokenizer is the same file
/// </code>
/// Opening reads every config and checks it against the weights and the components against each other, before any compute.
/// </summary>
public sealed class ZImageSnapshot : IDisposable
{
    public const string PipelineClass = "ZImagePipeline";
    private const string What = "Z-Image snapshot";

    public static readonly IReadOnlyDictionary<string, string[]> ComponentClasses = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["transformer"] = ["ZImageTransformer2DModel"],
        ["text_encoder"] = ["Qwen3Model", "Qwen3ForCausalLM"],
        ["tokenizer"] = ["Qwen2Tokenizer", "Qwen2TokenizerFast"],
        ["vae"] = ["AutoencoderKL"],
        ["scheduler"] = ["FlowMatchEulerDiscreteScheduler"],
    };

    private ZImageSnapshot(string dir) => Directory = dir;

    public string Directory { get; }
    public required ModelIndex Index { get; init; }
    public required ZImageTransformerConfig TransformerConfig { get; init; }
    public required Qwen3Config TextEncoderConfig { get; init; }
    public required VaeConfig VaeConfig { get; init; }
    public required SchedulerConfig SchedulerConfig { get; init; }
    public required WeightSource Transformer { get; init; }
    public required WeightSource TextEncoder { get; init; }
    public required WeightSource Vae { get; init; }
    public string? TokenizerFile { get; init; }

    public Qwen3Tokenizer LoadTokenizer() => TokenizerFile is null ? Qwen3Tokenizer.BuiltIn : Qwen3Tokenizer.FromFile(TokenizerFile);

    /// <summary>Z-Image uses hidden_states[−2]: the output after L − 1 decoder layers (35 of 36 in the real encoder).</summary>
    public int TextLayer => TextEncoderConfig.NumHiddenLayers - 1;

    public string ConfigPath(string component) => Path.Combine(Directory, component, component == "scheduler" ? "scheduler_config.json" : "config.json");

    /// <exception cref="SnapshotException">A missing or bad part, or a contradiction between configs and weights (one line naming it).</exception>
    /// <exception cref="ModelConfigException">A config with a missing or invalid field (names file and field).</exception>
    public static ZImageSnapshot Open(string dir)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dir);
        if (!System.IO.Directory.Exists(dir)) throw new SnapshotException($"{dir}: model directory not found");
        string Need(string rel)
        {
            string p = Path.Combine(dir, rel);
            if (!File.Exists(p) && new FileInfo(p).LinkTarget is null) throw new SnapshotException($"{dir}: not a {What}: missing {rel}");
            if (RegularFile.Problem(p, out _) is { } problem) throw new SnapshotException($"{p}: {problem}");
            return p;
        }
        string indexPath = Need("model_index.json");
        string tCfg = Need("transformer/config.json"), teCfg = Need("text_encoder/config.json"), vCfg = Need("vae/config.json"), sCfg = Need("scheduler/scheduler_config.json");
        var index = ModelIndex.Load(indexPath);
        ValidateIndex(indexPath, index);
        var tc = ZImageTransformerConfig.Load(tCfg);
        var te = Qwen3Config.Load(teCfg);
        var vc = VaeConfig.Load(vCfg);
        var sc = SchedulerConfig.Load(sCfg);
        string tok = Path.Combine(dir, "tokenizer", "tokenizer.json");
        WeightSource? transformer = null, text = null, vae = null;
        try
        {
            transformer = OpenWeights(dir, "transformer");
            text = OpenWeights(dir, "text_encoder");
            vae = OpenWeights(dir, "vae");
            var s = new ZImageSnapshot(dir)
            {
                Index = index, TransformerConfig = tc, TextEncoderConfig = te, VaeConfig = vc, SchedulerConfig = sc,
                Transformer = transformer, TextEncoder = text, Vae = vae,
                TokenizerFile = File.Exists(tok) ? tok : null,
            };
            s.Validate();
            return s;
        }
        catch
        {
            transformer?.Dispose();
            text?.Dispose();
            vae?.Dispose();
            throw;
        }
    }

    private static string WeightsFile(string component) => component == "text_encoder" ? "model.safetensors" : "diffusion_pytorch_model.safetensors";

    private static WeightSource OpenWeights(string dir, string component)
    {
        string baseName = WeightsFile(component);
        string single = Path.Combine(dir, component, baseName);
        bool Present(string p) => File.Exists(p) || new FileInfo(p).LinkTarget is not null;
        if (!Present(single) && !Present(single + ".index.json"))
            throw new SnapshotException($"{dir}: not a {What}: missing {component}/{baseName} (or {baseName}.index.json)");
        return WeightSource.Open(Path.Combine(dir, component), baseName, component + "/" + baseName);
    }

    /// <summary>A fresh mapping of one component's weights; disposing it drops its pages (one large component at a time).</summary>
    public WeightSource OpenWeights(string component) => component is "transformer" or "text_encoder" or "vae"
        ? OpenWeights(Directory, component)
        : throw new ArgumentException($"unknown snapshot component '{component}'; expected transformer, text_encoder or vae");

    public static void ValidateIndex(string indexPath, ModelIndex index)
    {
        if (index.ClassName != PipelineClass)
            throw new SnapshotException($"{indexPath}: field '_class_name' is \"{index.ClassName}\"; expected {PipelineClass}");
        foreach (var (name, spec) in index.Components)
        {
            if (!ComponentClasses.TryGetValue(name, out var classes))
                throw new SnapshotException($"{indexPath}: field '{name}' is a component {PipelineClass} does not have; expected only {string.Join(", ", ComponentClasses.Keys)}");
            if (!classes.Contains(spec.ClassName, StringComparer.Ordinal))
                throw new SnapshotException($"{indexPath}: field '{name}' names class {spec.ClassName}; expected {string.Join(" or ", classes)}");
        }
    }

    /// <summary>The text encoder's loader: Qwen3Model checkpoints lack the "model." prefix the causal-LM ones carry.</summary>
    public static WeightLoader TextEncoderLoader(WeightSource weights, Device device, QuantMode quant = QuantMode.None, bool populate = false) =>
        weights.Loader(device, quant, populate).WithOptionalPrefix(weights, "model.");

    private void Validate()
    {
        string tFile = ConfigPath("transformer"), teFile = ConfigPath("text_encoder"), vFile = ConfigPath("vae");
        var t = TransformerConfig;
        var bare = TextEncoder.Contains("embed_tokens.weight") && !TextEncoder.Contains("model.embed_tokens.weight");
        if (!bare) SnapshotValidator.TextEncoder(TextEncoderConfig, TextEncoder, teFile);
        SnapshotValidator.Vae(VaeConfig, Vae, vFile);
        SnapshotValidator.Count(tFile, "n_layers", t.NumLayers, Transformer, "layers.", "main blocks");
        SnapshotValidator.Count(tFile, "n_refiner_layers", t.NumRefinerLayers, Transformer, "noise_refiner.", "noise refiner blocks");
        SnapshotValidator.Count(tFile, "n_refiner_layers", t.NumRefinerLayers, Transformer, "context_refiner.", "context refiner blocks");
        if (TextEncoderConfig.NumHiddenLayers < 2)
            throw new SnapshotException($"{teFile}: field 'num_hidden_layers' is {TextEncoderConfig.NumHiddenLayers}; Z-Image uses hidden_states[-2], so it needs at least 2");
        if (t.InChannels != VaeConfig.LatentChannels)
            throw new SnapshotException($"{tFile}: field 'in_channels' is {t.InChannels} but {vFile} gives latent_channels {VaeConfig.LatentChannels}: the VAE does not belong to this transformer");
        if (t.CapFeatDim != TextEncoderConfig.HiddenSize)
            throw new SnapshotException($"{tFile}: field 'cap_feat_dim' is {t.CapFeatDim} but {teFile} gives hidden_size {TextEncoderConfig.HiddenSize}: the text encoder does not belong to this transformer");
        if (!(VaeConfig.ScalingFactor is > 0 and < double.PositiveInfinity) || !double.IsFinite(VaeConfig.ShiftFactor ?? 0))
            throw new SnapshotException($"{vFile}: fields 'scaling_factor' / 'shift_factor' must be finite, with a positive scale");
        if (!(SchedulerConfig.Shift > 0 && double.IsFinite(SchedulerConfig.Shift)))
            throw new SnapshotException($"{ConfigPath("scheduler")}: field 'shift' is {SchedulerConfig.Shift}; expected a finite positive number");
        using var cpu = new CpuDevice(1);
        SnapshotValidator.Dry(Transformer, tFile, cpu, load => new ZImageTransformer(t, load, cpu));
        SnapshotValidator.Dry(TextEncoder, teFile, cpu, load => new Qwen3TextEncoder(TextEncoderConfig, load.WithOptionalPrefix(TextEncoder, "model."), [TextLayer]));
        SnapshotValidator.Dry(Vae, vFile, cpu, load => new AutoencoderKL(VaeConfig, load, withEncoder: SnapshotValidator.HasEncoder(Vae)));
    }

    public void Dispose()
    {
        Transformer.Dispose();
        TextEncoder.Dispose();
        Vae.Dispose();
    }
}
