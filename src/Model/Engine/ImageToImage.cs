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
    /// The sampler that runs steps <paramref name="start"/>..N−1 of <paramref name="full"/>, as a fresh sampler whose call 0
    /// is step <paramref name="start"/> (diffusers' set_begin_index). Euler only: the multistep samplers' first-order
    /// warm-up and Heun's paired calls would not match diffusers' begin-index behaviour without more work.
    /// </summary>
    public static ISampler Tail(ISampler full, int start)
    {
        if (full is not EulerSampler)
            throw new NotSupportedException($"--init-image: image-to-image runs with the euler sampler only (got {full.Name})");
        if (start == 0) return new EulerSampler(full.Steps, [.. full.Timesteps], full.Sigmas);
        var sigmas = full.Sigmas;
        return new EulerSampler(full.Steps - start, full.Timesteps.Skip(start).ToArray(), sigmas[start..]);
    }
}
