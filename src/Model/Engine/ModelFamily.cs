using PureFlux.Model.Config;

namespace PureFlux.Model.Engine;

/// <summary>Options every family honours when it loads.</summary>
public sealed record ModelOptions
{
    public Layers.QuantMode Quant { get; init; } = Layers.QuantMode.None;
    /// <summary>Encoded prompts on disk (null: memory only).</summary>
    public Pipeline.PromptCache? PromptCache { get; init; }
    /// <summary>Text-encoder layers whose hidden states condition the model (diffusers' text_encoder_out_layers); null = the family's default.</summary>
    public int[]? TextLayers { get; init; }
    /// <summary>Overrides the snapshot's guidance distillation (klein's is_distilled), as diffusers' pipeline argument does; null = as stored.</summary>
    public bool? GuidanceDistilled { get; init; }
    /// <summary>Hold FP32 transformer matrices as BF16 (converted as they load); null = the family decides (Z-Image: when FP32 would not fit).</summary>
    public bool? WeightsBf16 { get; init; }
    /// <summary>RoPE tables built once per job and size (the engine's behaviour) or on every model call (the experiment switch <c>rope-cache=off</c>).</summary>
    public bool RopeCache { get; init; } = true;
    /// <summary>The experiment switch <c>sync-per-block</c>: the transformer waits for the device after every block (a host
    /// synchronisation per block) instead of only where the step reads results back. ILGPU devices; a no-op on the cpu device.</summary>
    public bool SyncPerBlock { get; init; }
    /// <summary>The experiment switch <c>fused-qkv</c>: a block's Q, K and V projections loaded as one stacked matrix and
    /// computed by one GEMM (FLUX.2 klein's double blocks; its single blocks' weights come fused already).</summary>
    public bool FusedQkv { get; init; }
    /// <summary>The experiment switch <c>tome RATIO</c>: token merging of that share of the generated image tokens in the
    /// blocks the family chooses (FLUX.2 klein: the single-stream blocks); null = off. 0 runs the merge path with nothing merged.</summary>
    public double? TokenMergeRatio { get; init; }
    /// <summary>The experiment switch <c>populate-weights</c>: weights used in place on the cpu device are mapped into the page
    /// tables as they load (one madvise per tensor) instead of faulting in during the first pass (on, the engine's behaviour).</summary>
    public bool PopulateWeights { get; init; } = true;
    /// <summary>FLUX.1 Kontext's max_area (pixels): the output size is refit to this area at the requested aspect ratio
    /// (diffusers' <c>max_area</c>, default 1024²); null = the pipeline's default. Other families refuse it.</summary>
    public long? MaxArea { get; init; }
    /// <summary>FLUX.1 Kontext's <c>_auto_resize</c>: false keeps the reference image at its own size (rounded down to 16)
    /// instead of the preferred ~1 MP resolution of nearest aspect ratio; null = the pipeline's default (true). Other families refuse it.</summary>
    public bool? ReferenceAutoResize { get; init; }

    /// <summary>One line for a family that has no Kontext-style refit, when <see cref="MaxArea"/> or <see cref="ReferenceAutoResize"/> is set.</summary>
    public void RefuseKontextOptions(string family)
    {
        if (MaxArea is not null) throw new ArgumentException($"--max-area applies to FLUX.1 Kontext snapshots (its output-size refit); {family} generates at the requested size");
        if (ReferenceAutoResize is not null) throw new ArgumentException($"--keep-ref-size applies to FLUX.1 Kontext snapshots (its reference resize); {family} has no such step");
    }
}

/// <summary>
/// A model family: a folder under src/Model that recognises its snapshots by model_index.json's <c>_class_name</c>
/// and opens them as an <see cref="IDiffusionModel"/>. Register it in <see cref="ModelFamilies.All"/>.
/// </summary>
public interface IModelFamily
{
    /// <summary>Short name ("flux2-klein").</summary>
    string Name { get; }
    /// <summary>The diffusers pipeline classes it runs (model_index.json <c>_class_name</c>).</summary>
    IReadOnlyList<string> PipelineClasses { get; }
    /// <summary>Opens a snapshot directory whose index names one of <see cref="PipelineClasses"/>.</summary>
    IDiffusionModel Open(string directory, Device device, ModelOptions options);
}

/// <summary>The registry of families and snapshot detection.</summary>
public static class ModelFamilies
{
    public static IReadOnlyList<IModelFamily> All { get; } = [new Flux2.Flux2KleinFamily(), new ZImage.ZImageFamily(), new QwenImage.QwenImageFamily(), new Flux1.Flux1Family()];

    public static IEnumerable<string> SupportedPipelines => All.SelectMany(f => f.PipelineClasses);

    /// <summary>The family for a snapshot directory, from model_index.json's _class_name; one-line errors otherwise.</summary>
    public static IModelFamily Detect(string directory)
    {
        string index = Path.Combine(directory, "model_index.json");
        if (!Directory.Exists(directory)) throw new Snapshot.SnapshotException($"{directory}: model directory not found");
        if (!RegularFile.Present(index)) throw new Snapshot.SnapshotException($"{directory}: not a diffusers snapshot: missing model_index.json");
        // A Hugging Face cache snapshot's files are links into ../../blobs: check what the link finally names.
        if (RegularFile.Problem(index, out _) is { } problem) throw new Snapshot.SnapshotException($"{index}: {problem}");
        return ForClass(ModelIndex.Load(index).ClassName, index);
    }

    public static IModelFamily ForClass(string className, string where = "model_index.json") =>
        All.FirstOrDefault(f => f.PipelineClasses.Contains(className, StringComparer.Ordinal))
        ?? throw new Snapshot.SnapshotException($"{where}: pipeline class '{className}' is not supported; supported: {string.Join(", ", SupportedPipelines)}");

    /// <summary>Detects the family and opens the snapshot.</summary>
    public static IDiffusionModel Open(string directory, Device device, ModelOptions? options = null) =>
        Detect(directory).Open(directory, device, options ?? new ModelOptions());
}
