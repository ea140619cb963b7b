using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using PureFlux.Model.Bench;
using PureFlux.Model.Engine;

namespace PureFlux.Model.Experiments;

/// <summary>A named switch set measured against the baseline (its switches apply on top of the baseline's).</summary>
public sealed record ExperimentVariant(string Name, SwitchSet Switches);

/// <summary>
/// What to measure: the job (model, size, seed, prompt as generate takes them), the baseline's switches, the variants,
/// how many alternated repetitions, and whether every variant runs once small first (JIT tiering, first-touch faults,
/// and switch applicability checked before the long runs).
/// </summary>
public sealed record ExperimentPlan(GenerationJob Job, SwitchSet Baseline, IReadOnlyList<ExperimentVariant> Variants, int Repetitions = 3)
{
    public bool Warmup { get; init; } = true;
    public string DeviceSpec { get; init; } = "cpu";
    public ModelOptions Options { get; init; } = new();
    public ulong BootstrapSeed { get; init; } = 1;
    /// <summary>When set, each arm's image of repetition 0 is saved there as NAME.png (looked at side by side with the
    /// quality columns, e.g. token merging's pictures per ratio).</summary>
    public string? ImageDirectory { get; init; }

    public const string BaselineName = "baseline";

    /// <summary>Baseline first, then the variants; each with its effective switches (the variant's over the baseline's).</summary>
    public IReadOnlyList<ExperimentVariant> Arms =>
        [new(BaselineName, Baseline), .. Variants.Select(v => v with { Switches = Baseline.With(v.Switches) })];

    /// <summary>One-line errors for what can be checked before any model work.</summary>
    public void Validate()
    {
        if (Repetitions is < 1 or > 1000) throw new ArgumentException($"--reps {Repetitions}: expected 1..1000 repetitions");
        if (Variants.Count == 0) throw new ArgumentException("--variant: give at least one variant to compare with the baseline");
        var names = new HashSet<string>(StringComparer.Ordinal) { BaselineName };
        foreach (var v in Variants)
        {
            if (string.IsNullOrWhiteSpace(v.Name)) throw new ArgumentException("--variant: a variant has an empty name");
            if (!names.Add(v.Name)) throw new ArgumentException($"--variant: the name '{v.Name}' is used twice (or is 'baseline')");
        }
        foreach (var arm in Arms)
        {
            var s = ExperimentSwitches.Apply(arm.Switches, new RunSettings(Job, Options));
            s.Job.Validate();
            if (s.Options.SyncPerBlock && DeviceSpec.StartsWith("cpu", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"variant '{arm.Name}': sync-per-block applies to ILGPU devices; the cpu device's operators finish before they return (use --device ilgpu-cpu, opencl or cuda)");
            if (!s.Kernels.CpuKernelsDefault && !DeviceSpec.StartsWith("cpu", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"variant '{arm.Name}': switches gemm / attention choose among the cpu device's kernels; --device {DeviceSpec} has one of each");
        }
    }
}

/// <summary>One stage's time in one run.</summary>
public sealed record StageTime(string Stage, double Seconds);

/// <summary>One measured run: which arm, which repetition, its place in the run order, stage times, total, peak RSS.</summary>
public sealed record ExperimentRun(string Variant, int Repetition, int Order, StageTime[] Stages, double TotalSeconds, long PeakRssBytes, bool PeakRssPerRun);

/// <summary>A stage's spread over an arm's runs.</summary>
public sealed record StageSpread(string Stage, Spread Seconds);

/// <summary>
/// An arm compared with the baseline's first run (same job): latent error after each step (when both ran the same number
/// of steps), of the final latents, and of the image (8-bit PSNR, max |Δ| of the float image).
/// </summary>
public sealed record ArmQuality(TensorError[] Steps, TensorError FinalLatents, double ImagePsnrDb, double ImageMaxAbs);

/// <summary>One arm's summary: its switches, time spreads, ratio to the baseline (null for the baseline), peak RSS, quality.</summary>
public sealed record ArmSummary(string Name, string Switches, Spread Total, StageSpread[] Stages, RatioInterval? Ratio, long PeakRssBytes, ArmQuality? Quality);

/// <summary>Everything <c>pureflux experiment</c> measured; its JSON is what notebooks/experiment_plot.cs reads.</summary>
public sealed record ExperimentReport(
    string Model, string Family, string Device, string DeviceName, string Machine, string Command, DateTimeOffset When,
    int Width, int Height, ulong Seed, string Prompt, int Repetitions, string Order, ExperimentRun[] Runs, ArmSummary[] Arms)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // PSNR of identical images is +∞
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static ExperimentReport FromJson(string json) =>
        JsonSerializer.Deserialize<ExperimentReport>(json, Json) ?? throw new ArgumentException("experiment JSON is empty (null)");
}

/// <summary>What one run returns to the harness: stage times, peak RSS and (when asked) the per-step latents and the image.</summary>
public sealed record RunOutcome(StageTime[] Stages, double TotalSeconds, long PeakRssBytes, bool PeakRssPerRun,
    IReadOnlyList<float[]>? StepLatents = null, float[]? Image = null, byte[]? Rgb = null)
{
    /// <summary>The device the run opened (<see cref="Device.Id"/>, <see cref="Device.Name"/>), for the report.</summary>
    public string DeviceId { get; init; } = "";
    public string DeviceName { get; init; } = "";
}

/// <summary>
/// Where an experiment's runs happen: <see cref="InProcessRunner"/> here, or elsewhere (the command line's
/// <c>--fresh-process</c>: a child process per run). Either way the run itself is <see cref="Experiment.RunOne"/>.
/// </summary>
public interface IExperimentRunner
{
    /// <summary>How the report's Order names where the runs ran: "one process", "a fresh process per run".</summary>
    string Where { get; }

    /// <summary>One run of <paramref name="arm"/> (<paramref name="warmup"/>: the small warm-up job instead); <paramref name="capture"/> keeps the step latents and the image.</summary>
    RunOutcome Run(ExperimentVariant arm, RunSettings settings, bool capture, bool warmup);
}

/// <summary>Every run in this process, one after another, each on a freshly opened device and model.</summary>
public sealed class InProcessRunner(string modelDir, string deviceSpec, RunProgress? progress = null) : IExperimentRunner
{
    public string Where => "one process";

    public RunOutcome Run(ExperimentVariant arm, RunSettings settings, bool capture, bool warmup) =>
        Experiment.RunOne(modelDir, deviceSpec, arm, settings, capture, warmup, progress);
}

/// <summary>
/// The A/B harness: runs the baseline and every variant alternately (A B C A B C …, <see cref="ExperimentPlan.Repetitions"/>
/// rounds) so slow drifts of a shared machine fall on every arm alike, then summarises per arm (median/min/max per stage
/// and in total, the paired ratio to the baseline with its bootstrap interval, peak RSS) and compares each arm's output
/// with the baseline's. The run itself is a delegate: <see cref="RunOne"/> runs the one generation loop (in this process or in
/// a child, <see cref="IExperimentRunner"/>); tests pass their own.
/// </summary>
public static class Experiment
{
    /// <summary>The run order: (arm, repetition) for repetition 0..reps−1, arms 0..arms−1 within each.</summary>
    public static IReadOnlyList<(int Arm, int Repetition)> Schedule(int arms, int repetitions)
    {
        var order = new List<(int, int)>(arms * repetitions);
        for (int r = 0; r < repetitions; r++)
            for (int a = 0; a < arms; a++) order.Add((a, r));
        return order;
    }

    /// <summary>
    /// Runs <paramref name="plan"/> with <paramref name="runOne"/>(arm, settings, capture): warm-up (if asked: every arm
    /// once, small), then the alternated schedule; repetition 0 of every arm captures its output for the quality columns.
    /// </summary>
    public static (ExperimentRun[] Runs, ArmSummary[] Arms) Measure(ExperimentPlan plan, Func<ExperimentVariant, RunSettings, bool, RunOutcome> runOne,
        Action<ExperimentVariant, RunSettings>? warmup = null, RunProgress? progress = null, Action<ExperimentVariant, RunOutcome>? captured = null)
    {
        var log = progress?.Log;
        plan.Validate();
        var arms = plan.Arms;
        var settings = arms.Select(a => ExperimentSwitches.Apply(a.Switches, new RunSettings(plan.Job, plan.Options))).ToArray();
        if (plan.Warmup && warmup is not null)
            for (int a = 0; a < arms.Count; a++)
            {
                log?.Invoke($"warm-up {arms[a].Name} ({arms[a].Switches})");
                progress?.RunStarted?.Invoke(new RunStart($"warm-up {arms[a].Name}", a, arms.Count, Warmup: true));
                warmup(arms[a], settings[a]);
            }

        var runs = new List<ExperimentRun>();
        var captures = new RunOutcome?[arms.Count];
        var schedule = Schedule(arms.Count, plan.Repetitions);
        for (int i = 0; i < schedule.Count; i++)
        {
            var (a, r) = schedule[i];
            log?.Invoke($"run {i + 1}/{schedule.Count}: {arms[a].Name} (repetition {r + 1})");
            progress?.RunStarted?.Invoke(new RunStart($"{arms[a].Name} (repetition {r + 1})", i, schedule.Count, Warmup: false));
            var outcome = runOne(arms[a], settings[a], r == 0);
            if (r == 0)
            {
                captures[a] = outcome;
                captured?.Invoke(arms[a], outcome);
            }
            runs.Add(new ExperimentRun(arms[a].Name, r, i, outcome.Stages, outcome.TotalSeconds, outcome.PeakRssBytes, outcome.PeakRssPerRun));
            log?.Invoke($"  {arms[a].Name}: {outcome.TotalSeconds:0.00} s");
        }

        var baseTotals = Totals(runs, ExperimentPlan.BaselineName);
        var summaries = arms.Select((arm, a) =>
        {
            var mine = runs.Where(x => x.Variant == arm.Name).OrderBy(x => x.Repetition).ToArray();
            var stageNames = mine.SelectMany(x => x.Stages.Select(s => s.Stage)).Distinct().ToArray();
            var stages = stageNames.Select(n => new StageSpread(n, Spread.Of(mine.SelectMany(x => x.Stages.Where(s => s.Stage == n).Select(s => s.Seconds)).ToArray()))).ToArray();
            var ratio = a == 0 ? null : ExperimentStats.PairedRatio(baseTotals, Totals(runs, arm.Name), plan.BootstrapSeed);
            return new ArmSummary(arm.Name, arm.Switches.ToString(), Spread.Of(mine.Select(x => x.TotalSeconds).ToArray()), stages, ratio,
                mine.Max(x => x.PeakRssBytes), a == 0 ? null : Compare(captures[0], captures[a]));
        }).ToArray();
        return (runs.ToArray(), summaries);
    }

    private static double[] Totals(List<ExperimentRun> runs, string arm) =>
        runs.Where(x => x.Variant == arm).OrderBy(x => x.Repetition).Select(x => x.TotalSeconds).ToArray();

    /// <summary>The arm's captured output against the baseline's; null when either captured nothing or the images differ in size.</summary>
    public static ArmQuality? Compare(RunOutcome? baseline, RunOutcome? arm)
    {
        if (baseline?.StepLatents is not { Count: > 0 } bs || arm?.StepLatents is not { Count: > 0 } vs) return null;
        if (baseline.Image is null || arm.Image is null || baseline.Image.Length != arm.Image.Length || bs[^1].Length != vs[^1].Length) return null;
        var steps = bs.Count == vs.Count ? bs.Zip(vs, (b, v) => QualityReport.Compare(b, v)).ToArray() : [];
        double psnr = baseline.Rgb is not null && arm.Rgb is not null ? QualityReport.Psnr(baseline.Rgb, arm.Rgb) : double.NaN;
        return new ArmQuality(steps, QualityReport.Compare(bs[^1], vs[^1]), psnr, QualityReport.Compare(baseline.Image, arm.Image).MaxAbs);
    }

    /// <summary>The warm-up's job: the arm's own at 64x64 and at most 2 steps (JIT tiering, first-touch faults, switch checks).</summary>
    public static GenerationJob WarmupJob(GenerationJob job) => job with { Width = 64, Height = 64, Steps = Math.Min(job.Steps ?? 1, 2) };

    /// <summary>
    /// Runs <paramref name="plan"/> on the snapshot in <paramref name="modelDir"/> (any registered family) through the one
    /// generation loop, each run on a freshly opened device and model: in this process, or wherever
    /// <paramref name="runner"/> puts them.
    /// </summary>
    public static ExperimentReport Run(string modelDir, ExperimentPlan plan, RunProgress? progress, string command = "", IExperimentRunner? runner = null)
    {
        plan.Validate();
        string family;
        using (var probeDevice = new CpuDevice(1))
        using (var probe = ModelFamilies.Open(modelDir, probeDevice, plan.Options))
        {
            family = probe.Family.Name;
            foreach (var arm in plan.Arms) ExperimentSwitches.CheckApplicable(arm.Switches, probe, $"variant '{arm.Name}'");
        }

        runner ??= new InProcessRunner(modelDir, plan.DeviceSpec, progress);
        string deviceId = "", deviceName = "";
        RunOutcome Noted(RunOutcome o)
        {
            (deviceId, deviceName) = (o.DeviceId, o.DeviceName);
            return o;
        }
        ExperimentRun[] runs;
        ArmSummary[] arms;
        try
        {
            (runs, arms) = Measure(plan,
                (arm, s, capture) => Noted(runner.Run(arm, s, capture, warmup: false)),
                (arm, s) => runner.Run(arm, s, capture: false, warmup: true),
                progress, plan.ImageDirectory is null ? null : (arm, o) => SaveImage(plan, arm, o, progress?.Log));
        }
        finally { PureFlux.Kernels.TimestepEmbedding.CacheFrequencies = true; } // process-wide: back to the engine's behaviour
        var j = plan.Job;
        return new ExperimentReport(Path.GetFullPath(modelDir), family, deviceId, deviceName, MachineDescription(), command, DateTimeOffset.Now,
            j.Width ?? 0, j.Height ?? 0, j.Seed, j.Prompts.FirstOrDefault() ?? "", plan.Repetitions, $"alternated (A B … per repetition), {runner.Where}", runs, arms);
    }

    private static void SaveImage(ExperimentPlan plan, ExperimentVariant arm, RunOutcome o, Action<string>? log)
    {
        int w = plan.Job.Width ?? 0, h = plan.Job.Height ?? 0;
        if (o.Rgb is null || o.Rgb.Length != w * h * 3) { log?.Invoke($"  {arm.Name}: no {w}x{h} image to save"); return; }
        Directory.CreateDirectory(plan.ImageDirectory!);
        string path = Path.Combine(plan.ImageDirectory!, arm.Name + ".png");
        Image.PngWriter.Save(path, o.Rgb, w, h, new Dictionary<string, string> { ["switches"] = arm.Switches.ToString(), ["prompt"] = plan.Job.Prompts.FirstOrDefault() ?? "" });
        log?.Invoke($"  wrote {path}");
    }

    /// <summary>As <see cref="Run(string, ExperimentPlan, RunProgress?, string, IExperimentRunner?)"/> with narration lines only.</summary>
    public static ExperimentReport Run(string modelDir, ExperimentPlan plan, Action<string>? log = null, string command = "") =>
        Run(modelDir, plan, RunProgress.Lines(log), command);

    /// <summary>
    /// One run of <paramref name="arm"/> with its settings (<paramref name="warmup"/>: <see cref="WarmupJob"/> instead):
    /// a freshly opened device and model, the one generation loop, its stage times, wall total (device and model load
    /// included) and this process's peak RSS (reset first where Linux allows); with <paramref name="capture"/>, the latents
    /// after every step and the image. Both the in-process and the fresh-process modes run exactly this.
    /// </summary>
    public static RunOutcome RunOne(string modelDir, string deviceSpec, ExperimentVariant arm, RunSettings s, bool capture, bool warmup, RunProgress? progress = null)
    {
        var job = warmup ? WarmupJob(s.Job) : s.Job;
        bool perRun = E2eBench.ResetPeakRss();
        var wall = System.Diagnostics.Stopwatch.StartNew();
        using var dev = Devices.Open(deviceSpec);
        s.Kernels.ApplyTo(dev);
        var timer = new StageTimer(dev);
        var steps = new List<float[]>();
        progress?.Stage?.Invoke("load");
        using var model = ModelFamilies.Open(modelDir, dev, s.Options);
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Timer = timer,
            OnStep = r => { if (capture) steps.Add(r.Latents.ToFloatArray()); },
            Progress = progress?.Step,
            Stage = progress?.Stage,
        });
        CheckSwitchesTookEffect(arm, s, result);
        var stages = timer.Stages.Select(x => new StageTime(x.Name, x.Time.TotalSeconds)).ToArray();
        double total = wall.Elapsed.TotalSeconds;
        return new RunOutcome(stages, total, StageTimer.PeakRssBytes(), perRun,
            capture ? steps : null, capture ? result.Decoded : null, capture ? result.Image(0).Rgb : null)
        {
            DeviceId = dev.Id,
            DeviceName = dev.Name,
        };
    }

    /// <summary>A guidance switch on a run without an unconditional pass measures nothing: an error, not a silent equal time.</summary>
    private static void CheckSwitchesTookEffect(ExperimentVariant arm, RunSettings s, GenerationResult result)
    {
        foreach (var name in new[] { "cfg-batched", "guidance-interval" })
            if (arm.Switches.Values.Any(v => v.Key == name && v.Value != "off") && !result.UsedCfg)
                throw new ArgumentException($"variant '{arm.Name}': switch '{name}' needs classifier-free guidance, but this run has none (a guidance-distilled model, or guidance ≤ 1); add guidance=G (G > 1) to the baseline on a model that takes it");
    }

    /// <summary>"AMD EPYC … (2 threads), Linux 6.x" from /proc/cpuinfo and the runtime.</summary>
    public static string MachineDescription()
    {
        string cpu = "unknown CPU";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return $"{cpu} ({Environment.ProcessorCount} threads, {CpuDevice.SimdDescription()}), {System.Runtime.InteropServices.RuntimeInformation.OSDescription}";
    }

    /// <summary>A ready-made OPTIMIZATION_LOG.md entry: date, machine, command, before (baseline), after (each variant), verdict placeholder.</summary>
    public static string LogEntry(ExperimentReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        var variants = r.Arms.Skip(1).ToArray();
        sb.AppendLine(inv, $"### {r.When:yyyy-MM-dd} — experiment: {string.Join("; ", variants.Select(v => v.Switches))} vs baseline ({r.Family}, {r.Width}x{r.Height})");
        sb.AppendLine(inv, $"- Machine: {r.Machine}; device {r.Device}");
        sb.AppendLine(inv, $"- Command: `{(string.IsNullOrEmpty(r.Command) ? "(library call)" : r.Command)}`");
        sb.AppendLine(inv, $"- Runs: {r.Order}, {r.Repetitions} repetitions; times are median (min–max); ratio = median of the paired variant/baseline totals, bootstrap 95% interval.");
        foreach (var arm in r.Arms)
        {
            string head = arm.Ratio is null ? $"- Before ({arm.Name}: {arm.Switches})" : $"- After ({arm.Name}: {arm.Switches})";
            sb.Append(inv, $"{head}: total {Fmt(arm.Total)}");
            if (arm.Ratio is { } q) sb.Append(inv, $", ratio {q.Ratio:0.000} [{q.Lo:0.000}, {q.Hi:0.000}]");
            sb.Append(inv, $"; peak RSS {arm.PeakRssBytes / (1024.0 * 1024 * 1024):0.00} GiB");
            sb.Append(inv, $"; stages: {string.Join(", ", arm.Stages.Select(s => $"{s.Stage} {s.Seconds.Median:0.00} s"))}");
            if (arm.Quality is { } ql)
                sb.Append(inv, $"; vs baseline: final latents rel RMS {ql.FinalLatents.RelativeRms:0.###e0}, image PSNR {ql.ImagePsnrDb:0.0} dB, max |Δ| {ql.ImageMaxAbs:0.###e0}");
            sb.AppendLine();
        }
        sb.AppendLine("- Verdict: _to be written: kept or reverted, and which resource limits it._");
        return sb.ToString();
    }

    private static string Fmt(Spread s) => string.Create(CultureInfo.InvariantCulture, $"{s.Median:0.00} s ({s.Min:0.00}–{s.Max:0.00})");
}
