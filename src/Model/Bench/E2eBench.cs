using System.Text.Json;
using System.Text.Json.Serialization;
using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Bench;

/// <summary>One timed stage: seconds, analytic GFLOP (0 for loading), achieved GFLOP/s and its share of the peak.</summary>
public sealed record StageResult(string Stage, double Seconds, double GFlop, double GFlopPerSecond, double PercentOfPeak);

/// <summary>
/// One quant mode's run. <see cref="PeakRssBytes"/> is VmHWM after the run; it covers this mode alone when
/// <see cref="PeakRssPerMode"/> (the kernel let us reset it), else the whole process so far.
/// <see cref="PoolPeakBytes"/> is the activation pool's peak reservation on a device opened for this mode.
/// <see cref="PoolLiveBytesAfter"/> is what the pool still has rented out once the run is over and the model released:
/// every tensor the loop, samplers, guidance and model rented should be back, so anything but 0 is a leak.
/// </summary>
public sealed record ModeResult(string Mode, StageResult[] Stages, double TotalSeconds, double ComputeSeconds, double ComputeGFlop,
    double ComputeGFlopPerSecond, long PeakRssBytes, bool PeakRssPerMode, long PoolPeakBytes)
{
    /// <summary>Per operator and shape, most time first (empty unless <see cref="E2eBenchOptions.Profile"/>).</summary>
    public OpRecord[] Ops { get; init; } = [];
    /// <summary>Bytes still rented from the device's pool after the run, the model released (0 = nothing leaked).</summary>
    public long PoolLiveBytesAfter { get; init; }
}

/// <summary>Everything <c>pureflux bench e2e</c> measured; written as JSON by <c>--json</c> for the notebooks.</summary>
public sealed record E2eBenchReport(
    string Model, string Device, string DeviceName, int Width, int Height, int Steps, ulong Seed, string Prompt,
    int TextTokens, int ImageTokens, double PeakGFlops, string PeakSource,
    double TextEncoderGFlop, double StepGFlop, double VaeGFlop,
    ModeResult[] Modes, QualityResult[] Quality, DateTimeOffset When)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // PSNR of identical images is +∞
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static E2eBenchReport FromJson(string json) =>
        JsonSerializer.Deserialize<E2eBenchReport>(json, Json) ?? throw new ArgumentException("bench JSON is empty (null)");
}

/// <summary>What to run: image size, steps, seed, prompt, the quant modes in order, and whether to compare them.</summary>
public sealed record E2eBenchOptions(int Width = 256, int Height = 256, int Steps = 4, ulong Seed = 42,
    string Prompt = "a red fox in fresh snow, golden hour", string DeviceSpec = "cpu")
{
    public QuantMode[] Modes { get; init; } = [QuantMode.None];
    /// <summary>Compare quantized modes with an unquantized reference run (added first if not in <see cref="Modes"/>).</summary>
    public bool Quality { get; init; }
    /// <summary>Peak GFLOP/s for the "% of peak" column; null = measure with <see cref="PeakFlops"/>.</summary>
    public double? PeakGFlops { get; init; }
    /// <summary>Run every mode a few times at 32×32, 1 step, before measuring, so JIT tiering and first-touch costs are not charged to the first mode.</summary>
    public bool Warmup { get; init; } = true;
    /// <summary>Time every operator call (<see cref="OpProfile"/>) during the measured runs; ILGPU devices then synchronise after each op.</summary>
    public bool Profile { get; init; }
    /// <summary>Sampler, guidance scale, CFG mode, guidance interval and negative prompt, as generate takes them (null: the model's defaults).</summary>
    public SamplerKind? Sampler { get; init; }
    public float? Guidance { get; init; }
    public CfgMode CfgMode { get; init; } = CfgMode.Sequential;
    public (float Lo, float Hi)? GuidanceInterval { get; init; }
    public int BatchSize { get; init; } = 1;
    /// <summary>Negative prompt (null: none, or the family's empty default where it runs CFG) and FLUX.1's true-CFG scale.</summary>
    public string? NegativePrompt { get; init; }
    public float? TrueCfgScale { get; init; }

    /// <summary>The job these options describe (the one generation loop runs it).</summary>
    public GenerationJob Job(int? width = null, int? height = null, int? steps = null) => new()
    {
        Prompts = [Prompt],
        Width = width ?? Width,
        Height = height ?? Height,
        Steps = steps ?? Steps,
        Seed = Seed,
        Sampler = Sampler,
        Guidance = Guidance,
        CfgMode = CfgMode,
        GuidanceInterval = GuidanceInterval,
        ImagesPerPrompt = BatchSize,
        NegativePrompts = NegativePrompt is null ? null : [NegativePrompt],
        TrueCfgScale = TrueCfgScale,
    };
}

/// <summary>
/// The whole text-to-image job through the one generation loop (<see cref="GenerationEngine"/>), stage by stage
/// ("text encoding", "load transformer", "step i", "vae"), with the latents after each step and the decoded float
/// image kept for quality comparison. A step's GFLOP counts every transformer pass it ran (two with sequential CFG,
/// one of batch 2B with batched CFG, one where the guidance interval skipped the unconditional pass).
/// </summary>
/// <summary>The FLOPs of one job's stages, which <c>bench e2e</c> turns into GFLOP/s and % of the FMA peak.</summary>
public sealed record StageFlops(int TextTokens, int ImageTokens, FlopCount Text, FlopCount Step, FlopCount Vae);

/// <summary>A family that bench e2e can measure: its stages' FLOPs for a prompt and size (from configs alone).</summary>
public interface IStageFlopModel
{
    StageFlops Flops(string prompt, int width, int height);
}

public static class E2eBench
{
    private const int WarmupPasses = 3;

    private sealed record Capture(List<float[]> Steps, float[] Image, byte[] Rgb);

    /// <summary>klein snapshots already open (the notebooks' entry point).</summary>
    public static E2eBenchReport Run(ModelSnapshot snapshot, string modelLabel, E2eBenchOptions o, Action<string>? log = null) =>
        Run(snapshot.Directory, modelLabel, o, log);

    /// <summary>Benchmarks the snapshot in <paramref name="modelDir"/>, whatever its family (<see cref="ModelFamilies"/>).</summary>
    public static E2eBenchReport Run(string modelDir, string modelLabel, E2eBenchOptions o, Action<string>? log = null) =>
        Run(modelDir, modelLabel, o, RunProgress.Lines(log));

    /// <summary>As above, telling <paramref name="progress"/> each run, stage and step (the command line's live display).</summary>
    public static E2eBenchReport Run(string modelDir, string modelLabel, E2eBenchOptions o, RunProgress? progress)
    {
        var log = progress?.Log;
        var request = o.Job();
        request.Validate();
        var modes = o.Modes.Distinct().ToList();
        if (modes.Count == 0) throw new ArgumentException("bench e2e: no quant mode to run");
        if (o.Quality && modes.Any(m => m != QuantMode.None))
        {
            modes.Remove(QuantMode.None);
            modes.Insert(0, QuantMode.None); // the reference runs first
        }

        double peak = o.PeakGFlops ?? PeakFlops.Measure();
        if (!(peak > 0)) throw new ArgumentException($"bench e2e: peak {peak} GFLOP/s must be positive");
        string peakSource = o.PeakGFlops is null ? $"measured: Vector512 FMA loop, {Environment.ProcessorCount} threads, best of 3 × 0.1 s" : "given (--peak-gflops)";

        StageFlops flops;
        using (var probeDevice = new CpuDevice(1))
        using (var probe = ModelFamilies.Open(modelDir, probeDevice))
            flops = probe is IStageFlopModel f ? f.Flops(o.Prompt, o.Width, o.Height)
                : throw new NotSupportedException($"bench e2e: the {probe.Family.Name} family has no FLOP model");
        var (text, step, vae) = (flops.Text, flops.Step, flops.Vae);

        if (o.Warmup)
        {
            // Kernels are called once per layer, so a few small passes reach .NET's tier-1 call count (30) for every
            // kernel; the pause lets the background re-JIT land before timing starts.
            foreach (var mode in modes)
            {
                log?.Invoke($"warm-up {Name(mode)}");
                progress?.RunStarted?.Invoke(new RunStart($"warm-up {Name(mode)}", modes.IndexOf(mode), modes.Count, Warmup: true));
                using var dev = Devices.Open(o.DeviceSpec);
                for (int pass = 0; pass < WarmupPasses; pass++)
                    RunOnce(modelDir, dev, mode, o.Job(32, 32, 1), new StageTimer(dev), capture: false, progress: progress);
            }
            Thread.Sleep(300);
        }

        string deviceId = "", deviceName = "";
        var results = new List<ModeResult>();
        var passes = new List<double>(); // transformer passes (in units of one batch-B pass) per step of the last run
        var captures = new Dictionary<QuantMode, Capture>();
        foreach (var mode in modes)
        {
            log?.Invoke($"run {Name(mode)}");
            progress?.RunStarted?.Invoke(new RunStart($"quant {Name(mode)}", results.Count, modes.Count, Warmup: false));
            bool perMode = ResetPeakRss();
            using var dev = Devices.Open(o.DeviceSpec);
            (deviceId, deviceName) = (dev.Id, dev.Name);
            var timer = new StageTimer(dev);
            bool wasProfiling = OpProfile.Enabled;
            if (o.Profile) { OpProfile.Reset(); OpProfile.Enabled = true; }
            Capture? cap;
            try { cap = RunOnce(modelDir, dev, mode, request, timer, capture: o.Quality, passes, progress); }
            finally { OpProfile.Enabled = wasProfiling; }
            var ops = o.Profile ? OpProfile.Snapshot().ToArray() : [];
            if (cap is not null) captures[mode] = cap;
            var stages = timer.Stages.Select(s =>
            {
                double gflop = s.Name.StartsWith("text encoding", StringComparison.Ordinal) && !s.Name.Contains("cached") ? text.GFlop // one stage per encoded prompt list (CFG adds one for the negative prompt)
                    : s.Name.StartsWith("step ", StringComparison.Ordinal) || s.Name.StartsWith("call ", StringComparison.Ordinal)
                        ? step.GFlop * o.BatchSize * passes[int.Parse(s.Name[5..]) - 1] // one stage per model call
                    : s.Name == "vae" ? vae.GFlop * o.BatchSize : 0;
                double sec = s.Time.TotalSeconds, rate = gflop > 0 && sec > 0 ? gflop / sec : 0;
                return new StageResult(s.Name, sec, gflop, rate, 100 * rate / peak);
            }).ToArray();
            var compute = stages.Where(s => s.GFlop > 0).ToArray();
            double cSec = compute.Sum(s => s.Seconds), cGflop = compute.Sum(s => s.GFlop);
            results.Add(new ModeResult(Name(mode), stages, stages.Sum(s => s.Seconds), cSec, cGflop, cSec > 0 ? cGflop / cSec : 0,
                StageTimer.PeakRssBytes(), perMode, dev.Pool.Snapshot().PeakReservedBytes) { Ops = ops, PoolLiveBytesAfter = dev.Pool.Snapshot().LiveBytes });
        }

        var quality = new List<QualityResult>();
        if (o.Quality && captures.TryGetValue(QuantMode.None, out var reference))
            foreach (var (mode, cap) in captures)
                if (mode != QuantMode.None)
                    quality.Add(QualityReport.Of(Name(mode), Name(QuantMode.None), reference.Steps, cap.Steps, reference.Image, cap.Image, reference.Rgb, cap.Rgb));

        return new E2eBenchReport(modelLabel, deviceId, deviceName, o.Width, o.Height, o.Steps, o.Seed, o.Prompt,
            flops.TextTokens, flops.ImageTokens, peak, peakSource, text.GFlop, step.GFlop, vae.GFlop, results.ToArray(), quality.ToArray(), DateTimeOffset.Now);
    }

    public static string Name(QuantMode mode) => mode.Name();

    private static Capture? RunOnce(string modelDir, Device dev, QuantMode mode, GenerationJob job, StageTimer timer, bool capture, List<double>? passes = null,
        RunProgress? progress = null)
    {
        var steps = new List<float[]>();
        passes?.Clear();
        progress?.Stage?.Invoke("load");
        using var model = ModelFamilies.Open(modelDir, dev, new ModelOptions { Quant = mode });
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Timer = timer,
            Progress = progress?.Step,
            Stage = progress?.Stage,
            OnStep = r =>
            {
                if (capture) steps.Add(r.Latents.ToFloatArray());
                passes?.Add(r.Uncond is null ? 1 : 2);
            },
        });
        if (!capture) return null;
        return new Capture(steps, result.Decoded, result.Image(0).Rgb);
    }

    /// <summary>Resets this process's VmHWM (Linux ≥ 4.0: write "5" to /proc/self/clear_refs); false where not possible.</summary>
    public static bool ResetPeakRss()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException) { return false; }
    }
}
