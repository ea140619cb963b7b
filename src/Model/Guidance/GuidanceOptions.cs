using System.Globalization;

namespace PureFlux.Model.Guidance;

/// <summary>How the guided prediction is formed from c and u with scale g.</summary>
public enum GuidanceFormula
{
    /// <summary>u + g·(c − u) (the classifier-free guidance of Ho &amp; Salimans; Stable Diffusion, Qwen-Image's
    /// true CFG). Guidance is on when g &gt; 1 (g = 1 is plain cond), as diffusers' pipelines decide.</summary>
    UncondPlus,

    /// <summary>c + g·(c − u) (Z-Image), i.e. u + (1 + g)·(c − u): g = 0 is plain cond and guidance is on when
    /// g &gt; 0.</summary>
    CondPlus,
}

/// <summary>
/// Settings of <see cref="ClassifierFreeGuidance"/>. The post-processing options (<see cref="RescalePhi"/>,
/// <see cref="PerTokenNormRescale"/>, <see cref="NormClip"/>) are exclusive: each comes from a different
/// pipeline and none of them defines an order with another. The gates (<see cref="Interval"/>,
/// <see cref="Truncation"/>) combine with anything.
/// </summary>
public sealed record GuidanceOptions
{
    public static readonly GuidanceOptions Default = new();

    /// <summary><see cref="GuidanceFormula.UncondPlus"/> unless set.</summary>
    public GuidanceFormula Formula { get; init; } = GuidanceFormula.UncondPlus;

    /// <summary>Guidance interval (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves
    /// sample and distribution quality"): the unconditional pass runs only where Lo ≤ σ ≤ Hi (both ends included);
    /// elsewhere the prediction is cond. Null: every step. 0 ≤ Lo ≤ Hi ≤ 1.</summary>
    public (float Lo, float Hi)? Interval { get; init; }

    /// <summary>CFG rescale φ (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    /// §3.4; diffusers' <c>rescale_noise_cfg</c> / <c>guidance_rescale</c>): per sample,
    /// out = φ·x·(std(c)/std(x)) + (1 − φ)·x, x the guided prediction, std over all of a sample's elements with
    /// Bessel's correction. 0 (default): off. In [0, 1].</summary>
    public float RescalePhi { get; init; }

    /// <summary>Qwen-Image's true-CFG renormalisation: out = x · (‖c‖ / ‖x‖) with L2 norms over the channels of
    /// each token of each sample (diffusers' QwenImagePipeline).</summary>
    public bool PerTokenNormRescale { get; init; }

    /// <summary>Z-Image's <c>cfg_normalization</c>: when &gt; 0, a sample whose guided prediction has a larger
    /// whole-sample L2 norm than NormClip·‖c‖ is scaled down to exactly that norm. 0 (default): off.</summary>
    public float NormClip { get; init; }

    /// <summary>Z-Image's <c>cfg_truncation</c>: guidance is off at steps whose normalised time
    /// t_norm = (1000 − 1000·σ) / 1000 (float32, as the pipeline forms it from the scheduler's timesteps) is
    /// greater than this value. t_norm ≤ 1 for every σ ≥ 0, so values ≥ 1 never truncate (the pipeline's default
    /// is 1.0, and it skips the rule for values above 1); 0 keeps guidance only at σ = 1. Null (default): off.
    /// Must be ≥ 0.</summary>
    public float? Truncation { get; init; }

    /// <summary>Throws a one-line <see cref="ArgumentException"/> naming the option (by its CLI flag) when a value is
    /// out of range or two exclusive options are set.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Formula))
            throw new ArgumentException($"guidance formula {(int)Formula} is not one of {string.Join(", ", Enum.GetNames<GuidanceFormula>())}");
        if (Interval is var (lo, hi) && !(lo >= 0 && lo <= hi && hi <= 1))
            throw new ArgumentException($"--guidance-interval {F(lo)},{F(hi)}: expected 0 ≤ lo ≤ hi ≤ 1 (sigma bounds)");
        if (!(RescalePhi >= 0 && RescalePhi <= 1))
            throw new ArgumentException($"--guidance-rescale {F(RescalePhi)}: expected a value in [0, 1]");
        if (!(NormClip >= 0 && float.IsFinite(NormClip)))
            throw new ArgumentException($"--guidance-norm-clip {F(NormClip)}: expected a finite value ≥ 0 (0 = off)");
        if (Truncation is float t && !(t >= 0 && !float.IsNaN(t)))
            throw new ArgumentException($"--guidance-truncation {F(t)}: expected a value ≥ 0 (above 1 = never)");
        int post = (RescalePhi > 0 ? 1 : 0) + (PerTokenNormRescale ? 1 : 0) + (NormClip > 0 ? 1 : 0);
        if (post > 1)
            throw new ArgumentException("--guidance-rescale, --guidance-token-norm and --guidance-norm-clip are exclusive; pick one");
    }

    internal static string F(float v) => v.ToString("R", CultureInfo.InvariantCulture);
}
