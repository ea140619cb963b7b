using PureFlux.Model.Guidance;
using PureFlux.Model.Image;
using PureFlux.Model.Scheduler;

namespace PureFlux.Model.Engine;

/// <summary>One model evaluation's results, handed to <see cref="GenerationHooks.OnStep"/> (views: copy what you keep).</summary>
/// <param name="Call">Model evaluation index (equals the step for order-1 samplers).</param>
/// <param name="Step">User-visible step the call belongs to.</param>
/// <param name="Cond">Conditional prediction [B, S, C].</param>
/// <param name="Uncond">Unconditional prediction [B, S, C], or null when this call ran without it.</param>
/// <param name="Prediction">What the sampler received (after guidance).</param>
/// <param name="Latents">Latents after the sampler step [B, S, C].</param>
/// <param name="Timestep">The scheduler's timestep (what the denoiser received); ModelTimestep is klein's t/1000 of it.</param>
public sealed record StepRecord(int Call, int Step, float Sigma, float ModelTimestep, Tensor Cond, Tensor? Uncond, Tensor Prediction, Tensor Latents, float Timestep = 0);

/// <summary>Observers of the one generation loop: stage timing, progress, per-step tensors, named intermediates, warnings.</summary>
public sealed class GenerationHooks
{
    public StageTimer? Timer { get; init; }
    /// <summary>(steps done, steps) after each step.</summary>
    public Action<int, int>? Progress { get; init; }
    /// <summary>
    /// As each stage begins: "text encoding" (once per encoded prompt list), "reference images", "init image",
    /// "load transformer", "denoising", "vae" — for a live display; the times themselves are <see cref="Timer"/>'s.
    /// </summary>
    public Action<string>? Stage { get; init; }
    public Action<StepRecord>? OnStep { get; init; }
    /// <summary>Named intermediates: prompt_embeds, negative_prompt_embeds, latents.initial_packed, the family's own (ref.*, latents_for_vae, ...), decoded_image.</summary>
    public Action<string, Tensor>? Trace { get; init; }
    public Action<string>? Warning { get; init; }
}

/// <summary>What a generation produced: decoded images [B, 3, H, W] (host, about [−1, 1]) and the settings it resolved.</summary>
public sealed record GenerationResult(float[] Decoded, int Batch, int Width, int Height, int Steps, SamplerKind Sampler, float Guidance,
    bool UsedCfg, int ModelCalls, int UncondPasses, IReadOnlyList<string> Warnings)
{
    /// <summary>The value given to the model's guidance input (FLUX.1 dev / Kontext), or null when it has none.</summary>
    public float? EmbeddedGuidance { get; init; }

    /// <summary>Image b as 8-bit RGB, as diffusers does: round(clamp(x/2 + 0.5, 0, 1)·255).</summary>
    public RgbImage Image(int b)
    {
        if ((uint)b >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(b), $"image {b} of a batch of {Batch}");
        int plane = Width * Height;
        return new RgbImage(GenerationEngine.ToRgb(Decoded.AsSpan(b * 3 * plane, 3 * plane), Width, Height), Width, Height);
    }
}

/// <summary>
/// The one generation loop, shared by generate, bench, verify and the tests, for every model family:
/// encode text → prepare latents (noise, reference images) → per model call: denoiser pass(es) → guidance → sampler
/// step → decode. Families supply the pieces (<see cref="IDiffusionModel"/>); samplers (<see cref="ISampler"/>) and
/// guidance (<see cref="IGuidance"/>) are chosen here from the job and the model's defaults.
/// </summary>
public static class GenerationEngine
{
    public static GenerationResult Run(IDiffusionModel model, GenerationJob job, GenerationHooks? hooks = null)
    {
        hooks ??= new GenerationHooks();
        job.Validate();
        var warnings = new List<string>();
        void Warn(string w) { warnings.Add(w); hooks.Warning?.Invoke(w); }
        var dev = model.Device;
        var defaults = model.Defaults;
        var timer = hooks.Timer;
        var guard = new NonFiniteGuard(job.AllowNonFinite, Warn);

        // Guidance: a guidance-distilled model ignores the scale, as diffusers does (with a warning).
        float guidance = job.Guidance ?? defaults.Guidance;
        float? embeddedGuidance = null;
        bool cfg;
        string off = defaults.CfgFormula == GuidanceFormula.CondPlus ? "guidance 0" : "guidance ≤ 1";
        if (defaults.TrueCfg)
        {
            // FLUX.1: --guidance is the model's guidance input; CFG is diffusers' true CFG (true_cfg_scale > 1 with a negative prompt).
            if (defaults.EmbeddedGuidance is float eg) embeddedGuidance = job.Guidance ?? eg;
            else if (job.Guidance is not null)
                Warn($"--guidance {job.Guidance} is ignored: this model has no guidance embedding (FLUX.1 schnell); for classifier-free guidance use --true-cfg with --negative-prompt");
            guidance = job.TrueCfgScale ?? 1f;
            bool hasNegative = job.NegativePrompts is not null || job.NegativePromptEmbeds is not null;
            if (guidance > 1 && !hasNegative) Warn($"--true-cfg {guidance} has no effect without --negative-prompt (as in diffusers)");
            cfg = guidance > 1 && hasNegative;
            off = "--true-cfg ≤ 1 or no --negative-prompt";
        }
        else
        {
            if (job.TrueCfgScale is not null) Warn("--true-cfg applies to models with a guidance input (FLUX.1); this model's classifier-free guidance scale is --guidance");
            if (defaults.GuidanceDistilled && guidance > 1)
            {
                Warn($"guidance {guidance} is ignored: this snapshot is guidance-distilled (is_distilled: true), so it runs without classifier-free guidance");
                guidance = 1;
            }
            cfg = defaults.CfgOn(guidance);
            if (cfg && defaults.CfgNeedsNegativePrompt && job.NegativePrompts is null && job.NegativePromptEmbeds is null)
            {
                // As diffusers' QwenImagePipeline: true CFG needs a negative prompt (even " "); without one the run is unguided.
                if (job.Guidance is not null) Warn($"guidance {guidance} is not applied: this model runs classifier-free guidance only with --negative-prompt (even \" \")");
                cfg = false;
            }
        }
        if (!cfg && (job.GuidanceInterval is not null || job.CfgRescale > 0 || job.CfgMode == CfgMode.Batched || job.NegativePrompts is not null
                     || job.GuidanceTruncation is not null || job.GuidanceNormClip > 0))
            Warn($"--negative-prompt, --cfg-mode, --guidance-interval, --cfg-rescale, --guidance-truncation and --guidance-norm-clip have no effect without classifier-free guidance ({off})");
        IGuidance guide = cfg
            ? new ClassifierFreeGuidance(guidance, new GuidanceOptions
            {
                Formula = defaults.CfgFormula, Interval = job.GuidanceInterval, RescalePhi = job.CfgRescale,
                Truncation = job.GuidanceTruncation, NormClip = job.GuidanceNormClip,
                PerTokenNormRescale = defaults.PerTokenNormRescale && job.CfgRescale == 0 && job.GuidanceNormClip == 0, // an explicit rescale replaces it
            })
            : NoGuidance.Instance;
        var samplerKind = job.SamplerSettings?.Kind ?? job.Sampler ?? defaults.Sampler;
        int steps = job.Steps ?? defaults.Steps;

        if (job.ReferenceImages.Count > 0 && model.ReferenceImagesUnsupported is { } noImages) throw new NotSupportedException(noImages);
        int prompts = job.PromptCount, batch = job.BatchSize;
        model.EstimateMemory(job, cfg).EnsureFits(dev); // refuse what cannot fit before any work, with the numbers
        var repeat = Enumerable.Range(0, prompts).SelectMany(p => Enumerable.Repeat(p, job.ImagesPerPrompt)).ToArray();

        // 1. Text (the encoder is released before the denoiser loads).
        TextConditioning? cond = null, uncond = null, joint = null;
        IImageConditioning? images = null;
        Tensor? latents = null;
        try
        {
            if (job.PromptEmbeds is null) hooks.Stage?.Invoke("text encoding");
            using (var perPrompt = job.PromptEmbeds is null ? model.EncodeText(job.Prompts, timer) : null)
                cond = (perPrompt ?? job.PromptEmbeds!).Select(repeat);
            if (cond.Warning is not null) Warn(cond.Warning);
            hooks.Trace?.Invoke("prompt_embeds", cond.Embeds);
            if (cfg)
            {
                var negatives = job.NegativePrompts is { Count: 1 } one ? Enumerable.Repeat(one[0], prompts).ToArray()
                    : job.NegativePrompts?.ToArray() ?? Enumerable.Repeat("", prompts).ToArray();
                if (job.NegativePromptEmbeds is null) hooks.Stage?.Invoke("text encoding");
                using (var perPrompt = job.NegativePromptEmbeds is null ? model.EncodeText(negatives, timer) : null)
                    uncond = (perPrompt ?? job.NegativePromptEmbeds!).Select(repeat);
                if (uncond.Length != cond.Length)
                {
                    // Families with masked, variable-length text (Z-Image) pad the shorter side; fixed-length ones must match.
                    if (cond.Mask is null || uncond.Mask is null)
                        throw new ArgumentException($"negative prompt conditioning has {uncond.Length} tokens; the prompt has {cond.Length} (they must match)");
                    int len = Math.Max(cond.Length, uncond.Length);
                    var (c2, u2) = (cond.PadTo(len), uncond.PadTo(len));
                    if (!ReferenceEquals(c2, cond)) { cond.Dispose(); cond = c2; }
                    if (!ReferenceEquals(u2, uncond)) { uncond.Dispose(); uncond = u2; }
                }
                hooks.Trace?.Invoke("negative_prompt_embeds", uncond.Embeds);
                if (job.CfgMode == CfgMode.Batched) joint = TextConditioning.Concat(cond, uncond);
            }
            dev.Pool.Trim();

            // 2. Conditioning images and the latent layout.
            if (job.ReferenceImages.Count > 0)
            {
                hooks.Stage?.Invoke("reference images");
                using (timer?.Stage("reference images")) images = model.EncodeImages(job.ReferenceImages, timer, hooks.Trace);
            }
            var size = images?.SuggestedSize ?? (job.InitImage is { } init ? (init.Width / 16 * 16, init.Height / 16 * 16) : null);
            var layout = model.Layout(job.Width ?? size?.Width ?? 1024, job.Height ?? size?.Height ?? 1024);

            // 3. The schedule (image-to-image runs its tail from the strength's start step) and the start latents.
            var sampler = model.CreateSampler(samplerKind, steps, layout, job.SamplerSettings);
            try
            {
                if (job.InitImage is not null)
                {
                    int start = ImageToImage.StartStep(steps, job.Strength);
                    var tail = ImageToImage.Tail(sampler, start);
                    sampler.Dispose();
                    sampler = tail;
                    hooks.Stage?.Invoke("init image");
                    using (timer?.Stage("init image"))
                        latents = model.EncodeInitImage(job.InitImage, layout, batch, job.Seed, sampler.Sigma(0), job.InitImagePosteriorNoise, job.Noise, hooks.Trace);
                }
                else latents = job.Noise is { } given ? model.PackNoise(layout, given) : model.Noise(layout, batch, job.Seed);
            }
            catch { sampler.Dispose(); throw; }
            using var _ = sampler;
            hooks.Trace?.Invoke("latents.initial_packed", latents);

            // 4. Denoising.
            IDenoiser denoiser;
            hooks.Stage?.Invoke("load transformer");
            using (timer?.Stage("load transformer")) denoiser = model.PrepareDenoiser(layout, cond.Length, images, embeddedGuidance);
            int calls, uncondPasses;
            hooks.Stage?.Invoke("denoising");
            using (denoiser) (calls, uncondPasses) = Denoise(denoiser, sampler, guide, job.CfgMode, latents, cond, uncond, joint, hooks, guard);
            model.ReleaseDenoiser();
            dev.Pool.Trim();

            // 5. Decode.
            float[] decoded;
            hooks.Stage?.Invoke("vae");
            using (timer?.Stage("vae"))
            using (var image = model.Decode(latents, layout, hooks.Trace))
            {
                guard.Decoded(image);
                hooks.Trace?.Invoke("decoded_image", image);
                decoded = image.ToFloatArray();
            }
            return new GenerationResult(decoded, batch, layout.Width, layout.Height, steps, samplerKind, guidance, cfg, calls, uncondPasses, warnings)
            {
                EmbeddedGuidance = embeddedGuidance,
            };
        }
        finally
        {
            cond?.Dispose();
            uncond?.Dispose();
            joint?.Dispose();
            images?.Dispose();
            latents?.Dispose();
        }
    }

    /// <summary>The step loop: latents [B, S, C] are updated in place. Returns (model calls, unconditional passes).</summary>
    private static (int Calls, int UncondPasses) Denoise(IDenoiser denoiser, ISampler sampler, IGuidance guide, CfgMode mode,
        Tensor latents, TextConditioning cond, TextConditioning? uncond, TextConditioning? joint, GenerationHooks hooks, NonFiniteGuard guard)
    {
        var dev = latents.Device;
        int batch = latents.Shape[0], s = latents.Shape[1], c = latents.Shape[2];
        using var prediction = Tensor.Empty(dev, DType.F32, batch, s, c);
        using var condOut = Tensor.Empty(dev, DType.F32, batch, s, c);
        Tensor? uncondOut = null, pair = null, pairOut = null;
        int uncondPasses = 0;
        try
        {
            for (int call = 0; call < sampler.Calls; call++)
            {
                int step = sampler.StepOf(call);
                float sigma = sampler.Sigma(call), t = sampler.Timestep(call);
                bool withUncond = uncond is not null && guide.NeedsUncond(sigma, step, sampler.Steps);
                Tensor condPred = condOut, uncondPred = null!, guided;
                using (hooks.Timer?.Stage(sampler.Calls == sampler.Steps ? $"step {call + 1}" : $"call {call + 1}"))
                {
                    if (!withUncond)
                        denoiser.Predict(latents, cond, t, condOut);
                    else if (mode == CfgMode.Batched)
                    {
                        // One pass of batch 2B: the same latents twice, [cond; uncond] text rows.
                        pair ??= Tensor.Empty(dev, DType.F32, 2 * batch, s, c);
                        pairOut ??= Tensor.Empty(dev, DType.F32, 2 * batch, s, c);
                        latents.CopyTo(pair.Slice(0, batch));
                        latents.CopyTo(pair.Slice(batch, batch));
                        denoiser.Predict(pair, joint!, t, pairOut);
                        condPred = pairOut.Slice(0, batch);
                        uncondPred = pairOut.Slice(batch, batch);
                    }
                    else
                    {
                        uncondOut ??= Tensor.Empty(dev, DType.F32, batch, s, c);
                        denoiser.Predict(latents, cond, t, condOut);
                        denoiser.Predict(latents, uncond!, t, uncondOut);
                        uncondPred = uncondOut;
                    }
                    // Without the uncond pass the conditional output is the prediction itself (no copy).
                    guided = condPred;
                    if (withUncond)
                    {
                        uncondPasses++;
                        guide.Combine(condPred, uncondPred, prediction, step, sampler.Steps);
                        guided = prediction;
                    }
                    sampler.Step(call, guided, latents);
                }
                guard.Latents(sampler, call, latents);
                hooks.OnStep?.Invoke(new StepRecord(call, step, sigma, sampler.ModelTimestep(call), condPred, withUncond ? uncondPred : null, guided, latents, t));
                if (call == sampler.Calls - 1 || sampler.StepOf(call + 1) != step) hooks.Progress?.Invoke(step + 1, sampler.Steps);
            }
        }
        finally
        {
            uncondOut?.Dispose();
            pair?.Dispose();
            pairOut?.Dispose();
        }
        return (sampler.Calls, uncondPasses);
    }

    /// <summary>Decoded [3, H, W] in about [-1, 1] → RGB bytes [H, W, 3] as diffusers does: round(clamp(x/2 + 0.5, 0, 1)·255).</summary>
    public static byte[] ToRgb(ReadOnlySpan<float> chw, int width, int height)
    {
        int plane = width * height;
        if (chw.Length != 3 * plane) throw new ArgumentException($"decoded image has {chw.Length} values; expected 3×{height}×{width}");
        var rgb = new byte[3 * plane];
        for (int p = 0; p < plane; p++)
            for (int ch = 0; ch < 3; ch++)
            {
                float v = Math.Clamp(chw[ch * plane + p] / 2f + 0.5f, 0f, 1f);
                rgb[3 * p + ch] = (byte)Math.Round(v * 255f);
            }
        return rgb;
    }
}
