using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// A Qwen-Image snapshot in the Hugging Face layout (Qwen/Qwen-Image):
/// <code>
/// model_index.json                       QwenImagePipeline (or QwenImageImg2ImgPipeline)
/// transformer/config.json + diffusion_pytorch_model.safetensors (or .index.json + shards)
/// text_encoder/config.json + model.safetensors (or sharded; Qwen2.5-VL, of which only the language model is used)
/// vae/config.json + diffusion_pytorch_model.safetensors (AutoencoderKLQwenImage)
/// scheduler/scheduler_config.json        FlowMatchEulerDiscreteScheduler, dynamic shift, shift_terminal 0.02
/// tokenizer/tokenizer.json               optional: the built-in Qwen3 tokenizer is the same BPE data
/// </code>
/// Opening reads every config and checks it against the weights and the components against each other, before any compute.
/// </summary>
public sealed class QwenImageSnapshot : IDisposable
{
    public const string PipelineClass = "QwenImagePipeline";
    public static readonly string[] PipelineClasses = [PipelineClass, "QwenImageImg2ImgPipeline"];
    private const string What = "Qwen-Image snapshot";

    public static readonly IReadOnlyDictionary<string, string[]> ComponentClasses = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["transformer"] = ["QwenImageTransformer2DModel"],
        ["text_encoder"] = ["Qwen2_5_VLForConditionalGeneration"],
        ["tokenizer"] = ["Qwen2Tokenizer", "Qwen2TokenizerFast"],
        ["vae"] = ["AutoencoderKLQwenImage"],
        ["scheduler"] = ["FlowMatchEulerDiscreteScheduler"],
    };

    private QwenImageSnapshot(string dir) => Directory = dir;

    public string Directory { get; }
    public required ModelIndex Index { get; init; }
    public required QwenImageTransformerConfig TransformerConfig { get; init; }
    public required Qwen3Config TextEncoderConfig { get; init; }
    public required QwenImageVaeConfig VaeConfig { get; init; }
    public required SchedulerConfig SchedulerConfig { get; init; }
    public required WeightSource Transformer { get; init; }
    public required WeightSource TextEncoder { get; init; }
    public required WeightSource Vae { get; init; }
    public string? TokenizerFile { get; init; }

    public Qwen3Tokenizer LoadTokenizer() => TokenizerFile is null ? Qwen3Tokenizer.BuiltIn : Qwen3Tokenizer.FromFile(TokenizerFile);

    public string ConfigPath(string component) => Path.Combine(Directory, component, component == "scheduler" ? "scheduler_config.json" : "config.json");

    /// <exception cref="SnapshotException">A missing or bad part, or a contradiction between configs and weights (one line naming it).</exception>
    /// <exception cref="ModelConfigException">A config with a missing or invalid field (names file and field).</exception>
    public static QwenImageSnapshot Open(string dir)
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
        var tc = QwenImageTransformerConfig.Load(tCfg);
        var te = Qwen3Config.LoadQwen25VLText(teCfg);
        var vc = QwenImageVaeConfig.Load(vCfg);
        var sc = SchedulerConfig.Load(sCfg);
        string tok = Path.Combine(dir, "tokenizer", "tokenizer.json");
        WeightSource? transformer = null, text = null, vae = null;
        try
        {
            transformer = OpenWeights(dir, "transformer");
            text = OpenWeights(dir, "text_encoder");
            vae = OpenWeights(dir, "vae");
            var s = new QwenImageSnapshot(dir)
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
        if (!PipelineClasses.Contains(index.ClassName, StringComparer.Ordinal))
            throw new SnapshotException($"{indexPath}: field '_class_name' is \"{index.ClassName}\"; expected {string.Join(" or ", PipelineClasses)}");
        foreach (var (name, spec) in index.Components)
        {
            if (!ComponentClasses.TryGetValue(name, out var classes))
                throw new SnapshotException($"{indexPath}: field '{name}' is a component {index.ClassName} does not have; expected only {string.Join(", ", ComponentClasses.Keys)}");
            if (!classes.Contains(spec.ClassName, StringComparer.Ordinal))
                throw new SnapshotException($"{indexPath}: field '{name}' names class {spec.ClassName}; expected {string.Join(" or ", classes)}");
        }
    }

    /// <summary>
    /// The language model's loader: checkpoints saved by transformers ≥ 4.52 name it "model.language_model.*" where the
    /// original Qwen2.5-VL / Qwen-Image checkpoints say "model.*"; both load.
    /// </summary>
    public static WeightLoader TextEncoderLoader(WeightSource weights, Device device, QuantMode quant = QuantMode.None, bool populate = false) =>
        LanguageModelNames(weights, weights.Loader(device, quant, populate));

    /// <summary>Wraps a loader so that "model.*" names also find "model.language_model.*" tensors.</summary>
    public static WeightLoader LanguageModelNames(WeightSource weights, WeightLoader load) => (name, shape) =>
        !weights.Contains(name) && name.StartsWith("model.", StringComparison.Ordinal) && weights.Contains("model.language_model." + name[6..])
            ? load("model.language_model." + name[6..], shape)
            : load(name, shape);

    /// <summary>The text encoder as Qwen-Image uses it: every layer, then the final norm (hidden_states[-1]).</summary>
    public Qwen3TextEncoder CreateTextEncoder(WeightLoader load, QuantMode quant = QuantMode.None) =>
        new(TextEncoderConfig, load, [TextEncoderConfig.NumHiddenLayers], quant, finalNorm: true);

    private void Validate()
    {
        string tFile = ConfigPath("transformer"), teFile = ConfigPath("text_encoder"), vFile = ConfigPath("vae");
        var t = TransformerConfig;
        SnapshotValidator.Count(tFile, "num_layers", t.NumLayers, Transformer, "transformer_blocks.", "dual-stream blocks");
        if (TextEncoder.Contains("model.embed_tokens.weight")) SnapshotValidator.TextEncoder(TextEncoderConfig, TextEncoder, teFile);
        if (t.JointAttentionDim != TextEncoderConfig.HiddenSize)
            throw new SnapshotException($"{tFile}: field 'joint_attention_dim' is {t.JointAttentionDim} but {teFile} gives hidden_size {TextEncoderConfig.HiddenSize}: the text encoder does not belong to this transformer");
        if (t.OutChannels != VaeConfig.ZDim)
            throw new SnapshotException($"{tFile}: field 'out_channels' is {t.OutChannels} but {vFile} gives z_dim {VaeConfig.ZDim}: the VAE does not belong to this transformer");
        if (VaeConfig.SpatialScale != 8)
            throw new SnapshotException($"{vFile}: field 'dim_mult' has {VaeConfig.DimMult.Length} levels (scale {VaeConfig.SpatialScale}); Qwen-Image's packing needs 4 levels (8× per side)");
        using var cpu = new CpuDevice(1);
        SnapshotValidator.Dry(Transformer, tFile, cpu, load => new QwenImageTransformer(t, load));
        SnapshotValidator.Dry(TextEncoder, teFile, cpu, load => CreateTextEncoder(LanguageModelNames(TextEncoder, load)));
        SnapshotValidator.Dry(Vae, vFile, cpu, load => new QwenImageVae(VaeConfig, load, withEncoder: SnapshotValidator.HasEncoder(Vae)));
    }

    public void Dispose()
    {
        Transformer.Dispose();
        TextEncoder.Dispose();
        Vae.Dispose();
    }
}
