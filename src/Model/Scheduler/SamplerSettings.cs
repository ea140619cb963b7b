using PureFlux.Model.Config;

namespace PureFlux.Model.Scheduler;

/// <summary>The sampler families: diffusers' FlowMatchEulerDiscrete, DPMSolverMultistep (DPM-Solver++ 2M),
/// UniPCMultistep (bh2) and FlowMatchHeunDiscrete.</summary>
public enum SamplerKind { Euler, DpmPP2M, UniPC, Heun }

/// <summary>How the Euler sampler gets its sigmas.</summary>
public enum EulerSigmasMode
{
    /// <summary>Flux2KleinPipeline: custom sigmas linspace(1, 1/N, N) (float32) shifted, mu passed along
    /// (what <see cref="FlowMatchEulerScheduler"/> does).</summary>
    Klein,
    /// <summary>set_timesteps(N) without sigmas: linspace(σ_max, σ_min) of the (already shifted) training sigmas,
    /// shifted again (float64).</summary>
    Plain,
    /// <summary>ZImagePipeline: custom sigmas torch.linspace(1, 1/N, N) in float32 — PyTorch's CPU kernel computes
    /// start + step·i below the midpoint and end − step·(N−1−i) from it, each as one fused multiply-add (28 and 50 steps
    /// differ from numpy's float64 linspace in 8–9 values) — then shifted as <see cref="Klein"/>.</summary>
    TorchFloat32Linspace,
}

/// <summary>
/// A sampler and its scheduler config, in diffusers' terms. Only the keys that change the flow-matching path are kept;
/// everything else is the diffusers class default (DPM: algorithm dpmsolver++, solver midpoint, flow_prediction,
/// use_flow_sigmas; UniPC: predict_x0, bh2, flow_prediction, use_flow_sigmas, no disabled correctors).
/// </summary>
public sealed record SamplerSettings
{
    public SamplerKind Kind { get; init; } = SamplerKind.Euler;
    public int NumTrainTimesteps { get; init; } = 1000;
    /// <summary>Euler/Heun <c>shift</c>, DPM/UniPC <c>flow_shift</c> (the static shift).</summary>
    public double Shift { get; init; } = 1.0;
    /// <summary>Shift by mu (passed to <see cref="Samplers.Create"/>) instead of <see cref="Shift"/>. Not for Heun.</summary>
    public bool UseDynamicShifting { get; init; }
    /// <summary>"exponential" or "linear" (DPM supports only exponential: its mu sets flow_shift = e^mu).</summary>
    public string TimeShiftType { get; init; } = "exponential";
    /// <summary>Euler and UniPC: stretch the schedule so its last non-zero sigma is this value.</summary>
    public double? ShiftTerminal { get; init; }
    /// <summary>DPM/UniPC: 1 or 2.</summary>
    public int SolverOrder { get; init; } = 2;
    /// <summary>DPM/UniPC: lower the order on the final steps.</summary>
    public bool LowerOrderFinal { get; init; } = true;
    /// <summary>DPM/UniPC: only "zero" (the final sigma appended is 0).</summary>
    public string FinalSigmasType { get; init; } = "zero";
    /// <summary>Euler only.</summary>
    public EulerSigmasMode EulerSigmas { get; init; } = EulerSigmasMode.Klein;

    /// <summary>The model's own FlowMatchEulerDiscrete scheduler config, driven as Flux2KleinPipeline does (klein sigmas).</summary>
    public static SamplerSettings FromSchedulerConfig(SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.UseKarrasSigmas || config.UseExponentialSigmas || config.UseBetaSigmas || config.InvertSigmas || config.StochasticSampling)
            throw new NotSupportedException("scheduler config: karras / exponential / beta sigmas, invert_sigmas and stochastic_sampling are not supported");
        return new SamplerSettings
        {
            Kind = SamplerKind.Euler,
            NumTrainTimesteps = config.NumTrainTimesteps,
            Shift = config.Shift,
            UseDynamicShifting = config.UseDynamicShifting,
            TimeShiftType = config.TimeShiftType,
            ShiftTerminal = config.ShiftTerminal,
            EulerSigmas = EulerSigmasMode.Klein,
        };
    }

    /// <summary>
    /// The settings the klein pipeline uses with <paramref name="kind"/>, built from the model's scheduler config:
    /// Euler = the config itself (klein sigmas); DPM-Solver++ 2M / UniPC = flow sigmas with flow_shift = shift,
    /// use_dynamic_shifting true and exponential time shift (the pipeline passes mu and no sigmas, as in the golden
    /// cases dpmpp2m_flow_dynamic / unipc_flow_dynamic), order 2, lower-order final, final sigma 0;
    /// Heun = static shift from the config (diffusers' Heun takes no mu).
    /// </summary>
    public static SamplerSettings ForKlein(SchedulerConfig config, SamplerKind kind)
    {
        ArgumentNullException.ThrowIfNull(config);
        return kind switch
        {
            SamplerKind.Euler => FromSchedulerConfig(config),
            SamplerKind.DpmPP2M or SamplerKind.UniPC => new SamplerSettings
            {
                Kind = kind,
                NumTrainTimesteps = config.NumTrainTimesteps,
                Shift = config.Shift,
                UseDynamicShifting = true,
                TimeShiftType = "exponential",
                SolverOrder = 2,
                LowerOrderFinal = true,
                FinalSigmasType = "zero",
            },
            SamplerKind.Heun => new SamplerSettings { Kind = kind, NumTrainTimesteps = config.NumTrainTimesteps, Shift = config.Shift },
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
        };
    }

    /// <summary><see cref="ForKlein(SchedulerConfig, SamplerKind)"/> with a sampler name (see <see cref="Samplers.Parse"/>).</summary>
    public static SamplerSettings ForKlein(SchedulerConfig config, string sampler) => ForKlein(config, Samplers.Parse(sampler));

    /// <summary>The equivalent diffusers FlowMatchEulerDiscreteScheduler config (Euler only).</summary>
    internal SchedulerConfig ToEulerConfig() => new()
    {
        NumTrainTimesteps = NumTrainTimesteps,
        Shift = Shift,
        UseDynamicShifting = UseDynamicShifting,
        TimeShiftType = TimeShiftType,
        ShiftTerminal = ShiftTerminal,
    };
}
