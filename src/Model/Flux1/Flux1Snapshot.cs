using PureFlux.Model.Clip;
using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Model.T5;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Flux1;

/// <summary>Which FLUX.1 model a snapshot is: what the pipeline does with it.</summary>
public enum Flux1Kind
{
    /// <summary>FLUX.1 [dev]: guidance embedding, dynamic shift, 28 steps, T5 length 512.</summary>
    Dev,
    /// <summary>FLUX.1 [schnell]: no guidance embedding, static shift 1, 4 steps, T5 length 256.</summary>
    Schnell,
    /// <summary>FLUX.1 Kontext [dev]: dev plus reference-image tokens (FluxKontextPipeline).</summary>
    Kontext,
}

/// <summary>
/// A FLUX.1 snapshot in the Hugging Face layout (black-forest-labs/FLUX.1-dev, -schnell, -Kontext-dev):
/// <code>
/// model_index.json          FluxPipeline | FluxKontextPipeline | FluxImg2ImgPipeline
/// transformer/              config.json + diffusion_pytorch_model.safetensors (or .index.json + shards)
/// text_encoder/             CLIPTextModel: config.json + model.safetensors
/// text_encoder_2/           T5EncoderModel: config.json + model.safetensors (or .index.json + shards)
/// tokenizer/, tokenizer_2/  optional: the built-in CLIP-L / T5-XXL tokenizers are the real repos' files
/// vae/                      AutoencoderKL (16 latent channels, no quant convs)
/// scheduler/                FlowMatchEulerDiscreteScheduler
/// </code>
/// Opening reads every config and checks it against the weights and the components against each other, before any
/// compute. Files may be links (the Hugging Face cache, or schnell / Kontext sharing dev's encoders).
/// </summary>
public sealed class Flux1Snapshot : IDisposable
{
    public const string PipelineClass = "FluxPipeline", KontextPipelineClass = "FluxKontextPipeline", Img2ImgPipelineClass = "FluxImg2ImgPipeline";
    public static readonly IReadOnlyList<string> PipelineClasses = [PipelineClass, KontextPipelineClass, Img2ImgPipelineClass];
    private const string What = "FLUX.1 snapshot";

    public static readonly IReadOnlyDictionary<string, string[]> ComponentClasses = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["transformer"] = ["FluxTransformer2DModel"],
        ["text_encoder"] = ["CLIPTextModel"],
        ["text_encoder_2"] = ["T5EncoderModel"],
        ["tokenizer"] = ["CLIPTokenizer", "CLIPTokenizerFast"],
        ["tokenizer_2"] = ["T5TokenizerFast", "T5Tokenizer"],
        ["vae"] = ["AutoencoderKL"],
        ["scheduler"] = ["FlowMatchEulerDiscreteScheduler"],
        ["image_encoder"] = [],
        ["feature_extractor"] = [],
    };

    private Flux1Snapshot(string dir) => Directory = dir;

    public string Directory { get; }
    public required ModelIndex Index { get; init; }
    public required Flux1Kind Kind { get; init; }
    public required Flux1TransformerConfig TransformerConfig { get; init; }
    public required ClipTextConfig ClipConfig { get; init; }
    public required T5Config T5Config { get; init; }
    public required VaeConfig VaeConfig { get; init; }
    public required SchedulerConfig SchedulerConfig { get; init; }
    public required WeightSource Transformer { get; init; }
    public required WeightSource Clip { get; init; }
    public required WeightSource T5 { get; init; }
    public required WeightSource Vae { get; init; }

    /// <summary>T5 tokens per prompt: 256 for schnell, 512 for dev and Kontext (the BFL / model-card convention).</summary>
    public int T5Length => Kind == Flux1Kind.Schnell ? T5Tokenizer.FluxSchnellMaxLength : T5Tokenizer.FluxDevMaxLength;

    /// <summary>The CLIP tokenizer: the snapshot's tokenizer/ when it has vocab.json and merges.txt, else the built-in CLIP-L one.</summary>
    public ClipTokenizer LoadClipTokenizer()
    {
        string dir = Path.Combine(Directory, "tokenizer");
        return File.Exists(Path.Combine(dir, "vocab.json")) && File.Exists(Path.Combine(dir, "merges.txt")) ? ClipTokenizer.FromDirectory(dir) : ClipTokenizer.BuiltIn;
    }

    /// <summary>The T5 tokenizer: tokenizer_2/tokenizer.json when present, else the built-in T5-XXL one.</summary>
    public T5Tokenizer LoadT5Tokenizer()
    {
        string file = Path.Combine(Directory, "tokenizer_2", "tokenizer.json");
        return File.Exists(file) ? T5Tokenizer.FromFile(file) : T5Tokenizer.BuiltIn;
    }

    public string ConfigPath(string component) => Path.Combine(Directory, component, component == "scheduler" ? "scheduler_config.json" : "config.json");

    /// <exception cref="SnapshotException">A missing or bad part, or a contradiction between configs and weights (one line naming it).</exception>
    /// <exception cref="ModelConfigException">A config with a missing or invalid field (names file and field).</exception>
    public static Flux1Snapshot Open(string dir)
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
        var index = ModelIndex.Load(indexPath);
        ValidateIndex(indexPath, index);
        var tc = Flux1TransformerConfig.Load(Need("transformer/config.json"));
        var clip = ClipTextConfig.Load(Need("text_encoder/config.json"));
        var t5 = T5Config.Load(Need("text_encoder_2/config.json"));
        var vc = VaeConfig.Load(Need("vae/config.json"));
        var sc = SchedulerConfig.Load(Need("scheduler/scheduler_config.json"));
        var kind = index.ClassName == KontextPipelineClass ? Flux1Kind.Kontext : tc.GuidanceEmbeds ? Flux1Kind.Dev : Flux1Kind.Schnell;
        WeightSource? transformer = null, clipW = null, t5W = null, vae = null;
        try
        {
            transformer = OpenWeights(dir, "transformer");
            clipW = OpenWeights(dir, "text_encoder");
            t5W = OpenWeights(dir, "text_encoder_2");
            vae = OpenWeights(dir, "vae");
            var s = new Flux1Snapshot(dir)
            {
                Index = index, Kind = kind, TransformerConfig = tc, ClipConfig = clip, T5Config = t5, VaeConfig = vc, SchedulerConfig = sc,
                Transformer = transformer, Clip = clipW, T5 = t5W, Vae = vae,
            };
            s.Validate();
            return s;
        }
        catch
        {
            transformer?.Dispose();
            clipW?.Dispose();
            t5W?.Dispose();
            vae?.Dispose();
            throw;
        }
    }

    private static string WeightsFile(string component) => component is "text_encoder" or "text_encoder_2" ? "model.safetensors" : "diffusion_pytorch_model.safetensors";

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
    public WeightSource OpenWeights(string component) => component is "transformer" or "text_encoder" or "text_encoder_2" or "vae"
        ? OpenWeights(Directory, component)
        : throw new ArgumentException($"unknown snapshot component '{component}'; expected transformer, text_encoder, text_encoder_2 or vae");

    public static void ValidateIndex(string indexPath, ModelIndex index)
    {
        if (!PipelineClasses.Contains(index.ClassName))
            throw new SnapshotException($"{indexPath}: field '_class_name' is \"{index.ClassName}\"; expected {string.Join(" or ", PipelineClasses)}");
        foreach (var (name, spec) in index.Components)
        {
            if (!ComponentClasses.TryGetValue(name, out var classes))
                throw new SnapshotException($"{indexPath}: field '{name}' is a component {index.ClassName} does not have; expected only {string.Join(", ", ComponentClasses.Keys)}");
            // image_encoder / feature_extractor are IP-adapter slots, null in the real repos; a class there is unsupported.
            if (!classes.Contains(spec.ClassName, StringComparer.Ordinal))
                throw new SnapshotException(classes.Length == 0
                    ? $"{indexPath}: field '{name}' names class {spec.ClassName}; IP-adapter components are not supported (expected null)"
                    : $"{indexPath}: field '{name}' names class {spec.ClassName}; expected {string.Join(" or ", classes)}");
        }
    }

    /// <summary>T5's token table: "shared.weight", or the tied "encoder.embed_tokens.weight" when a checkpoint kept only that.</summary>
    public string T5EmbeddingWeight => T5.Contains(T5Encoder.EmbeddingWeight) ? T5Encoder.EmbeddingWeight : "encoder.embed_tokens.weight";

    private void Validate()
    {
        string tFile = ConfigPath("transformer"), cFile = ConfigPath("text_encoder"), t5File = ConfigPath("text_encoder_2"), vFile = ConfigPath("vae"), sFile = ConfigPath("scheduler");
        var t = TransformerConfig;
        SnapshotValidator.Count(tFile, "num_layers", t.NumLayers, Transformer, "transformer_blocks.", "double-stream blocks");
        SnapshotValidator.Count(tFile, "num_single_layers", t.NumSingleLayers, Transformer, "single_transformer_blocks.", "single-stream blocks");
        bool hasGuidance = Transformer.Names.Any(n => n.StartsWith("time_text_embed.guidance_embedder.", StringComparison.Ordinal));
        if (hasGuidance != t.GuidanceEmbeds)
            throw new SnapshotException($"{tFile}: field 'guidance_embeds' is {(t.GuidanceEmbeds ? "true" : "false")} but {Transformer.Name} {(hasGuidance ? "holds" : "has no")} time_text_embed.guidance_embedder.* tensors: the config contradicts the weights");
        if (Kind == Flux1Kind.Kontext && !t.GuidanceEmbeds)
            throw new SnapshotException($"{tFile}: field 'guidance_embeds' is false, but {KontextPipelineClass} is FLUX.1 Kontext [dev], a guidance-distilled model (true)");
        SnapshotValidator.Count(cFile, "num_hidden_layers", ClipConfig.NumHiddenLayers, Clip, "text_model.encoder.layers.", "CLIP layers");
        SnapshotValidator.Count(t5File, "num_layers", T5Config.NumLayers, T5, "encoder.block.", "T5 blocks");
        SnapshotValidator.Vae(VaeConfig, Vae, vFile);
        if (VaeConfig.Kind != VaeKind.AutoencoderKL)
            throw new SnapshotException($"{vFile}: '_class_name' is {VaeConfig.Kind}; FLUX.1 uses AutoencoderKL");
        if (t.InChannels != 4 * VaeConfig.LatentChannels)
            throw new SnapshotException($"{tFile}: field 'in_channels' is {t.InChannels} but {vFile} gives latent_channels {VaeConfig.LatentChannels} (expected 4 × that): the VAE does not belong to this transformer");
        if (t.JointAttentionDim != T5Config.DModel)
            throw new SnapshotException($"{tFile}: field 'joint_attention_dim' is {t.JointAttentionDim} but {t5File} gives d_model {T5Config.DModel}: the T5 encoder does not belong to this transformer");
        if (t.PooledProjectionDim != ClipConfig.HiddenSize)
            throw new SnapshotException($"{tFile}: field 'pooled_projection_dim' is {t.PooledProjectionDim} but {cFile} gives hidden_size {ClipConfig.HiddenSize}: the CLIP encoder does not belong to this transformer");
        if (!(VaeConfig.ScalingFactor is > 0 and < double.PositiveInfinity) || !double.IsFinite(VaeConfig.ShiftFactor ?? 0))
            throw new SnapshotException($"{vFile}: fields 'scaling_factor' / 'shift_factor' must be finite, with a positive scale");
        if (!(SchedulerConfig.Shift > 0 && double.IsFinite(SchedulerConfig.Shift)))
            throw new SnapshotException($"{sFile}: field 'shift' is {SchedulerConfig.Shift}; expected a finite positive number");
        using var cpu = new CpuDevice(1);
        SnapshotValidator.Dry(Transformer, tFile, cpu, load => new Flux1Transformer(t, load));
        SnapshotValidator.Dry(Clip, cFile, cpu, load => new ClipTextEncoder(ClipConfig, load));
        SnapshotValidator.Dry(T5, t5File, cpu, load => new T5Encoder(T5Config, load, embeddingWeight: T5EmbeddingWeight));
        SnapshotValidator.Dry(Vae, vFile, cpu, load => new AutoencoderKL(VaeConfig, load, withEncoder: SnapshotValidator.HasEncoder(Vae)));
    }

    public void Dispose()
    {
        Transformer.Dispose();
        Clip.Dispose();
        T5.Dispose();
        Vae.Dispose();
    }
}
