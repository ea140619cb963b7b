namespace PureFlux.Model.Scheduler;

/// <summary>
/// Host-side timestep/sigma schedules of diffusers' flow-matching schedulers, reproduced in the precision diffusers
/// uses at each stage (numpy float64 or torch float32). The facts (which values are shifted how often, int64
/// truncation, the 1e-6 nudge of a first sigma of 1) follow diffusers' set_timesteps of FlowMatchEulerDiscrete,
/// FlowMatchHeunDiscrete, DPMSolverMultistep and UniPCMultistep (use_flow_sigmas); the code is ours.
/// </summary>
internal static class FlowSchedules
{
    /// <summary>Euler set_timesteps(N[, mu]) without sigmas: (sigmas [N+1], float32 timesteps [N]).</summary>
    public static (float[] Sigmas, double[] Timesteps) EulerPlain(SamplerSettings s, int steps, double? mu)
    {
        if (s.UseDynamicShifting && mu is null)
            throw new ArgumentException("mu must be given when use_dynamic_shifting is set", nameof(mu));
        int T = s.NumTrainTimesteps;
        // The constructor's training sigmas t/T (float32, torch), shifted in float32 unless dynamic shifting is on;
        // set_timesteps then spans [sigma_max, sigma_min] of those.
        double sigmaMax = TrainSigma(s, T), sigmaMin = TrainSigma(s, 1);
        double[] t = FlowMatchEulerScheduler.Linspace(sigmaMax * T, sigmaMin * T, steps);
        var sig = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            double x = t[i] / T;
            sig[i] = s.UseDynamicShifting ? TimeShift(s.TimeShiftType, mu!.Value, x) : StaticShift(s.Shift, x);
        }
        if (s.ShiftTerminal is double term && term != 0) StretchToTerminal(sig, term);
        return ToFloat32(sig, T);
    }

    /// <summary>Heun set_timesteps(N): the Euler-plain static schedule, every inner value repeated
    /// (timesteps [t0, t1, t1, …, t_{N−1}, t_{N−1}], sigmas [s0, s1, s1, …, s_{N−1}, s_{N−1}, 0]).</summary>
    public static (float[] Sigmas, double[] Timesteps) Heun(SamplerSettings s, int steps)
    {
        var (sig, ts) = EulerPlain(s with { UseDynamicShifting = false, ShiftTerminal = null }, steps, null);
        int calls = 2 * steps - 1;
        var sigmas = new float[calls + 1];
        var timesteps = new double[calls];
        sigmas[0] = sig[0];
        timesteps[0] = ts[0];
        for (int j = 1; j < steps; j++)
        {
            sigmas[2 * j - 1] = sigmas[2 * j] = sig[j];
            timesteps[2 * j - 1] = timesteps[2 * j] = ts[j];
        }
        sigmas[calls] = 0f;
        return (sigmas, timesteps);
    }

    /// <summary>
    /// DPMSolverMultistep with use_flow_sigmas: σ = shift(1 − linspace(1, 1/T, N+1)) reversed without its trailing 0
    /// (float64), flow_shift = e^mu when mu is given (diffusers overwrites config.flow_shift with it); timesteps =
    /// int64(σ·T) (truncation of the float64 value); a final σ 0.
    /// </summary>
    public static (float[] Sigmas, double[] Timesteps) DpmFlow(SamplerSettings s, int steps, double? mu)
    {
        int T = s.NumTrainTimesteps;
        double shift = s.Shift;
        if (mu is double m)
        {
            if (!s.UseDynamicShifting || s.TimeShiftType != "exponential")
                throw new ArgumentException("DPM-Solver++ takes mu only with use_dynamic_shifting true and time_shift_type exponential (diffusers asserts this; the klein pipeline always passes mu)", nameof(mu));
            shift = Math.Exp(m);
        }
        double[] alphas = FlowMatchEulerScheduler.Linspace(1.0, 1.0 / T, steps + 1);
        var sig = new double[steps];
        for (int j = 0; j < steps; j++)
        {
            double x = 1.0 - alphas[steps - j];
            sig[j] = shift * x / (1 + (shift - 1) * x);
        }
        return ToFloat32Int(sig, T);
    }

    /// <summary>
    /// UniPCMultistep with use_flow_sigmas: σ = linspace(1, 1/T, N+1) without its last value, shifted (static flow_shift
    /// or the time shift with mu, float64), optionally stretched to shift_terminal, a first σ within 1e-6 of 1 lowered
    /// by 1e-6; timesteps = int64(σ·T); a final σ 0.
    /// </summary>
    public static (float[] Sigmas, double[] Timesteps) UniPCFlow(SamplerSettings s, int steps, double? mu)
    {
        if (s.UseDynamicShifting && mu is null)
            throw new ArgumentException("mu must be given when use_dynamic_shifting is set", nameof(mu));
        int T = s.NumTrainTimesteps;
        double[] lin = FlowMatchEulerScheduler.Linspace(1.0, 1.0 / T, steps + 1);
        var sig = new double[steps];
        for (int j = 0; j < steps; j++)
            sig[j] = s.UseDynamicShifting ? TimeShift(s.TimeShiftType, mu!.Value, lin[j]) : StaticShift(s.Shift, lin[j]);
        if (s.ShiftTerminal is double term && term != 0) StretchToTerminal(sig, term);
        const double eps = 1e-6;
        if (Math.Abs(sig[0] - 1) < eps) sig[0] -= eps;
        return ToFloat32Int(sig, T);
    }

    /// <summary>Training sigma for training timestep t (1..T) as the Euler/Heun constructor makes it (float32).</summary>
    private static float TrainSigma(SamplerSettings s, int t)
    {
        float x = t / (float)s.NumTrainTimesteps;
        if (s.UseDynamicShifting) return x;
        float shift = (float)s.Shift, shiftMinus1 = (float)(s.Shift - 1);
        return shift * x / (1f + shiftMinus1 * x);
    }

    private static double StaticShift(double shift, double x) => shift * x / (1 + (shift - 1) * x);

    /// <summary>diffusers' time_shift(mu, 1.0, t) in float64: exponential e^mu / (e^mu + (1/t − 1)), linear mu / (mu + (1/t − 1)).</summary>
    private static double TimeShift(string type, double mu, double t)
    {
        if (type == "linear") return mu / (mu + (1 / t - 1));
        double e = Math.Exp(mu);
        return e / (e + (1 / t - 1));
    }

    /// <summary>stretch_shift_to_terminal in float64: 1 − (1 − σ) / ((1 − σ_last) / (1 − terminal)).</summary>
    private static void StretchToTerminal(double[] sig, double terminal)
    {
        double scale = (1 - sig[^1]) / (1 - terminal);
        if (scale == 0) return; // a single σ of 1 (one step): nothing to stretch (diffusers' 0 / 0 would make it NaN)
        for (int i = 0; i < sig.Length; i++) sig[i] = 1 - (1 - sig[i]) / scale;
    }

    /// <summary>float32 sigmas + a final 0; timesteps = float32 σ · T in float32.</summary>
    private static (float[], double[]) ToFloat32(double[] sig, int T)
    {
        var sigmas = new float[sig.Length + 1];
        var ts = new double[sig.Length];
        for (int i = 0; i < sig.Length; i++)
        {
            sigmas[i] = (float)sig[i];
            ts[i] = (float)(sigmas[i] * (float)T);
        }
        return (sigmas, ts);
    }

    /// <summary>float32 sigmas + a final 0; timesteps = int64(σ · T) from the float64 σ (truncated toward zero).</summary>
    private static (float[], double[]) ToFloat32Int(double[] sig, int T)
    {
        var sigmas = new float[sig.Length + 1];
        var ts = new double[sig.Length];
        for (int i = 0; i < sig.Length; i++)
        {
            sigmas[i] = (float)sig[i];
            ts[i] = (long)(sig[i] * T);
        }
        return (sigmas, ts);
    }
}
