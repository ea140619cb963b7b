namespace PureFlux.Model.Scheduler;

/// <summary>
/// UniPC (diffusers UniPCMultistepScheduler: predict_x0, bh2, flow_prediction, flow sigmas, no disabled correctors;
/// method: Zhao et al., UniPC, arXiv:2302.04867). Per call k, with α = 1 − σ, λ = log α − log σ (float32):
/// <list type="number">
/// <item>x0_k = x − σ_k·v (from the sample as given, before any correction);</item>
/// <item>k ≥ 1, UniC corrector of the previous step (order = that step's predictor order): x ← (σ_k/σ_{k−1})·x_last
/// − α_k·φ1·x0_{k−1} − α_k·B_h·(Σ ρ_i·D_i + ρ_last·(x0_k − x0_{k−1})), h = λ_k − λ_{k−1}, φ1 = B_h = expm1(−h);
/// ρ = 0.5 at order 1, else the 2×2 solve of diffusers' R ρ = b (float32 LU with partial pivoting);</item>
/// <item>x_last ← x; UniP predictor to σ_{k+1} of order min(solver_order, N − k (lower_order_final), k + 1):
/// x ← (σ_{k+1}/σ_k)·x − α_{k+1}·φ1·x0_k [− α_{k+1}·B_h·0.5·(x0_{k−1} − x0_k)/r_k at order 2].</item>
/// </list>
/// Every tensor operation rounds to float32 in torch's order.
/// </summary>
public sealed class UniPCSampler : SamplerBase
{
    private readonly int _solverOrder;
    private readonly bool _lowerOrderFinal;
    private readonly Tensor?[] _x0 = new Tensor?[3];
    private Tensor? _last, _t1, _t2;
    private int _head;            // _x0[_head] receives this call's x0; (_head+2)%3 holds call k−1's, (_head+1)%3 call k−2's
    private int _lowerOrderNums;
    private int _thisOrder;       // the previous call's predictor order (the corrector's order now)

    internal UniPCSampler(int steps, double[] timesteps, float[] sigmas, int solverOrder, bool lowerOrderFinal)
        : base("unipc", steps, 1, timesteps, sigmas)
    {
        _solverOrder = solverOrder;
        _lowerOrderFinal = lowerOrderFinal;
    }

    /// <summary>The data prediction x0 = x − σ·v of the latest call (from the uncorrected sample); a buffer of this
    /// sampler, valid until the next Step, Reset or Dispose; null before the first call.</summary>
    public Tensor? LastDenoised { get; private set; }

    /// <summary>The sample after the UniC corrector in the latest call (the predictor started from it); null at call 0
    /// and before the first call. A buffer of this sampler, valid until the next Step, Reset or Dispose.</summary>
    public Tensor? LastCorrected { get; private set; }

    private protected override void StepCore(int call, Tensor v, Tensor x)
    {
        var x0 = Buffer(ref _x0[_head], $"x0.{_head}");
        var m0 = _x0[(_head + 2) % 3];   // x0 of call k−1
        var m1 = _x0[(_head + 1) % 3];   // x0 of call k−2
        Elementwise.Combine(1f, x, -S(call), v, x0);
        LastDenoised = x0;
        LastCorrected = null;
        var last = Buffer(ref _last, "last_sample");

        if (call > 0)
        {
            // UniC: corrects the previous predictor's output x (σ_k) from x_last (σ_{k−1}).
            int order = _thisOrder;
            float sigmaT = S(call), sigmaS0 = S(call - 1);
            float alphaT = 1f - sigmaT;
            float lambdaS0 = Lambda(sigmaS0);
            float h = Lambda(sigmaT) - lambdaS0;
            var (hPhi1, bH) = Phi(h);
            var t1 = Buffer(ref _t1, "d1_t");
            Elementwise.Combine(1f, x0, -1f, m0!, t1);               // D1_t = model_t − m0
            if (order == 1)
            {
                Elementwise.Scale(t1, 0.5f, t1);                      // ρ = 0.5
            }
            else
            {
                float rk = (Lambda(S(call - 2)) - lambdaS0) / h;
                var (rho0, rho1) = SolveRho(rk, h, hPhi1, bH);
                var t2 = Buffer(ref _t2, "d1");
                Elementwise.Combine(1f, m1!, -1f, m0!, t2);
                Elementwise.Divide(t2, rk, t2);                       // D1 = (m1 − m0) / r_k
                Elementwise.Combine(rho0, t2, rho1, t1, t1);          // Σ ρ_i D_i + ρ_last D1_t
            }
            Elementwise.Combine(sigmaT / sigmaS0, last, -(alphaT * hPhi1), m0!, x);
            Elementwise.Combine(1f, x, -(alphaT * bH), t1, x);
            LastCorrected = last;                                     // filled with x just below
        }

        int thisOrder = _lowerOrderFinal ? Math.Min(_solverOrder, Calls - call) : _solverOrder;
        thisOrder = Math.Min(thisOrder, _lowerOrderNums + 1);
        _thisOrder = thisOrder;
        x.CopyTo(last);

        // UniP to σ_{k+1}; x0 of this call is now "m0".
        {
            float sigmaT = S(call + 1), sigmaS0 = S(call);
            float alphaT = 1f - sigmaT;
            float lambdaS0 = Lambda(sigmaS0);
            float h = Lambda(sigmaT) - lambdaS0;
            var (hPhi1, bH) = Phi(h);
            if (thisOrder == 1)
            {
                Elementwise.Combine(sigmaT / sigmaS0, x, -(alphaT * hPhi1), x0, x);
            }
            else
            {
                float rk = (Lambda(S(call - 1)) - lambdaS0) / h;
                var t2 = Buffer(ref _t2, "d1");
                Elementwise.Combine(1f, m0!, -1f, x0, t2);
                Elementwise.Divide(t2, rk, t2);
                Elementwise.Scale(t2, 0.5f, t2);                      // ρ_p = 0.5 at order 2
                Elementwise.Combine(sigmaT / sigmaS0, x, -(alphaT * hPhi1), x0, x);
                Elementwise.Combine(1f, x, -(alphaT * bH), t2, x);
            }
        }
        if (_lowerOrderNums < _solverOrder) _lowerOrderNums++;
        _head = (_head + 1) % 3;
    }

    /// <summary>hh = −h (predict_x0): h·φ1 = expm1(hh) and, for bh2, B(h) = expm1(hh) (float32).</summary>
    private static (float HPhi1, float BH) Phi(float h)
    {
        float e = Expm1(-h);
        return (e, e);
    }

    /// <summary>
    /// Order-2 corrector weights: R = [[1, 1], [r_k, 1]], b = [φ_2/B_h, 2φ_3/B_h] with φ_2 = φ1/hh − 1,
    /// φ_3 = φ_2/hh − 1/2 (float32), solved like LAPACK getrf/getrs (partial pivoting, multiplier by reciprocal).
    /// </summary>
    private static (float, float) SolveRho(float rk, float h, float hPhi1, float bH)
    {
        float hh = -h;
        float phiK = hPhi1 / hh - 1f;
        float b0 = phiK * 1f / bH;
        phiK = phiK / hh - 0.5f;
        float b1 = phiK * 2f / bH;
        // rows (a00 a01 | y0), (a10 a11 | y1)
        float a00 = 1f, a01 = 1f, a10 = rk, a11 = 1f, y0 = b0, y1 = b1;
        if (MathF.Abs(a10) > MathF.Abs(a00))
        {
            (a00, a10) = (a10, a00);
            (a01, a11) = (a11, a01);
            (y0, y1) = (y1, y0);
        }
        float l = a10 * (1f / a00);
        float u11 = a11 - l * a01;
        y1 -= l * y0;
        float r1 = y1 / u11;
        float r0 = (y0 - a01 * r1) / a00;
        return (r0, r1);
    }

    private protected override void ResetCore()
    {
        _head = 0;
        _lowerOrderNums = 0;
        _thisOrder = 0;
        LastDenoised = LastCorrected = null;
    }

    private protected override void ForgetBuffers()
    {
        Array.Clear(_x0);
        _last = _t1 = _t2 = null;
    }

    private protected override SamplerBase WithSchedule(int steps, double[] timesteps, float[] sigmas) =>
        new UniPCSampler(steps, timesteps, sigmas, _solverOrder, _lowerOrderFinal);
}
