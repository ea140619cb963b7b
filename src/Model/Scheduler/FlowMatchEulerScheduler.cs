using PureFlux.Model.Config;

namespace PureFlux.Model.Scheduler;

/// <summary>
/// FLUX.2 [klein]'s sampling schedule: diffusers' FlowMatchEulerDiscreteScheduler driven the way
/// Flux2KleinPipeline drives it, reproduced value for value (float32 where diffusers works in float32):
/// <list type="number">
/// <item>sigmas = linspace(1, 1/steps, steps) in float64 (numpy), then rounded to float32;</item>
/// <item>mu = <see cref="ComputeEmpiricalMu"/>(image_seq_len, steps) in float64;</item>
/// <item>exponential time shift in float32 (numpy with a weak Python scalar): e / (e + (1/s − 1)), e = float32(exp(mu));</item>
/// <item>timesteps = sigmas × 1000 (float32, torch); the transformer gets timesteps / 1000 (float32);</item>
/// <item>a final sigma 0 is appended; Euler step: latents += (sigma[i+1] − sigma[i]) × noise_pred (float32).</item>
/// </list>
/// </summary>
public sealed class FlowMatchEulerScheduler
{
    private FlowMatchEulerScheduler(int steps, double? mu, double[] linspace, float[] sigmas, float[] timesteps)
    {
        Steps = steps;
        Mu = mu;
        SigmasLinspace = linspace;
        Sigmas = sigmas;
        Timesteps = timesteps;
    }

    public int Steps { get; }
    /// <summary>The shift parameter used (null when the config uses a static shift).</summary>
    public double? Mu { get; }
    /// <summary>The unshifted float64 sigmas [steps] the pipeline passes in.</summary>
    public IReadOnlyList<double> SigmasLinspace { get; }
    /// <summary>Shifted sigmas [steps + 1], the last one 0.</summary>
    public float[] Sigmas { get; }
    /// <summary>sigmas × num_train_timesteps [steps] (the scheduler's timesteps).</summary>
    public float[] Timesteps { get; }

    /// <summary>What the pipeline passes to the transformer at step i: timestep / 1000 in float32 (the pipeline's literal 1000).</summary>
    public float TransformerTimestep(int step) => Timesteps[CheckStep(step)] / 1000f;

    /// <summary>sigma[i+1] − sigma[i] (float32; negative).</summary>
    public float Dt(int step) => Sigmas[CheckStep(step) + 1] - Sigmas[step];

    private int CheckStep(int step) =>
        (uint)step < (uint)Steps ? step : throw new ArgumentOutOfRangeException(nameof(step), step, $"step must be in [0, {Steps})");

    /// <summary>
    /// Euler step in place: latents[j] += dt × noisePred[j], rounded like torch (product, then sum; no FMA).
    /// latents, noisePred: [seq × channels] (any layout, same for both).
    /// </summary>
    public void Step(int step, Span<float> latents, ReadOnlySpan<float> noisePred)
    {
        if (latents.Length != noisePred.Length)
            throw new ArgumentException($"FlowMatchEulerScheduler.Step: noisePred has {noisePred.Length} values; expected {latents.Length} like latents");
        float dt = Dt(step);
        // MultiplyAdd is the unfused (x*y)+z, matching torch's two roundings.
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(noisePred, dt, latents, latents);
    }

    /// <summary>
    /// The FLUX.2 empirical mu (diffusers pipeline_flux2.compute_empirical_mu), float64: a line in steps between
    /// fits at 10 and 200 steps, each linear in the image sequence length; above 4300 tokens only the 200-step fit.
    /// </summary>
    public static double ComputeEmpiricalMu(int imageSeqLen, int numSteps)
    {
        const double a1 = 8.73809524e-05, b1 = 1.89833333;
        const double a2 = 0.00016927, b2 = 0.45666666;
        double m200 = a2 * imageSeqLen + b2;
        if (imageSeqLen > 4300) return m200;
        double m10 = a1 * imageSeqLen + b1;
        double a = (m200 - m10) / 190.0;
        double b = m200 - 200.0 * a;
        return a * numSteps + b;
    }

    /// <summary>
    /// diffusers' calculate_shift (FluxPipeline and the pipelines copied from it), float64: mu linear in the image token
    /// count through (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift), extrapolated outside.
    /// </summary>
    public static double CalculateShift(int imageSeqLen, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        double baseLen = config.BaseImageSeqLen, maxLen = config.MaxImageSeqLen, baseShift = config.BaseShift ?? 0.5, maxShift = config.MaxShift ?? 1.15;
        double m = (maxShift - baseShift) / (maxLen - baseLen);
        double b = baseShift - m * baseLen;
        return imageSeqLen * m + b;
    }

    /// <summary>
    /// Packed latent grid (rows, cols) for an image: the pipeline rounds height and width down to multiples of
    /// 2 × vae_scale_factor (16), then each packed token covers 16×16 pixels.
    /// </summary>
    public static (int Rows, int Cols) PackedLatentSize(int width, int height, int vaeScaleFactor = 8)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"image size {width}x{height}: width and height must be positive");
        int multiple = vaeScaleFactor * 2;
        int rows = 2 * (height / multiple) / 2, cols = 2 * (width / multiple) / 2;
        if (rows < 1 || cols < 1)
            throw new ArgumentException($"image size {width}x{height} is smaller than one {multiple}x{multiple} latent patch");
        return (rows, cols);
    }

    /// <summary>image_seq_len = packed rows × cols, e.g. 4096 for 1024×1024.</summary>
    public static int ImageSeqLen(int width, int height, int vaeScaleFactor = 8)
    {
        var (r, c) = PackedLatentSize(width, height, vaeScaleFactor);
        return r * c;
    }

    /// <summary>The schedule Flux2KleinPipeline uses for an image of width × height and <paramref name="steps"/> steps.</summary>
    public static FlowMatchEulerScheduler ForKlein(SchedulerConfig config, int steps, int width, int height, int vaeScaleFactor = 8)
    {
        int seq = ImageSeqLen(width, height, vaeScaleFactor);
        return Create(config, steps, ComputeEmpiricalMu(seq, steps));
    }

    /// <summary>
    /// set_timesteps(sigmas = linspace(1, 1/steps, steps), mu) for <paramref name="config"/>. mu is required with
    /// dynamic shifting. Karras / exponential / beta sigmas, inverted sigmas and stochastic sampling are not supported.
    /// </summary>
    public static FlowMatchEulerScheduler Create(SchedulerConfig config, int steps, double? mu, bool torchLinspace = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (steps < 1) throw new ArgumentException($"steps must be at least 1; got {steps}", nameof(steps));
        if (config.UseKarrasSigmas || config.UseExponentialSigmas || config.UseBetaSigmas || config.InvertSigmas || config.StochasticSampling)
            throw new NotSupportedException("scheduler config: karras / exponential / beta sigmas, invert_sigmas and stochastic_sampling are not supported (FLUX.2 [klein] uses none of them)");
        if (config.UseDynamicShifting && mu is null)
            throw new ArgumentException("mu must be given when the scheduler config sets use_dynamic_shifting", nameof(mu));

        double[] linspace = torchLinspace ? TorchLinspace32(1f, 1f / steps, steps) : Linspace(1.0, 1.0 / steps, steps);
        var sigmas = new float[steps + 1];
        for (int i = 0; i < steps; i++)
        {
            float s = (float)linspace[i];
            sigmas[i] = config.UseDynamicShifting ? TimeShift(config.TimeShiftType, mu!.Value, s) : StaticShift((float)config.Shift, s);
        }
        if (config.ShiftTerminal is double terminal)
        {
            // stretch_shift_to_terminal (float32): 1 − (1 − t) / ((1 − t_last) / (1 − terminal))
            float scale = (1f - sigmas[steps - 1]) / (float)(1.0 - terminal);
            // One step leaves the single σ at 1 and scale 0: diffusers divides 0 by 0 there (every σ NaN, a NaN image);
            // there is nothing to stretch, so the schedule stays [1, 0].
            if (scale != 0)
                for (int i = 0; i < steps; i++) sigmas[i] = 1f - (1f - sigmas[i]) / scale;
        }
        sigmas[steps] = 0f;
        var timesteps = new float[steps];
        for (int i = 0; i < steps; i++) timesteps[i] = sigmas[i] * config.NumTrainTimesteps;
        return new FlowMatchEulerScheduler(steps, config.UseDynamicShifting ? mu : null, linspace, sigmas, timesteps);
    }

    /// <summary>
    /// torch.linspace(start, end, num) in float32 as PyTorch's CPU kernel computes it: step = (end − start)/(num − 1) in
    /// float32; value i = fma(step, i, start) below num/2, fma(−step, num − 1 − i, end) from there (one rounding each).
    /// </summary>
    internal static double[] TorchLinspace32(float start, float end, int num)
    {
        var v = new double[num];
        if (num == 1) { v[0] = start; return v; }
        float step = (end - start) / (num - 1);
        int half = num / 2;
        for (int i = 0; i < num; i++)
            v[i] = i < half ? MathF.FusedMultiplyAdd(step, i, start) : MathF.FusedMultiplyAdd(-step, num - 1 - i, end);
        return v;
    }

    /// <summary>numpy.linspace(start, stop, num) with endpoint: start + i × step, the last value exactly stop.</summary>
    internal static double[] Linspace(double start, double stop, int num)
    {
        var y = new double[num];
        if (num == 1) { y[0] = start; return y; }
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        y[num - 1] = stop;
        return y;
    }

    // numpy float32 array op Python float: the scalar is rounded to float32 first, every op is float32.
    private static float TimeShift(string type, double mu, float t)
    {
        float inv = 1f / t - 1f; // (1/t − 1) ** 1.0
        if (type == "linear")
        {
            float m = (float)mu;
            return m / (m + inv);
        }
        float e = (float)Math.Exp(mu);
        return e / (e + inv);
    }

    private static float StaticShift(float shift, float s) => shift * s / (1f + (shift - 1f) * s);
}
