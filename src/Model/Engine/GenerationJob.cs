using PureFlux.Model.Image;
using PureFlux.Model.Scheduler;

namespace PureFlux.Model.Engine;

/// <summary>How the unconditional pass of classifier-free guidance runs.</summary>
public enum CfgMode
{
    /// <summary>Two passes of batch B per step, conditional then unconditional (as diffusers does).</summary>
    Sequential,
    /// <summary>One pass of batch 2B per step: [cond rows; uncond rows].</summary>
    Batched,
}

/// <summary>
/// Everything one generation asks for. Null fields take the model's defaults (<see cref="ModelDefaults"/>). The batch
/// is prompt-major: Prompts × ImagesPerPrompt rows, [A, A, B, B] for two prompts × two images.
/// </summary>
public sealed record GenerationJob
{
    /// <summary>One or more prompts (ignored where <see cref="PromptEmbeds"/> is given).</summary>
    public IReadOnlyList<string> Prompts { get; init; } = [];
    /// <summary>Negative prompts (one, or one per prompt); null = "" as diffusers' klein pipeline uses.</summary>
    public IReadOnlyList<string>? NegativePrompts { get; init; }
    public int ImagesPerPrompt { get; init; } = 1;
    /// <summary>Output size in pixels; null = the first reference image's size, else 1024.</summary>
    public int? Width { get; init; }
    public int? Height { get; init; }
    public int? Steps { get; init; }
    public ulong Seed { get; init; } = 42;
    public SamplerKind? Sampler { get; init; }
    /// <summary>A complete sampler configuration (diffusers' scheduler class + kwargs, as a golden set records it) instead of the family's default for <see cref="Sampler"/>.</summary>
    public SamplerSettings? SamplerSettings { get; init; }
    /// <summary>Guidance scale g; ≤ 1 turns classifier-free guidance off. Null = the model's default.</summary>
    public float? Guidance { get; init; }
    public CfgMode CfgMode { get; init; } = CfgMode.Sequential;
    /// <summary>σ range [lo, hi] in which the unconditional pass runs (null: every step).</summary>
    public (float Lo, float Hi)? GuidanceInterval { get; init; }
    /// <summary>CFG-rescale φ in [0, 1] (0 = off).</summary>
    public float CfgRescale { get; init; }
    /// <summary>Z-Image's cfg_truncation: no guidance at steps whose t_norm = (1000 − 1000σ)/1000 exceeds it (null = off).</summary>
    public float? GuidanceTruncation { get; init; }
    /// <summary>Z-Image's cfg_normalization: the guided prediction's norm is clipped to this × the conditional one's (0 = off).</summary>
    public float GuidanceNormClip { get; init; }
    /// <summary>Reference images for editing / multi-reference conditioning, in order.</summary>
    public IReadOnlyList<RgbImage> ReferenceImages { get; init; } = [];

    /// <summary>Precomputed conditioning, one row per prompt (repeated per image like encoded prompts); skips the text encoder.</summary>
    public TextConditioning? PromptEmbeds { get; init; }
    /// <summary>Precomputed negative conditioning, one row per prompt.</summary>
    public TextConditioning? NegativePromptEmbeds { get; init; }
    /// <summary>
    /// NaN/Inf in the latents after a step or in the decoded image is an error (<see cref="NonFiniteException"/>, naming
    /// the stage and step) unless this is set; then it is a warning (once per stage) and the run finishes — for experiments.
    /// </summary>
    public bool AllowNonFinite { get; init; }
    /// <summary>Initial noise in the family's unpacked layout (FLUX.2: [B, 128, h, w]) instead of the seeded generator.</summary>
    public Tensor? Noise { get; init; }
    /// <summary>
    /// diffusers' true_cfg_scale, for families whose <see cref="Guidance"/> is a model input (<see cref="ModelDefaults.TrueCfg"/>,
    /// FLUX.1): classifier-free guidance u + s(c − u) runs when this is &gt; 1 and a negative prompt is given. Null = off.
    /// </summary>
    public float? TrueCfgScale { get; init; }
    /// <summary>Image-to-image: the start image (resized to the output size, whose default is this image's size rounded down to 16).</summary>
    public RgbImage? InitImage { get; init; }
    /// <summary>Image-to-image strength in (0, 1]: the schedule starts at step int(N − N·strength) (diffusers' get_timesteps, float64).</summary>
    public double Strength { get; init; } = 0.6;
    /// <summary>Image-to-image: the VAE posterior's ε in the family's unpacked latent layout instead of the seeded generator.</summary>
    public Tensor? InitImagePosteriorNoise { get; init; }

    /// <summary>Number of prompts (rows before the per-prompt repetition).</summary>
    public int PromptCount => PromptEmbeds?.Batch ?? Prompts.Count;
    public int BatchSize => checked(PromptCount * ImagesPerPrompt);

    /// <summary>Most images one run may make (prompts × images per prompt); memory is checked separately, per machine.</summary>
    public const int MaxImages = 1024;

    /// <summary>Checks what can be checked before any model work; one-line ArgumentExceptions naming the argument.</summary>
    public void Validate()
    {
        if (PromptEmbeds is null)
        {
            if (Prompts.Count == 0) throw new ArgumentException("--prompt: at least one prompt is needed");
            for (int i = 0; i < Prompts.Count; i++)
                if (string.IsNullOrWhiteSpace(Prompts[i])) throw new ArgumentException($"--prompt {(Prompts.Count > 1 ? $"#{i + 1} " : "")}is empty");
        }
        if (ImagesPerPrompt < 1 || ImagesPerPrompt > 64) throw new ArgumentException($"--batch-size {ImagesPerPrompt}: expected 1..64 images per prompt");
        long images = (long)PromptCount * ImagesPerPrompt; // never overflows: both are ints
        if (images > MaxImages)
            throw new ArgumentException($"{PromptCount} prompts × --batch-size {ImagesPerPrompt} = {images} images; at most {MaxImages} per run");
        if (NegativePrompts is { } neg && neg.Count != 1 && neg.Count != PromptCount)
            throw new ArgumentException($"--negative-prompt: {neg.Count} given for {PromptCount} prompts; give one, or one per prompt");
        if (Width is int w && (w <= 0 || w % 16 != 0) || Height is int h && (h <= 0 || h % 16 != 0))
            throw new ArgumentException($"--width/--height {Width}x{Height}: width and height must be positive multiples of 16");
        if (Steps is int s && (s < 1 || s > 1000)) throw new ArgumentException($"--steps {s}: expected 1..1000");
        if (Guidance is float g && (!float.IsFinite(g) || g < 0)) throw new ArgumentException($"--guidance {g}: expected a finite value ≥ 0");
        if (GuidanceInterval is var (lo, hi) && !(lo >= 0 && hi <= 1 && lo <= hi))
            throw new ArgumentException($"--guidance-interval {lo},{hi}: expected 0 ≤ LO ≤ HI ≤ 1 (σ range where the unconditional pass runs)");
        if (!(CfgRescale >= 0 && CfgRescale <= 1)) throw new ArgumentException($"--cfg-rescale {CfgRescale}: expected φ in [0, 1]");
        new Guidance.GuidanceOptions { Truncation = GuidanceTruncation, NormClip = GuidanceNormClip, RescalePhi = CfgRescale }.Validate();
        if (TrueCfgScale is float tc && (!float.IsFinite(tc) || tc < 0)) throw new ArgumentException($"--true-cfg {tc}: expected a finite value ≥ 0");
        if (InitImage is not null)
        {
            if (!(Strength > 0 && Strength <= 1)) throw new ArgumentException($"--strength {Strength}: expected a value in (0, 1]");
            if (ReferenceImages.Count > 0) throw new ArgumentException("--init-image and --ref-image cannot be combined: image-to-image starts from one image, editing conditions on references");
        }
        if (Noise is { } n && n.Shape[0] != BatchSize)
            throw new ArgumentException($"noise has shape {n.Shape}; expected {BatchSize} rows (prompts × images per prompt)");
    }
}
