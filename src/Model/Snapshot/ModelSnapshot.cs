using PureFlux.Model.Config;
using PureFlux.Model.Text;

namespace PureFlux.Model.Snapshot;

/// <summary>A model directory that is not a usable FLUX.2 [klein] snapshot; the message names the missing or bad part.</summary>
public sealed class SnapshotException(string message) : Exception(message);

/// <summary>
/// A FLUX.2 [klein] snapshot in the Hugging Face layout:
/// <code>
/// model_index.json
/// transformer/config.json, diffusion_pytorch_model.safetensors (or .safetensors.index.json + shards)
/// text_encoder/config.json, model.safetensors (or model.safetensors.index.json + shards)
/// vae/config.json, diffusion_pytorch_model.safetensors (or sharded)
/// scheduler/scheduler_config.json
/// tokenizer/tokenizer.json (optional: the built-in Qwen3 tokenizer is the same file)
/// </code>
/// Configs are read and validated on open; weights are memory-mapped (nothing is loaded until asked).
/// </summary>
public sealed class ModelSnapshot : IDisposable
{
    public const string TransformerWeights = "diffusion_pytorch_model.safetensors";
    public const string TextEncoderWeights = "model.safetensors";
    public const string VaeWeights = "diffusion_pytorch_model.safetensors";

    private ModelSnapshot(string dir) => Directory = dir;

    public string Directory { get; }
    public required ModelIndex Index { get; init; }
    public required Flux2TransformerConfig TransformerConfig { get; init; }
    public required Qwen3Config TextEncoderConfig { get; init; }
    public required VaeConfig VaeConfig { get; init; }
    public required SchedulerConfig SchedulerConfig { get; init; }
    public required WeightSource Transformer { get; init; }
    public required WeightSource TextEncoder { get; init; }
    public required WeightSource Vae { get; init; }
    /// <summary>tokenizer/tokenizer.json when the snapshot has one, else null.</summary>
    public string? TokenizerFile { get; init; }

    /// <summary>The snapshot's tokenizer, or the built-in copy of the same Qwen3 tokenizer when it has none.</summary>
    public Qwen3Tokenizer LoadTokenizer() => TokenizerFile is null ? Qwen3Tokenizer.BuiltIn : Qwen3Tokenizer.FromFile(TokenizerFile);

    /// <summary>Validates the layout, reads every config and maps the weights.</summary>
    /// <exception cref="SnapshotException">A missing or bad part (one line naming it).</exception>
    /// <exception cref="ModelConfigException">A config with a missing or invalid field (names file and field).</exception>
    public static ModelSnapshot Open(string dir)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dir);
        if (!System.IO.Directory.Exists(dir))
            throw new SnapshotException($"{dir}: model directory not found");

        string Need(string rel)
        {
            string p = Path.Combine(dir, rel);
            if (!RegularFile.Present(p)) throw new SnapshotException($"{dir}: not a FLUX.2 [klein] snapshot: missing {rel.Replace('\\', '/')}");
            // A Hugging Face cache snapshot holds links to ../../blobs/<hash>: what counts is the file they finally name.
            if (RegularFile.Problem(p, out _) is { } problem) throw new SnapshotException($"{p}: {problem}");
            return p;
        }

        // Check the whole layout first so the message names the first missing part, not a parse error elsewhere.
        string indexPath = Need("model_index.json");
        string tCfg = Need("transformer/config.json");
        string teCfg = Need("text_encoder/config.json");
        string vCfg = Need("vae/config.json");
        string sCfg = Need("scheduler/scheduler_config.json");
        NeedWeights(dir, "transformer", TransformerWeights);
        NeedWeights(dir, "text_encoder", TextEncoderWeights);
        NeedWeights(dir, "vae", VaeWeights);

        var index = ModelIndex.Load(indexPath);
        SnapshotValidator.ValidateIndex(indexPath, index);
        var transformerConfig = Flux2TransformerConfig.Load(tCfg);
        var textConfig = Qwen3Config.Load(teCfg);
        var vaeConfig = VaeConfig.Load(vCfg);
        var schedulerConfig = SchedulerConfig.Load(sCfg);

        string tok = Path.Combine(dir, "tokenizer", "tokenizer.json");
        WeightSource? transformer = null, text = null, vae = null;
        try
        {
            transformer = WeightSource.Open(Path.Combine(dir, "transformer"), TransformerWeights, "transformer/" + TransformerWeights);
            text = WeightSource.Open(Path.Combine(dir, "text_encoder"), TextEncoderWeights, "text_encoder/" + TextEncoderWeights);
            vae = WeightSource.Open(Path.Combine(dir, "vae"), VaeWeights, "vae/" + VaeWeights);
            var snapshot = new ModelSnapshot(dir)
            {
                Index = index,
                TransformerConfig = transformerConfig,
                TextEncoderConfig = textConfig,
                VaeConfig = vaeConfig,
                SchedulerConfig = schedulerConfig,
                Transformer = transformer,
                TextEncoder = text,
                Vae = vae,
                TokenizerFile = File.Exists(tok) ? tok : null,
            };
            // Every config against its weights and the components against each other, before anything is computed.
            SnapshotValidator.Validate(snapshot);
            return snapshot;
        }
        catch
        {
            transformer?.Dispose();
            text?.Dispose();
            vae?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A fresh, independent mapping of one component's weights ("transformer", "text_encoder" or "vae").
    /// Disposing it, and the tensors taken from it, unmaps the files and so drops their pages from this
    /// process's resident set — the pipeline uses this to hold one large component in memory at a time.
    /// </summary>
    public WeightSource OpenWeights(string component)
    {
        string baseName = component switch
        {
            "transformer" => TransformerWeights,
            "text_encoder" => TextEncoderWeights,
            "vae" => VaeWeights,
            _ => throw new ArgumentException($"unknown snapshot component '{component}'; expected transformer, text_encoder or vae"),
        };
        return WeightSource.Open(Path.Combine(Directory, component), baseName, component + "/" + baseName);
    }

    private static void NeedWeights(string dir, string component, string baseName)
    {
        string single = Path.Combine(dir, component, baseName);
        if (!RegularFile.Present(single) && !RegularFile.Present(single + ".index.json"))
            throw new SnapshotException($"{dir}: not a FLUX.2 [klein] snapshot: missing {component}/{baseName} (or {baseName}.index.json)");
    }

    public void Dispose()
    {
        Transformer.Dispose();
        TextEncoder.Dispose();
        Vae.Dispose();
    }
}
