using PureFlux.Model.Image;
using PureFlux.Model.Scheduler;

namespace PureFlux.Model.Engine;

/// <summary>
/// Where a generation's latents live: <see cref="Tokens"/> packed tokens of <see cref="Channels"/> channels on a
/// <see cref="Rows"/> × <see cref="Cols"/> grid, for an image of <see cref="Width"/> × <see cref="Height"/> pixels.
/// </summary>
public sealed record LatentLayout(int Width, int Height, int Rows, int Cols, int Channels)
{
    public int Tokens => Rows * Cols;
}

/// <summary>
/// A family's defaults, taken from the snapshot (e.g. klein base vs distilled), and its guidance convention:
/// <see cref="CfgFormula"/> UncondPlus (u + g(c − u), on when g &gt; 1) or CondPlus (Z-Image: c + g(c − u), on when g &gt; 0).
/// <para><see cref="TrueCfg"/>: the CFG scale comes from <see cref="GenerationJob.TrueCfgScale"/> (diffusers' true_cfg_scale:
/// on when &gt; 1 and a negative prompt is given), and <see cref="GenerationJob.Guidance"/> is instead the value of the
/// model's guidance <em>input</em> (FLUX.1 dev / Kontext's guidance embedding), defaulting to <see cref="EmbeddedGuidance"/>;
/// null EmbeddedGuidance = the model has no such input (FLUX.1 schnell: --guidance is ignored with a warning).</para>
/// </summary>
public sealed record ModelDefaults(int Steps, float Guidance, SamplerKind Sampler, bool GuidanceDistilled,
    PureFlux.Model.Guidance.GuidanceFormula CfgFormula = PureFlux.Model.Guidance.GuidanceFormula.UncondPlus,
    bool TrueCfg = false, float? EmbeddedGuidance = null)
{
    /// <summary>Whether scale <paramref name="g"/> turns classifier-free guidance on under this family's formula.</summary>
    public bool CfgOn(float g) => CfgFormula == PureFlux.Model.Guidance.GuidanceFormula.CondPlus ? g > 0 : g > 1;

    /// <summary>The guided prediction is renormalised per token to the conditional one's norm (Qwen-Image's true CFG).</summary>
    public bool PerTokenNormRescale { get; init; }

    /// <summary>Guidance runs only when a negative prompt is given (Qwen-Image: true_cfg_scale needs negative_prompt);
    /// otherwise the job runs unguided instead of using "" as the negative prompt.</summary>
    public bool CfgNeedsNegativePrompt { get; init; }
}

/// <summary>
/// Conditioning images encoded once per job (FLUX.2: reference tokens appended after the noisy tokens). Opaque to
/// the engine; the family's denoiser reads it.
/// </summary>
public interface IImageConditioning : IDisposable
{
    /// <summary>Output size the images suggest when the user gave none (klein: the first reference's size), or null.</summary>
    (int Width, int Height)? SuggestedSize { get; }
}

/// <summary>
/// The denoiser prepared for one job (weights loaded, position tables built for its sizes): one call predicts the
/// model output for latents [B, S, C] (S = generated tokens) under text conditioning with B rows at one timestep.
/// </summary>
public interface IDenoiser : IDisposable
{
    /// <summary>
    /// latents [B, S, C], text with B rows, timestep = the scheduler's timestep (float32, 1000 at pure noise; each family
    /// forms its model input from it: klein t/1000, Z-Image (1000 − t)/1000); writes the prediction the sampler takes
    /// (flow velocity) to output [B, S, C].
    /// </summary>
    void Predict(Tensor latents, TextConditioning text, float timestep, Tensor output, Action<string, Tensor>? trace = null);
}

/// <summary>
/// One loaded model family instance: everything the <see cref="GenerationEngine"/> needs, and nothing about the loop
/// itself. Implementations live in their family's folder (src/Model/Flux2, ...) and are created by an
/// <see cref="IModelFamily"/>.
/// </summary>
public interface IDiffusionModel : IDisposable
{
    IModelFamily Family { get; }
    Device Device { get; }
    ModelDefaults Defaults { get; }
    /// <summary>How the weights run: the requested quantization, or the one a pre-quantized snapshot stores.</summary>
    Layers.QuantMode Quant { get; }

    /// <summary>Prompts → text conditioning with one row per prompt (the family's tokenizer, template and encoder; cached where it can).</summary>
    TextConditioning EncodeText(IReadOnlyList<string> prompts, StageTimer? timer);

    /// <summary>
    /// The memory <paramref name="job"/> needs on this model's device, stage by stage, from configs and weight sizes
    /// alone; the engine refuses a job that cannot fit (<see cref="MemoryEstimate.EnsureFits"/>) before any work.
    /// </summary>
    MemoryEstimate EstimateMemory(GenerationJob job, bool cfg);

    /// <summary>The latent layout for an output size, or an ArgumentException naming the bad size.</summary>
    LatentLayout Layout(int width, int height);

    /// <summary>Packed initial noise [B, S, C]: sample b from the family's generator seeded <c>seed + b</c> (so a batch equals single runs).</summary>
    Tensor Noise(LatentLayout layout, int batch, ulong seed);

    /// <summary>Noise given in the family's unpacked layout (FLUX.2: [B, 128, h, w]) → packed [B, S, C].</summary>
    Tensor PackNoise(LatentLayout layout, Tensor noise);

    /// <summary>Null when the family takes reference images; otherwise why not (checked before any work).</summary>
    string? ReferenceImagesUnsupported => null;

    /// <summary>Encodes conditioning images (already decoded to RGB), or throws NotSupportedException when the family takes none.</summary>
    IImageConditioning EncodeImages(IReadOnlyList<RgbImage> images, StageTimer? timer, Action<string, Tensor>? trace = null);

    /// <summary>
    /// The sampler for a kind: the family's schedule (shift, mu from the image size) and timestep convention;
    /// <paramref name="settings"/>, when given, replaces the family's configuration (mu still comes from the family).
    /// </summary>
    ISampler CreateSampler(SamplerKind kind, int steps, LatentLayout layout, SamplerSettings? settings = null);

    /// <summary>Loads the denoiser (if needed) and prepares it for this layout, text length and conditioning images.</summary>
    IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images);

    /// <summary>
    /// <see cref="PrepareDenoiser(LatentLayout, int, IImageConditioning?)"/> with the value of the model's guidance input
    /// (<see cref="ModelDefaults.EmbeddedGuidance"/>; null when the model has none). Families without one ignore it.
    /// </summary>
    IDenoiser PrepareDenoiser(LatentLayout layout, int textLength, IImageConditioning? images, float? embeddedGuidance) =>
        PrepareDenoiser(layout, textLength, images);

    /// <summary>
    /// Image-to-image start latents (diffusers' img2img prepare_latents): the image resized to the layout and encoded,
    /// a <b>sample</b> of the VAE posterior z = mean + std·ε scaled for the denoiser, then σ·noise + (1 − σ)·z, packed
    /// [B, S, C]. Per image b the family's generator seeded <c>seed + b</c> draws ε first, then the noise (diffusers' order);
    /// <paramref name="posteriorNoise"/> / <paramref name="noise"/> (the family's unpacked latent layout, [B, ...]) replace
    /// the draws when given. Families without an encoder throw NotSupportedException.
    /// </summary>
    Tensor EncodeInitImage(RgbImage image, LatentLayout layout, int batch, ulong seed, float sigma, Tensor? posteriorNoise, Tensor? noise,
        Action<string, Tensor>? trace = null) =>
        throw new NotSupportedException($"{Family.Name}: --init-image (image-to-image) is not supported by this model family");

    /// <summary>The family-scoped experiment switches (<see cref="Experiments.ExperimentSwitches"/>) this model honours, e.g. "rope-cache".</summary>
    IReadOnlySet<string> HonouredSwitches => Experiments.ExperimentSwitches.NoFamilySwitches;

    /// <summary>Frees the denoiser's weights (before the decoder loads, to keep the peak down).</summary>
    void ReleaseDenoiser();

    /// <summary>Packed latents [B, S, C] → decoded images [B, 3, H, W] in about [−1, 1].</summary>
    Tensor Decode(Tensor latents, LatentLayout layout, Action<string, Tensor>? trace = null);
}
