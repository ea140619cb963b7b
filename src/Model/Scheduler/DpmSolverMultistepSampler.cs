namespace PureFlux.Model.Scheduler;

/// <summary>
/// DPM-Solver++ 2M (diffusers DPMSolverMultistepScheduler: dpmsolver++, midpoint, flow_prediction, flow sigmas).
/// Per call k, with α = 1 − σ, λ = log α − log σ (float32), h = λ_{k+1} − λ_k:
/// x0_k = x − σ_k·v;  first order (step 0, the last step, order 1):
/// x ← (σ_{k+1}/σ_k)·x − α_{k+1}(e^{−h} − 1)·x0_k;  second order adds − 0.5·α_{k+1}(e^{−h} − 1)·D1,
/// D1 = (1/r0)·(x0_k − x0_{k−1}), r0 = (λ_k − λ_{k−1}) / h. Scalars in float32, tensors rounded as torch does
/// (method: Lu et al., DPM-Solver++, arXiv:2211.01095; schedule and order rules as diffusers).
/// </summary>
public sealed class DpmSolverMultistepSampler : SamplerBase
{
    private readonly int _solverOrder;
    private Tensor? _x0A, _x0B, _tmp;
    private bool _currentIsA = true;
    private int _lowerOrderNums;

    internal DpmSolverMultistepSampler(int steps, double[] timesteps, float[] sigmas, int solverOrder)
        : base("dpm++2m", steps, 1, timesteps, sigmas)
    {
        _solverOrder = solverOrder;
    }

    /// <summary>The data prediction x0 = x − σ·v of the latest call (a device buffer of this sampler, valid until the
    /// next Step, Reset or Dispose); null before the first call.</summary>
    public Tensor? LastDenoised { get; private set; }

    private protected override void StepCore(int call, Tensor v, Tensor x)
    {
        // Two x0 buffers alternate: the current call's and the previous one's.
        var cur = _currentIsA ? Buffer(ref _x0A, "x0.a") : Buffer(ref _x0B, "x0.b");
        var prev = _currentIsA ? _x0B : _x0A;
        float sigmaS = S(call), sigmaT = S(call + 1);
        Elementwise.Combine(1f, x, -sigmaS, v, cur);
        LastDenoised = cur;

        // final_sigmas_type "zero": the last step is always first order, whatever lower_order_final says (that flag
        // only matters for order 3, which is not supported).
        bool last = call == Calls - 1;
        float alphaT = 1f - sigmaT;
        float lambdaT = Lambda(sigmaT), lambdaS0 = Lambda(sigmaS);
        float h = lambdaT - lambdaS0;
        float a = sigmaT / sigmaS;
        float c = alphaT * (MathF.Exp(-h) - 1f);
        if (_solverOrder == 1 || _lowerOrderNums < 1 || last || prev is null)
        {
            Elementwise.Combine(a, x, -c, cur, x);
        }
        else
        {
            float lambdaS1 = Lambda(S(call - 1));
            float h0 = lambdaS0 - lambdaS1;
            float r0 = h0 / h;
            var d1 = Buffer(ref _tmp, "d1");
            Elementwise.Combine(1f, cur, -1f, prev, d1);
            Elementwise.Scale(d1, 1f / r0, d1);
            Elementwise.Combine(a, x, -c, cur, x);
            Elementwise.Combine(1f, x, -(0.5f * c), d1, x);
        }
        if (_lowerOrderNums < _solverOrder) _lowerOrderNums++;
        _currentIsA = !_currentIsA;
    }

    private protected override void ResetCore()
    {
        _lowerOrderNums = 0;
        _currentIsA = true;
        LastDenoised = null;
    }

    private protected override void ForgetBuffers() => _x0A = _x0B = _tmp = null;

    private protected override SamplerBase WithSchedule(int steps, double[] timesteps, float[] sigmas) =>
        new DpmSolverMultistepSampler(steps, timesteps, sigmas, _solverOrder);
}
