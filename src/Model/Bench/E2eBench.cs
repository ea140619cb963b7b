using System.Text.Json;
using System.Text.Json.Serialization;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Bench;

/// <summary>One timed stage: seconds, analytic GFLOP (0 for loading), achieved GFLOP/s and its share of the peak.</summary>
public sealed record StageResult(string Stage, double Seconds, double GFlop, double GFlopPerSecond, double PercentOfPeak);

/// <summary>
/// One quant mode's run. <see cref="PeakRssBytes"/> is VmHWM after the run; it covers this mode alone when
/// <see cref="PeakRssPerMode"/> (the kernel let us reset it), else the whole process so far.
/// <see cref="PoolPeakBytes"/> is the activation pool's peak reservation on a device opened for this mode.
/// </summary>
public sealed record ModeResult(string Mode, StageResult[] Stages, double TotalSeconds, double ComputeSeconds, double ComputeGFlop,
    double ComputeGFlopPerSecond, long PeakRssBytes, bool PeakRssPerMode, long PoolPeakBytes)
{
    /// <summary>Per operator and shape, most time first (empty unless <see cref="E2eBenchOptions.Profile"/>).</summary>
    public OpRecord[] Ops { get; init; } = [];
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
}

/// <summary>
/// The whole text-to-image job, stage by stage, as <see cref="Flux2KleinPipeline.Generate"/> runs it, but with weight
/// loading timed apart from compute ("load text encoder", "text encoding", "load transformer", "step i",
/// "load vae", "vae") and the latents after each step and the decoded float image kept for quality comparison.
/// </summary>
public static class E2eBench
{
    private const int WarmupPasses = 3;

    private sealed record Capture(List<float[]> Steps, float[] Image, byte[] Rgb);

    public static E2eBenchReport Run(ModelSnapshot snapshot, string modelLabel, E2eBenchOptions o, Action<string>? log = null)
    {
        var request = new GenerateRequest(o.Prompt, o.Width, o.Height, o.Steps, o.Seed);
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

        var tokens = snapshot.LoadTokenizer().EncodeForKlein(o.Prompt);
        var (lh, lw) = FlowMatchEulerScheduler.PackedLatentSize(o.Width, o.Height);
        int layersRun = Flux2KleinPipeline.DefaultTextLayers(snapshot.TextEncoderConfig.NumHiddenLayers).Max();
        var text = FlopModel.TextEncoder(snapshot.TextEncoderConfig, tokens.Length, layersRun);
        var step = FlopModel.TransformerStep(snapshot.TransformerConfig, tokens.Length, lh * lw);
        var vae = FlopModel.VaeDecode(snapshot.VaeConfig, 2 * lh, 2 * lw);

        if (o.Warmup)
        {
            // Kernels are called once per layer, so a few small passes reach .NET's tier-1 call count (30) for every
            // kernel; the pause lets the background re-JIT land before timing starts.
            foreach (var mode in modes)
            {
                log?.Invoke($"warm-up {Name(mode)}");
                using var dev = Devices.Open(o.DeviceSpec);
                for (int pass = 0; pass < WarmupPasses; pass++)
                    RunOnce(snapshot, dev, mode, request with { Width = 32, Height = 32, Steps = 1 }, new StageTimer(dev), capture: false);
            }
            Thread.Sleep(300);
        }

        string deviceId = "", deviceName = "";
        var results = new List<ModeResult>();
        var captures = new Dictionary<QuantMode, Capture>();
        foreach (var mode in modes)
        {
            log?.Invoke($"run {Name(mode)}");
            bool perMode = ResetPeakRss();
            using var dev = Devices.Open(o.DeviceSpec);
            (deviceId, deviceName) = (dev.Id, dev.Name);
            var timer = new StageTimer(dev);
            bool wasProfiling = OpProfile.Enabled;
            if (o.Profile) { OpProfile.Reset(); OpProfile.Enabled = true; }
            Capture? cap;
            try { cap = RunOnce(snapshot, dev, mode, request, timer, capture: o.Quality); }
            finally { OpProfile.Enabled = wasProfiling; }
            var ops = o.Profile ? OpProfile.Snapshot().ToArray() : [];
            if (cap is not null) captures[mode] = cap;
            var stages = timer.Stages.Select(s =>
            {
                double gflop = s.Name == "text encoding" ? text.GFlop : s.Name.StartsWith("step ", StringComparison.Ordinal) ? step.GFlop : s.Name == "vae" ? vae.GFlop : 0;
                double sec = s.Time.TotalSeconds, rate = gflop > 0 && sec > 0 ? gflop / sec : 0;
                return new StageResult(s.Name, sec, gflop, rate, 100 * rate / peak);
            }).ToArray();
            var compute = stages.Where(s => s.GFlop > 0).ToArray();
            double cSec = compute.Sum(s => s.Seconds), cGflop = compute.Sum(s => s.GFlop);
            results.Add(new ModeResult(Name(mode), stages, stages.Sum(s => s.Seconds), cSec, cGflop, cSec > 0 ? cGflop / cSec : 0,
                StageTimer.PeakRssBytes(), perMode, dev.Pool.Snapshot().PeakReservedBytes) { Ops = ops });
        }

        var quality = new List<QualityResult>();
        if (o.Quality && captures.TryGetValue(QuantMode.None, out var reference))
            foreach (var (mode, cap) in captures)
                if (mode != QuantMode.None)
                    quality.Add(QualityReport.Of(Name(mode), Name(QuantMode.None), reference.Steps, cap.Steps, reference.Image, cap.Image, reference.Rgb, cap.Rgb));

        return new E2eBenchReport(modelLabel, deviceId, deviceName, o.Width, o.Height, o.Steps, o.Seed, o.Prompt,
            tokens.Length, lh * lw, peak, peakSource, text.GFlop, step.GFlop, vae.GFlop, results.ToArray(), quality.ToArray(), DateTimeOffset.Now);
    }

    public static string Name(QuantMode mode) => mode.ToString().ToLowerInvariant();

    private static Capture? RunOnce(ModelSnapshot snapshot, Device dev, QuantMode mode, GenerateRequest r, StageTimer timer, bool capture)
    {
        var tokens = snapshot.LoadTokenizer().EncodeForKlein(r.Prompt);
        var (lh, lw) = FlowMatchEulerScheduler.PackedLatentSize(r.Width, r.Height);
        var steps = new List<float[]>();
        Tensor latents;
        Tensor embeds;
        using (var pipe = new Flux2KleinPipeline(snapshot, dev, mode))
        {
            Qwen3TextEncoder encoder;
            using (timer.Stage("load text encoder"))
                encoder = new Qwen3TextEncoder(snapshot.TextEncoderConfig, snapshot.TextEncoder.Loader(dev), pipe.TextLayers, mode);
            using (encoder)
            using (timer.Stage("text encoding"))
                embeds = encoder.Encode(dev, tokens.Ids, tokens.AttentionMask.Select(m => (byte)m).ToArray());
            dev.Pool.Trim();

            var scheduler = FlowMatchEulerScheduler.ForKlein(snapshot.SchedulerConfig, r.Steps, r.Width, r.Height);
            latents = pipe.InitialLatents(r.Width, r.Height, r.Seed);
            using (timer.Stage("load transformer")) _ = pipe.Transformer;
            pipe.Denoise(latents, embeds, scheduler, lh, lw,
                onStep: capture ? (_, _, lat) => steps.Add(lat.ToFloatArray()) : null,
                stepScope: i => timer.Stage($"step {i + 1}"));
            embeds.Dispose();
        } // releases the transformer before the VAE loads, as Generate does
        dev.Pool.Trim();

        using (latents)
        using (var pipe = new Flux2KleinPipeline(snapshot, dev, mode))
        {
            using (timer.Stage("load vae")) _ = pipe.Vae;
            Tensor image;
            using (timer.Stage("vae")) image = pipe.DecodeLatents(latents, lh, lw);
            using (image)
            {
                if (!capture) return null;
                var f = image.ToFloatArray();
                return new Capture(steps, f, Flux2KleinPipeline.ToRgb(f, r.Width, r.Height));
            }
        }
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
