namespace PureFlux.Model.Guidance;

/// <summary>
/// Classifier-free guidance (Ho &amp; Salimans 2022) and the variants diffusers' pipelines apply on top of it,
/// selected by <see cref="GuidanceOptions"/>. All arithmetic runs on the tensors' device through
/// <see cref="GuidanceOps"/>; statistics are computed per sample (never across the batch).
/// <para>
/// Facts taken from diffusers (huggingface/diffusers, read at commit 58eb52c0, Aug 2026); the code here is ours:
/// </para>
/// <list type="bullet">
/// <item>Stable Diffusion (pipeline_stable_diffusion.py): prediction = u + g·(c − u), float32, only when g &gt; 1;
/// <c>rescale_noise_cfg</c> when guidance_rescale &gt; 0: std over every dim but batch (torch.std, Bessel),
/// rescaled = x·(std_c/std_x), out = φ·rescaled + (1 − φ)·x. We evaluate it as x·(φ·std_c/std_x + (1 − φ)),
/// equal in exact arithmetic (a few float32 ulps apart).</item>
/// <item>Qwen-Image (qwenimage/pipeline_qwenimage.py, true CFG, on when true_cfg_scale &gt; 1 and a negative
/// prompt is given): comb = u + g·(c − u); out = comb · (‖c‖ / ‖comb‖), torch.norm over the last dim (the 64
/// packed channels of each latent token), i.e. per token per sample, the ratio formed first; no epsilon (a
/// token whose comb is all zeros gives NaN, as in diffusers). The renormalisation is unconditional whenever true
/// CFG runs.</item>
/// <item>Z-Image (z_image/pipeline_z_image.py): guidance is on when guidance_scale &gt; 0 and the formula is
/// c + g·(c − u) (not u + g·(c − u)), per sample in float32. cfg_normalization (declared bool, used as
/// float(value); True = 1.0): when &gt; 0, with n_c = ‖c‖ and n = ‖pred‖ L2 over the whole sample, if n &gt;
/// cfg_normalization·n_c then pred ·= (cfg_normalization·n_c)/n. cfg_truncation (default 1.0): the pipeline
/// precomputes t_norm = (1000 − t)/1000 from the scheduler's float32 timesteps t = 1000·σ and sets the scale to 0
/// — which skips the unconditional pass entirely — at steps where t_norm &gt; cfg_truncation (the rule is only
/// armed when cfg_truncation ≤ 1). The guidance is applied to the transformer's raw output, which the pipeline
/// then negates; negation commutes with both the formula and the norm clip, so the sign convention of the
/// prediction does not matter here.</item>
/// </list>
/// </summary>
public sealed class ClassifierFreeGuidance : IGuidance
{
    private const string Op = nameof(ClassifierFreeGuidance) + "." + nameof(Combine);

    public ClassifierFreeGuidance(float scale, GuidanceOptions? options = null)
    {
        options ??= GuidanceOptions.Default;
        if (!float.IsFinite(scale))
            throw new ArgumentException($"--guidance {GuidanceOptions.F(scale)}: expected a finite scale");
        options.Validate();
        Scale = scale;
        Options = options;
    }

    public float Scale { get; }
    public GuidanceOptions Options { get; }

    /// <summary>False when the scale makes the prediction cond (g ≤ 1 for u + g(c − u), g ≤ 0 for c + g(c − u)),
    /// following the pipelines' switches.</summary>
    public bool Active => Options.Formula == GuidanceFormula.CondPlus ? Scale > 0 : Scale > 1;

    public string Name
    {
        get
        {
            var o = Options;
            var parts = new List<string> { $"cfg {GuidanceOptions.F(Scale)}" };
            if (o.Formula == GuidanceFormula.CondPlus) parts.Add("c+g(c-u)");
            if (o.Interval is var (lo, hi)) parts.Add($"interval [{GuidanceOptions.F(lo)}, {GuidanceOptions.F(hi)}]");
            if (o.Truncation is float t) parts.Add($"truncation {GuidanceOptions.F(t)}");
            if (o.RescalePhi > 0) parts.Add($"rescale {GuidanceOptions.F(o.RescalePhi)}");
            if (o.PerTokenNormRescale) parts.Add("token-norm");
            if (o.NormClip > 0) parts.Add($"norm-clip {GuidanceOptions.F(o.NormClip)}");
            return string.Join(", ", parts);
        }
    }

    public bool NeedsUncond(float sigma, int step, int steps)
    {
        if (!Active) return false;
        if (Options.Interval is var (lo, hi) && !(sigma >= lo && sigma <= hi)) return false;
        if (Options.Truncation is float truncation && TruncationNorm(sigma) > truncation) return false;
        return true;
    }

    /// <summary>Z-Image's normalised time for a step at <paramref name="sigma"/>: t = σ·1000 and (1000 − t)/1000,
    /// each rounded to float32 as the scheduler and pipeline compute them.</summary>
    public static float TruncationNorm(float sigma)
    {
        float t = sigma * 1000f;
        float diff = 1000f - t;
        return diff / 1000f;
    }

    public void Combine(Tensor cond, Tensor uncond, Tensor output, int step, int steps)
    {
        Check.Rank(Op, "cond", cond, 3);
        Check.SameShape(Op, "cond", cond, "uncond", uncond);
        Check.SameShape(Op, "cond", cond, "output", output);
        var device = Check.SameDevice(Op, cond, uncond, output);
        int b = cond.Shape[0], s = cond.Shape[1], c = cond.Shape[2];
        if (cond.Count == 0) return;
        var o = Options;

        // Statistics of cond are taken before output (which may alias cond) is written.
        using var condPerSample = cond.Reshape(b, s * c);
        using var outPerSample = output.Reshape(b, s * c);
        using var outPerToken = output.Reshape(b * s, c);
        Tensor? condStat = null, outStat = null, factor = null;
        try
        {
            if (o.RescalePhi > 0)
            {
                (condStat, outStat, factor) = Vectors(device, b);
                GuidanceOps.RowStd(condPerSample, condStat);
            }
            else if (o.PerTokenNormRescale)
            {
                (condStat, outStat, factor) = Vectors(device, b * s);
                using var condPerToken = cond.Reshape(b * s, c);
                GuidanceOps.RowNorms(condPerToken, condStat);
            }
            else if (o.NormClip > 0)
            {
                (condStat, outStat, factor) = Vectors(device, b);
                GuidanceOps.RowNorms(condPerSample, condStat);
            }

            if (o.Formula == GuidanceFormula.CondPlus) GuidanceOps.CfgFromCond(cond, uncond, Scale, output);
            else GuidanceOps.Cfg(cond, uncond, Scale, output);

            if (o.RescalePhi > 0)
            {
                GuidanceOps.RowStd(outPerSample, outStat!);
                GuidanceOps.BlendRatio(condStat!, outStat!, o.RescalePhi, factor!);
                GuidanceOps.ScaleRows(outPerSample, factor!, outPerSample);
            }
            else if (o.PerTokenNormRescale)
            {
                GuidanceOps.RowNorms(outPerToken, outStat!);
                GuidanceOps.BlendRatio(condStat!, outStat!, 1f, factor!);
                GuidanceOps.ScaleRows(outPerToken, factor!, outPerToken);
            }
            else if (o.NormClip > 0)
            {
                GuidanceOps.RowNorms(outPerSample, outStat!);
                GuidanceOps.ClipRatio(condStat!, outStat!, o.NormClip, factor!);
                GuidanceOps.ScaleRows(outPerSample, factor!, outPerSample);
            }
        }
        finally
        {
            condStat?.Dispose();
            outStat?.Dispose();
            factor?.Dispose();
        }
    }

    private static (Tensor, Tensor, Tensor) Vectors(Device device, int n)
    {
        var a = Tensor.Empty(device, DType.F32, n);
        var b = Tensor.Empty(device, DType.F32, n);
        var f = Tensor.Empty(device, DType.F32, n);
        return (a, b, f);
    }
}
