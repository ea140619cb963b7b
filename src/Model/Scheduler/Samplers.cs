using PureFlux.Model.Config;

namespace PureFlux.Model.Scheduler;

/// <summary>Creates samplers by kind and parses sampler names.</summary>
public static class Samplers
{
    /// <summary>The accepted names, in <see cref="SamplerKind"/> order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["euler", "dpm++2m", "unipc", "heun"];

    /// <summary>"euler" | "dpm++2m" | "unipc" | "heun" (case-insensitive, surrounding spaces ignored).</summary>
    public static SamplerKind Parse(string name)
    {
        string n = (name ?? "").Trim().ToLowerInvariant();
        int i = Names.ToList().IndexOf(n);
        if (i < 0) throw new ArgumentException($"unknown sampler \"{name}\"; expected one of: {string.Join(", ", Names)}", nameof(name));
        return (SamplerKind)i;
    }

    /// <summary>The name <see cref="Parse"/> accepts for <paramref name="kind"/>.</summary>
    public static string NameOf(SamplerKind kind) =>
        (uint)kind < (uint)Names.Count ? Names[(int)kind] : throw new ArgumentOutOfRangeException(nameof(kind), kind, null);

    /// <summary>
    /// A sampler for <paramref name="steps"/> steps: diffusers' set_timesteps(N[, mu]) for the settings' scheduler
    /// (Euler with <see cref="EulerSigmasMode.Klein"/>: the klein pipeline's custom sigmas). mu is required with
    /// dynamic shifting (Euler, UniPC); DPM-Solver++ accepts mu only with dynamic shifting (e^mu replaces flow_shift)
    /// and otherwise uses flow_shift; Heun ignores mu (static shift only, as diffusers).
    /// </summary>
    public static ISampler Create(SamplerSettings settings, int steps, double? mu)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var s = settings;
        if (steps < 1) throw new ArgumentException($"steps must be at least 1; got {steps}", nameof(steps));
        if (s.NumTrainTimesteps < 1) throw new ArgumentException($"num_train_timesteps must be positive; got {s.NumTrainTimesteps}", nameof(settings));
        if (!(s.Shift > 0)) throw new ArgumentException($"shift must be positive; got {s.Shift}", nameof(settings));
        if (s.TimeShiftType is not ("exponential" or "linear"))
            throw new ArgumentException($"time_shift_type \"{s.TimeShiftType}\": expected \"exponential\" or \"linear\"", nameof(settings));
        switch (s.Kind)
        {
            case SamplerKind.Euler:
            {
                if (s.EulerSigmas is EulerSigmasMode.Klein or EulerSigmasMode.TorchFloat32Linspace)
                {
                    var e = FlowMatchEulerScheduler.Create(s.ToEulerConfig(), steps, mu, torchLinspace: s.EulerSigmas == EulerSigmasMode.TorchFloat32Linspace);
                    return new EulerSampler(steps, [.. e.Timesteps.Select(t => (double)t)], e.Sigmas);
                }
                var (sig, ts) = FlowSchedules.EulerPlain(s, steps, mu);
                return new EulerSampler(steps, ts, sig);
            }
            case SamplerKind.Heun:
            {
                if (s.UseDynamicShifting || s.ShiftTerminal is not null)
                    throw new NotSupportedException("heun: diffusers' FlowMatchHeunDiscreteScheduler has only a static shift (no dynamic shifting, no shift_terminal)");
                var (sig, ts) = FlowSchedules.Heun(s, steps);
                return new HeunSampler(steps, ts, sig);
            }
            case SamplerKind.DpmPP2M:
            {
                CheckMultistep(s, "dpm++2m");
                if (s.ShiftTerminal is not null)
                    throw new NotSupportedException("dpm++2m: shift_terminal is not supported (DPMSolverMultistepScheduler has none)");
                var (sig, ts) = FlowSchedules.DpmFlow(s, steps, mu);
                return new DpmSolverMultistepSampler(steps, ts, sig, s.SolverOrder);
            }
            case SamplerKind.UniPC:
            {
                CheckMultistep(s, "unipc");
                var (sig, ts) = FlowSchedules.UniPCFlow(s, steps, mu);
                return new UniPCSampler(steps, ts, sig, s.SolverOrder, s.LowerOrderFinal);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(settings), s.Kind, "unknown sampler kind");
        }
    }

    /// <summary>
    /// The sampler the klein pipeline would run with <paramref name="kind"/> for an image of width × height:
    /// <see cref="SamplerSettings.ForKlein(SchedulerConfig, SamplerKind)"/> and mu = compute_empirical_mu(image_seq_len, steps).
    /// </summary>
    public static ISampler ForKlein(SchedulerConfig config, SamplerKind kind, int steps, int width, int height, int vaeScaleFactor = 8)
    {
        double mu = FlowMatchEulerScheduler.ComputeEmpiricalMu(FlowMatchEulerScheduler.ImageSeqLen(width, height, vaeScaleFactor), steps);
        return Create(SamplerSettings.ForKlein(config, kind), steps, kind == SamplerKind.Heun ? null : mu);
    }

    private static void CheckMultistep(SamplerSettings s, string name)
    {
        if (s.SolverOrder is not (1 or 2))
            throw new NotSupportedException($"{name}: solver_order {s.SolverOrder} is not supported (1 or 2)");
        if (s.FinalSigmasType != "zero")
            throw new NotSupportedException($"{name}: final_sigmas_type \"{s.FinalSigmasType}\" is not supported (only \"zero\")");
    }
}
