namespace PureFlux.Model.Config;

/// <summary>
/// scheduler/scheduler_config.json (diffusers FlowMatchEulerDiscreteScheduler); defaults are diffusers'.
/// klein: shift 3.0, use_dynamic_shifting true, time_shift_type "exponential" (mu from the pipeline).
/// </summary>
public sealed record SchedulerConfig
{
    public string ClassName { get; init; } = "FlowMatchEulerDiscreteScheduler";
    public int NumTrainTimesteps { get; init; } = 1000;
    public double Shift { get; init; } = 1.0;
    public bool UseDynamicShifting { get; init; }
    public double? BaseShift { get; init; } = 0.5;
    public double? MaxShift { get; init; } = 1.15;
    public int BaseImageSeqLen { get; init; } = 256;
    public int MaxImageSeqLen { get; init; } = 4096;
    public bool InvertSigmas { get; init; }
    public double? ShiftTerminal { get; init; }
    public bool UseKarrasSigmas { get; init; }
    public bool UseExponentialSigmas { get; init; }
    public bool UseBetaSigmas { get; init; }
    /// <summary>"exponential" or "linear".</summary>
    public string TimeShiftType { get; init; } = "exponential";
    public bool StochasticSampling { get; init; }

    public static SchedulerConfig Load(string path) => Read(ConfigJson.Load(path));

    public static SchedulerConfig Parse(string json, string path = "scheduler/scheduler_config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static SchedulerConfig Read(ConfigJson j)
    {
        var d = new SchedulerConfig();
        string cls = j.String("_class_name", d.ClassName);
        if (cls != "FlowMatchEulerDiscreteScheduler")
            throw j.Error("_class_name", $"is \"{cls}\"; only FlowMatchEulerDiscreteScheduler is supported");
        var c = new SchedulerConfig
        {
            ClassName = cls,
            NumTrainTimesteps = j.Positive("num_train_timesteps", d.NumTrainTimesteps, max: 1 << 20),
            Shift = j.Number("shift", d.Shift, 0, 1e6, minExclusive: true),
            UseDynamicShifting = j.Bool("use_dynamic_shifting", d.UseDynamicShifting),
            BaseShift = j.DoubleOrExplicitNull("base_shift", d.BaseShift),
            MaxShift = j.DoubleOrExplicitNull("max_shift", d.MaxShift),
            BaseImageSeqLen = j.Positive("base_image_seq_len", d.BaseImageSeqLen, max: 1 << 26),
            MaxImageSeqLen = j.Positive("max_image_seq_len", d.MaxImageSeqLen, max: 1 << 26),
            InvertSigmas = j.Bool("invert_sigmas", d.InvertSigmas),
            ShiftTerminal = j.DoubleOrNull("shift_terminal"),
            UseKarrasSigmas = j.Bool("use_karras_sigmas", false),
            UseExponentialSigmas = j.Bool("use_exponential_sigmas", false),
            UseBetaSigmas = j.Bool("use_beta_sigmas", false),
            TimeShiftType = j.String("time_shift_type", d.TimeShiftType),
            StochasticSampling = j.Bool("stochastic_sampling", false),
        };
        if (c.TimeShiftType is not ("exponential" or "linear"))
            throw j.Error("time_shift_type", $"is \"{c.TimeShiftType}\"; expected \"exponential\" or \"linear\"");
        if ((c.UseKarrasSigmas ? 1 : 0) + (c.UseExponentialSigmas ? 1 : 0) + (c.UseBetaSigmas ? 1 : 0) > 1)
            throw j.Error("use_karras_sigmas", "and use_exponential_sigmas / use_beta_sigmas: only one may be true");
        if (c.BaseShift is < -1e6 or > 1e6) throw j.Error("base_shift", $"is {c.BaseShift}; expected a number in -1e6..1e6");
        if (c.MaxShift is < -1e6 or > 1e6) throw j.Error("max_shift", $"is {c.MaxShift}; expected a number in -1e6..1e6");
        if (c.ShiftTerminal is < 0 or >= 1) throw j.Error("shift_terminal", $"is {c.ShiftTerminal}; expected a number in [0, 1) or null");
        return c;
    }
}
