using PureFlux.Model.Scheduler;

namespace PureFlux.Model.Engine;

/// <summary>
/// Image-to-image's schedule rule (diffusers' img2img get_timesteps, as FluxImg2ImgPipeline runs it): of the N-step
/// schedule, the steps from t_start = int(max(N − min(N·strength, N), 0)) run (float64 arithmetic, truncation toward
/// zero: 4·0.6 = 2.4 → t_start 1; 5·0.6 = 3.0 → t_start 2), and the start latents are noised at σ[t_start].
/// </summary>
public static class ImageToImage
{
    /// <summary>t_start for N steps at <paramref name="strength"/>; an ArgumentException when no step would run.</summary>
    public static int StartStep(int steps, double strength)
    {
        if (!(strength > 0 && strength <= 1)) throw new ArgumentException($"--strength {strength}: expected a value in (0, 1]");
        double init = Math.Min(steps * strength, steps);
        int start = (int)Math.Max(steps - init, 0);
        if (start >= steps)
            throw new ArgumentException($"--strength {strength} with --steps {steps}: no denoising step would run (int({steps} − {steps}·{strength}) = {start}); raise --strength or --steps");
        return start;
    }

    /// <summary>
    /// The sampler that runs steps <paramref name="start"/>..N−1 of <paramref name="full"/>: a fresh sampler whose call 0
    /// is step <paramref name="start"/>'s first call, start·order (diffusers' get_timesteps + set_begin_index). Every
    /// sampler: Euler's tail is stateless; DPM-Solver++ and UniPC start with empty history, so their first step is first
    /// order (and UniPC runs no corrector on it), as diffusers' multistep schedulers after set_timesteps; Heun starts with
    /// step start's predictor. The start latents are noised at the tail's σ(0) = σ[start·order] (FlowMatch scale_noise;
    /// the multistep schedulers' flow add_noise, (1 − σ)·x + σ·noise, is the same value).
    /// </summary>
    public static ISampler Tail(ISampler full, int start)
    {
        if (full is not SamplerBase b)
            throw new NotSupportedException($"--init-image: the {full.Name} sampler cannot start part-way through its schedule");
        if (start < 0 || start >= full.Steps) throw new ArgumentOutOfRangeException(nameof(start), start, $"image-to-image: the start step must be in [0, {full.Steps})");
        return b.Tail(start * full.Order, full.Steps - start);
    }
}
