namespace PureFlux.Model.Scheduler;

/// <summary>
/// FlowMatchEulerDiscrete: x ← x + (σ_{k+1} − σ_k)·v in float32 (product rounded, then the sum), stateless.
/// Klein sigmas come from <see cref="FlowMatchEulerScheduler"/>; plain set_timesteps(N) from <see cref="FlowSchedules"/>.
/// </summary>
public sealed class EulerSampler : SamplerBase
{
    internal EulerSampler(int steps, double[] timesteps, float[] sigmas) : base("euler", steps, 1, timesteps, sigmas) { }

    private protected override void StepCore(int call, Tensor v, Tensor x)
    {
        float dt = S(call + 1) - S(call);
        Elementwise.Combine(1f, x, dt, v, x);
    }

    private protected override void ResetCore() { }
    private protected override void ForgetBuffers() { }
    private protected override SamplerBase WithSchedule(int steps, double[] timesteps, float[] sigmas) => new EulerSampler(steps, timesteps, sigmas);
}

/// <summary>
/// FlowMatchHeunDiscrete (diffusers), 2N − 1 calls. Even calls (first order): derivative d = (x − (x − σ·v)) / σ,
/// saved with x and dt = σ_next − σ, x ← x + d·dt. Odd calls (second order, at the predicted point):
/// d' = (x − (x − σ_next·v)) / σ_next, x ← x_saved + (0.5·(d + d'))·dt. The last call is a plain Euler step to 0.
/// Every operation rounds to float32 in torch's order (products, true divisions).
/// </summary>
public sealed class HeunSampler : SamplerBase
{
    private Tensor? _saved, _derivative, _tmp;
    private float? _dt;

    internal HeunSampler(int steps, double[] timesteps, float[] sigmas) : base("heun", steps, 2, timesteps, sigmas) { }

    /// <summary>Calls 2j (predictor) and 2j + 1 (corrector) belong to step j; the last step has one call.</summary>
    public override int StepOf(int call) => base.StepOf(call) / 2;

    private protected override void StepCore(int call, Tensor v, Tensor x)
    {
        var tmp = Buffer(ref _tmp, "tmp");
        if (_dt is null)
        {
            float sigma = S(call), sigmaNext = S(call + 1);
            var d = Buffer(ref _derivative, "derivative");
            Elementwise.Combine(1f, x, -sigma, v, tmp);   // denoised = x − v·σ
            Elementwise.Combine(1f, x, -1f, tmp, tmp);    // x − denoised
            Elementwise.Divide(tmp, sigma, d);            // / σ_hat (= σ: no churn)
            float dt = sigmaNext - sigma;
            x.CopyTo(Buffer(ref _saved, "saved"));
            _dt = dt;
            Elementwise.Combine(1f, x, dt, d, x);
        }
        else
        {
            float sigmaNext = S(call), dt = _dt.Value;
            Elementwise.Combine(1f, x, -sigmaNext, v, tmp);
            Elementwise.Combine(1f, x, -1f, tmp, tmp);
            Elementwise.Divide(tmp, sigmaNext, tmp);
            Elementwise.Combine(1f, _derivative!, 1f, tmp, tmp);
            Elementwise.Scale(tmp, 0.5f, tmp);
            Elementwise.Combine(1f, _saved!, dt, tmp, x);
            _dt = null;
        }
    }

    private protected override void ResetCore() => _dt = null;
    private protected override void ForgetBuffers() => _saved = _derivative = _tmp = null;
    private protected override SamplerBase WithSchedule(int steps, double[] timesteps, float[] sigmas) => new HeunSampler(steps, timesteps, sigmas);
}
