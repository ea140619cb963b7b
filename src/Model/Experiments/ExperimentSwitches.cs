using System.Globalization;
using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.Scheduler;

namespace PureFlux.Model.Experiments;

/// <summary>What one run of an experiment asks for: the generation, the options the model loads with, and the device's kernel choices.</summary>
public sealed record RunSettings(GenerationJob Job, ModelOptions Options)
{
    public KernelChoices Kernels { get; init; } = new();
}

/// <summary>
/// Kernel choices of the engine-wide switches <c>gemm</c> and <c>attention</c>: every family's linears and attention go
/// through <c>Gemm.Linear</c> and <c>Attention.Forward</c>, which read them from the CPU device.
/// </summary>
public sealed record KernelChoices
{
    public CpuGemmLevel Gemm { get; init; } = CpuGemmLevel.Parallel;
    public CpuAttentionKernel Attention { get; init; } = CpuAttentionKernel.Flash;
    /// <summary>The switch <c>timestep-freq-cache</c> (process-wide: <see cref="TimestepEmbedding.CacheFrequencies"/>; any device).</summary>
    public bool TimestepFrequencyCache { get; init; } = true;
    /// <summary>The switches <c>fused-modulate</c> / <c>fused-swiglu</c> (<see cref="Device.FuseModulate"/>, <see cref="Device.FuseSwiGlu"/>; any device).</summary>
    public bool FusedModulate { get; init; } = true;
    public bool FusedSwiGlu { get; init; } = true;
    public bool CpuKernelsDefault => Gemm == CpuGemmLevel.Parallel && Attention == CpuAttentionKernel.Flash;

    /// <summary>Sets the choices on a freshly opened device; the ILGPU devices have one GEMM and one attention kernel, so a non-default choice there is an error.</summary>
    public void ApplyTo(Device device)
    {
        TimestepEmbedding.CacheFrequencies = TimestepFrequencyCache;
        device.FuseModulate = FusedModulate;
        device.FuseSwiGlu = FusedSwiGlu;
        if (device is CpuDevice cpu) (cpu.GemmLevel, cpu.AttentionKernel) = (Gemm, Attention);
        else if (!CpuKernelsDefault)
            throw new ArgumentException($"switches gemm / attention choose among the cpu device's kernels; {device.Id} has one of each (run the experiment with --device cpu)");
    }
}

/// <summary>
/// An ordered set of switch values, written <c>name=value,name=value</c> (a bare name means <c>on</c>). Names are the
/// ones <see cref="ExperimentSwitches.All"/> defines; a name given twice is an error.
/// </summary>
public sealed record SwitchSet(IReadOnlyList<KeyValuePair<string, string>> Values)
{
    public static SwitchSet Empty { get; } = new([]);

    public override string ToString() => Values.Count == 0 ? "(defaults)" : string.Join(",", Values.Select(v => $"{v.Key}={v.Value}"));

    /// <summary>Parses <c>quant=int8,cfg-batched</c>; every name and value is checked against its definition.</summary>
    public static SwitchSet Parse(string text, string where = "--variant")
    {
        var values = new List<KeyValuePair<string, string>>();
        foreach (var raw in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = raw.IndexOf('=');
            string name = (eq < 0 ? raw : raw[..eq]).Trim().ToLowerInvariant();
            string value = eq < 0 ? "on" : raw[(eq + 1)..].Trim().ToLowerInvariant();
            var def = ExperimentSwitches.Find(name, where);
            if (values.Any(v => v.Key == name)) throw new ArgumentException($"{where} '{text}': switch '{name}' is given twice");
            def.Check(value, where);
            values.Add(new(name, value));
        }
        return new SwitchSet(values);
    }

    /// <summary>This set with <paramref name="over"/>'s values replacing or adding to its own (a variant over the baseline).</summary>
    public SwitchSet With(SwitchSet over)
    {
        var merged = Values.Where(v => over.Values.All(o => o.Key != v.Key)).Concat(over.Values).ToList();
        return new SwitchSet(merged);
    }
}

/// <summary>
/// The optimisation switches of <c>pureflux experiment</c>. Each has one meaning in every family; a switch a family
/// does not honour, or one this build does not have yet, is an error when the experiment starts, never ignored.
/// </summary>
public static class ExperimentSwitches
{
    /// <summary>
    /// One switch: its name, accepted values, what it changes, and how. <see cref="Scope"/> says who must honour it:
    /// the engine (every family), or the family (listed in <see cref="IDiffusionModel.HonouredSwitches"/>).
    /// <see cref="Missing"/> is non-null for a switch the issue defines that this build does not implement yet.
    /// </summary>
    public sealed record Definition(string Name, string ValueHelp, string Description, SwitchScope Scope,
        Func<string, bool> Valid, Func<RunSettings, string, RunSettings> Apply, string? Missing = null)
    {
        public void Check(string value, string where)
        {
            if (Missing is not null) throw new ArgumentException($"{where}: switch '{Name}' is not available in this build ({Missing})");
            if (!Valid(value)) throw new ArgumentException($"{where}: {Name}={value}: expected {ValueHelp}");
        }
    }

    public enum SwitchScope { Engine, Family }

    /// <summary>What a family honours when it declares nothing.</summary>
    public static IReadOnlySet<string> NoFamilySwitches { get; } = new HashSet<string>();

    private static bool OnOff(string v) => v is "on" or "off";
    private static bool IsOn(string v) => v == "on";

    public static IReadOnlyList<Definition> All { get; } =
    [
        new("sampler", string.Join("|", Samplers.Names), "the sampler (fewer steps with a better solver)", SwitchScope.Engine,
            v => Samplers.Names.Contains(v), (s, v) => s with { Job = s.Job with { Sampler = Samplers.Parse(v) } }),
        new("steps", "an integer 1..1000", "denoising steps", SwitchScope.Engine,
            v => int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n is >= 1 and <= 1000,
            (s, v) => s with { Job = s.Job with { Steps = int.Parse(v, CultureInfo.InvariantCulture) } }),
        new("guidance", "a number ≥ 0", "classifier-free guidance scale (> 1 runs the unconditional pass)", SwitchScope.Engine,
            v => float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float g) && float.IsFinite(g) && g >= 0,
            (s, v) => s with { Job = s.Job with { Guidance = float.Parse(v, CultureInfo.InvariantCulture) } }),
        new("cfg-batched", "on|off", "one batch-2B pass per step instead of two batch-B passes (needs guidance)", SwitchScope.Engine,
            OnOff, (s, v) => s with { Job = s.Job with { CfgMode = IsOn(v) ? CfgMode.Batched : CfgMode.Sequential } }),
        new("guidance-interval", "LO..HI with 0 ≤ LO ≤ HI ≤ 1, or off", "run the unconditional pass only at σ in [LO, HI] (skip it at low σ)", SwitchScope.Engine,
            v => v == "off" || ParseInterval(v) is not null,
            (s, v) => s with { Job = s.Job with { GuidanceInterval = v == "off" ? null : ParseInterval(v) } }),
        new("quant", string.Join('|', QuantModes.Names), "weight storage of the linear layers (the transformer's, and the text encoder's where the family quantizes it)", SwitchScope.Engine,
            v => QuantModes.Names.Contains(v),
            (s, v) => s with { Options = s.Options with { Quant = QuantModes.TryParse(v, out var q) ? q : QuantMode.None } }),
        new("rope-cache", "on|off", "RoPE tables computed once per job (on, the engine's behaviour) or on every model call (off)", SwitchScope.Family,
            OnOff, (s, v) => s with { Options = s.Options with { RopeCache = IsOn(v) } }),
        new("timestep-freq-cache", "on|off", "the sinusoidal timestep-embedding frequencies computed once per process (on, the engine's behaviour) or on every call", SwitchScope.Engine,
            OnOff, (s, v) => s with { Kernels = s.Kernels with { TimestepFrequencyCache = IsOn(v) } }),
        new("fused-modulate", "on|off", "the modulated norms (LayerNorm, then (1 + scale)·x + shift; Z-Image's RMSNorm · (1 + scale)) as one kernel (on, the engine's) or the norm and a second pass", SwitchScope.Engine,
            OnOff, (s, v) => s with { Kernels = s.Kernels with { FusedModulate = IsOn(v) } }),
        new("fused-swiglu", "on|off", "SiLU(gate)·up as one kernel (on, the engine's) or SiLU and the product as two (the Qwen3 text encoder's too)", SwitchScope.Family,
            OnOff, (s, v) => s with { Kernels = s.Kernels with { FusedSwiGlu = IsOn(v) } }),
        new("fused-qkv", "on|off", "one GEMM for a block's Q, K and V (klein's double blocks; its single blocks' Q, K, V and MLP input come as one matrix already) instead of three", SwitchScope.Family,
            OnOff, (s, v) => s with { Options = s.Options with { FusedQkv = IsOn(v) } }),
        new("populate-weights", "on|off", "weights used in place on the cpu device mapped into the page tables as they load (on, the engine's) or page-faulted in by the first pass over them", SwitchScope.Family,
            OnOff, (s, v) => s with { Options = s.Options with { PopulateWeights = IsOn(v) } }),
        new("sync-per-block", "on|off", "a host synchronisation after every transformer block instead of only where a step reads back (ILGPU devices)", SwitchScope.Family,
            OnOff, (s, v) => s with { Options = s.Options with { SyncPerBlock = IsOn(v) } }),
        new("tome", "a ratio in [0, 1) or off", "token merging: that share of the generated image tokens averaged into similar ones (by their keys) in the family's chosen blocks (FLUX.2 klein: the single-stream blocks; at most 0.75 with 2×2 destination cells), and copied back after each", SwitchScope.Family,
            v => v == "off" || (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double r) && r >= 0 && r < 1),
            (s, v) => s with { Options = s.Options with { TokenMergeRatio = v == "off" ? null : double.Parse(v, CultureInfo.InvariantCulture) } }),
        new("attention", "flash|materialized", "tiled flash attention (the engine's) or the full score matrix per head through the GEMM (cpu device)", SwitchScope.Engine,
            v => v is "flash" or "materialized",
            (s, v) => s with { Kernels = s.Kernels with { Attention = v == "materialized" ? CpuAttentionKernel.Materialized : CpuAttentionKernel.Flash } }),
        new("gemm", "naive|packed|parallel", "the CPU GEMM kernel-ladder step: scalar loops, the packed AVX-512 kernel on one thread, or on all (the engine's)", SwitchScope.Engine,
            v => v is "naive" or "packed" or "parallel",
            (s, v) => s with { Kernels = s.Kernels with { Gemm = v switch { "naive" => CpuGemmLevel.Naive, "packed" => CpuGemmLevel.Packed, _ => CpuGemmLevel.Parallel } } }),
    ];

    private static Definition Pending(string name, string values, string what) =>
        new(name, values, what, SwitchScope.Family, _ => false, (s, _) => s, "not implemented yet");

    /// <summary>The definition of <paramref name="name"/>, or a one-line error listing the known switches.</summary>
    public static Definition Find(string name, string where = "--variant") =>
        All.FirstOrDefault(d => d.Name == name)
        ?? throw new ArgumentException($"{where}: unknown switch '{name}'; known: {string.Join(", ", All.Select(d => d.Name))}");

    /// <summary>Applies every value of <paramref name="set"/> in order.</summary>
    public static RunSettings Apply(SwitchSet set, RunSettings settings)
    {
        foreach (var (name, value) in set.Values) settings = Find(name).Apply(settings, value);
        return settings;
    }

    /// <summary>
    /// Fails (one line naming the switch and the family) when <paramref name="set"/> holds a family-scoped switch that
    /// <paramref name="model"/> does not honour.
    /// </summary>
    public static void CheckApplicable(SwitchSet set, IDiffusionModel model, string where)
    {
        foreach (var (name, _) in set.Values)
            if (Find(name).Scope == SwitchScope.Family && !model.HonouredSwitches.Contains(name))
                throw new ArgumentException($"{where}: switch '{name}' does not apply to the {model.Family.Name} family (it honours: {(model.HonouredSwitches.Count == 0 ? "none" : string.Join(", ", model.HonouredSwitches))})");
    }

    /// <summary>"0.5..1" (or "0.5,1") → (0.5, 1); null when malformed or outside 0 ≤ LO ≤ HI ≤ 1.</summary>
    public static (float Lo, float Hi)? ParseInterval(string v)
    {
        var parts = v.Split(v.Contains("..") ? ".." : ",");
        if (parts.Length != 2) return null;
        if (!float.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out float lo)
            || !float.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out float hi)) return null;
        return lo >= 0 && hi <= 1 && lo <= hi ? (lo, hi) : null;
    }
}
