using System.CommandLine;
using PureFlux.Cli.Progress;
using PureFlux.Model.Bench;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux bench e2e [--model DIR | --preset tiny|small] [--size --steps --quant none|int8|int4|all --quality
/// --device --peak-gflops --json FILE]</c>: the whole job timed per stage with analytic GFLOP, GFLOP/s and % of peak,
/// memory peaks, and (for quantized modes) error against the unquantized run.
/// <c>pureflux bench peak</c>: the measured FMA peak alone.
/// </summary>
internal static class BenchCommand
{
    public static Command Create(CliContext ctx)
    {
        var cmd = new Command("bench", "Measure speed: the whole generation per stage (e2e) or the CPU's FMA peak (peak).");
        cmd.Add(E2e(ctx));
        cmd.Add(Peak(ctx));
        return cmd;
    }

    private static Command Peak(CliContext ctx)
    {
        var seconds = new Option<double>("--seconds") { Description = "How long to run the FMA loop", DefaultValueFactory = _ => 0.3 };
        var cmd = new Command("peak", "Measure the FMA peak (GFLOP/s, Vector512 FMA loop) and the int8 peak (GOP/s, AVX-VNNI loop) on all threads.") { seconds };
        cmd.SetAction(parse =>
        {
            double s = parse.GetValue(seconds);
            if (!(s > 0 && s <= 60)) throw new ArgumentException($"--seconds {s}: expected 0 < seconds <= 60");
            ctx.Out.WriteLine($"FMA peak: {PeakFlops.Measure(s):0.0} GFLOP/s ({Environment.ProcessorCount} threads, {CpuDevice.SimdDescription()}, {s} s)");
            ctx.Out.WriteLine(PeakFlops.MeasureInt8(s) is { } int8
                ? $"int8 peak: {int8:0.0} GOP/s (AVX-VNNI vpdpbusd ymm, the quantized GEMM's instruction; 1 multiply-add = 2 ops)"
                : "int8 peak: no AVX-VNNI here (the quantized GEMM runs vpmaddwd, about the FMA rate)");
            return Cli.Ok;
        });
        return cmd;
    }

    private static Command E2e(CliContext ctx)
    {
        var model = new Option<string?>("--model", "-m") { Description = "Snapshot directory (default: write --preset to a temporary directory)" };
        var preset = new Option<string>("--preset") { Description = "Random-weight preset when no --model: tiny or small", DefaultValueFactory = _ => "tiny" };
        var size = new Option<int>("--size") { Description = "Image width and height in pixels, a multiple of 16", DefaultValueFactory = _ => 256 };
        var steps = new Option<int>("--steps", "-s") { Description = "Denoising steps", DefaultValueFactory = _ => 4 };
        var seed = new Option<ulong>("--seed") { Description = "Noise seed (the same for every mode)", DefaultValueFactory = _ => 42 };
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt", DefaultValueFactory = _ => new E2eBenchOptions().Prompt };
        var quant = new Option<string>("--quant", "-q") { Description = "Weights: none, int8, int4, fp8-e4m3, fp8-e5m2, a comma list of them, or all (= all five, with the quality report)", DefaultValueFactory = _ => "none" };
        var quality = new Option<bool>("--quality") { Description = "Compare quantized modes with an unquantized reference run" };
        var peak = new Option<double?>("--peak-gflops") { Description = "Peak GFLOP/s for the % column (default: measured, best of 3 × 0.1 s FMA loops)" };
        var warmup = new Option<bool>("--warmup") { Description = "Run each mode 3 times at 32x32, 1 step, before measuring, so JIT tiering is done (true/false)", DefaultValueFactory = _ => true };
        var json = new Option<string?>("--json") { Description = "Write the results as JSON to this file (for notebooks/)" };
        var profile = new Option<bool>("--profile") { Description = "Also time every operator call and print the top operators per mode (op, shape, calls, seconds, GFLOP/s)" };
        var sampler = new Option<string?>("--sampler") { Description = "euler, dpm++2m, unipc or heun (default: the model's)" };
        var guidance = new Option<float?>("--guidance", "-g") { Description = "CFG scale (> 1 runs the unconditional pass; a distilled snapshot ignores it)" };
        var cfgMode = new Option<string>("--cfg-mode") { Description = "sequential or batched", DefaultValueFactory = _ => "sequential" };
        var interval = new Option<string?>("--guidance-interval") { Description = "LO,HI: σ range where the unconditional pass runs" };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per prompt", DefaultValueFactory = _ => 1 };
        var negative = new Option<string?>("--negative-prompt", "-n") { Description = "Negative prompt (CFG's unconditional pass; FLUX.1 true CFG with --true-cfg; Qwen-Image's true CFG runs only with one)" };
        var trueCfg = new Option<float?>("--true-cfg") { Description = "FLUX.1: true-CFG scale with --negative-prompt (on above 1: two transformer passes per step)" };
        var device = CommonOptions.Device();
        device.DefaultValueFactory = _ => "cpu";
        var progress = CommonOptions.Progress();
        var cmd = new Command("e2e", "Time text encoding, each denoising step and the VAE; GFLOP/s, % of peak, memory; quantization error.")
            { model, preset, size, steps, seed, prompt, quant, quality, peak, warmup, json, profile, sampler, guidance, cfgMode, interval, batch, negative, trueCfg, device, progress };
        cmd.SetAction(parse =>
        {
            string q = parse.GetValue(quant)!.ToLowerInvariant();
            QuantMode[] modes = q == "all" ? Enum.GetValues<QuantMode>() : q.Split(',').Select(GenerateCommand.ParseQuant).Distinct().ToArray();
            int px = parse.GetValue(size);
            var options = new E2eBenchOptions(px, px, parse.GetValue(steps), parse.GetValue(seed), parse.GetValue(prompt)!, parse.GetValue(device)!)
            {
                Modes = modes,
                Quality = q == "all" || parse.GetValue(quality),
                PeakGFlops = parse.GetValue(peak),
                Warmup = parse.GetValue(warmup),
                Profile = parse.GetValue(profile),
                Sampler = parse.GetValue(sampler) is { } sk ? PureFlux.Model.Scheduler.Samplers.Parse(sk) : null,
                Guidance = parse.GetValue(guidance),
                CfgMode = GenerateCommand.ParseCfgMode(parse.GetValue(cfgMode)!),
                GuidanceInterval = parse.GetValue(interval) is { } iv ? GenerateCommand.ParseInterval(iv) : null,
                BatchSize = parse.GetValue(batch),
                NegativePrompt = parse.GetValue(negative),
                TrueCfgScale = parse.GetValue(trueCfg),
            };
            options.Job().Validate(); // before minutes of work
            var progressMode = ProgressDisplay.Parse(parse.GetValue(progress)!);
            if (options.PeakGFlops is { } pk && !(pk > 0)) throw new ArgumentException($"--peak-gflops {pk}: expected a positive number");
            string? jsonPath = parse.GetValue(json);
            if (jsonPath is not null) EnsureWritable(jsonPath);

            var (dir, label, temp) = ResolveModel(ctx, parse.GetValue(model), parse.GetValue(preset)!);
            try
            {
                var report = ProgressDisplay.Show(ctx, progressMode, PlainSteps.Silent, display => E2eBench.Run(dir, label, options, display.ToRunProgress()));
                Print(ctx.Out, report);
                if (jsonPath is not null)
                {
                    File.WriteAllText(jsonPath, report.ToJson());
                    ctx.Out.WriteLine($"wrote {jsonPath}");
                }
            }
            finally
            {
                if (temp is not null) try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
            }
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>
    /// The snapshot to measure: --model DIR as given, or a random --preset (tiny, small, zimage-tiny, zimage-small) written to
    /// a temporary directory that the caller deletes (<c>Temp</c>).
    /// </summary>
    internal static (string Dir, string Label, string? Temp) ResolveModel(CliContext ctx, string? dir, string presetName)
    {
        if (dir is not null) return (dir, Path.GetFullPath(dir), null);
        if (PureFlux.Model.ZImage.ZImagePreset.Find(presetName) is { } zp)
        {
            if (zp == PureFlux.Model.ZImage.ZImagePreset.Turbo)
                throw new ArgumentException($"--preset {zp.Name}: only zimage-tiny and zimage-small are written on the fly; run 'pureflux make-model --preset {zp.Name} --random --out DIR' and pass --model DIR");
            string zt = Path.Combine(Path.GetTempPath(), $"pureflux-bench-{zp.Name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
            ctx.Err.WriteLine($"writing random {zp.Name} snapshot to {zt}");
            PureFlux.Model.ZImage.ZImageRandomSnapshot.Write(zt, zp, 0);
            return (zt, $"{zp.Name} (random weights)", zt);
        }
        var p = SnapshotPreset.Find(presetName);
        if (p != SnapshotPreset.Tiny && p != SnapshotPreset.Small)
            throw new ArgumentException($"--preset {p.Name}: only tiny and small are written on the fly; for {p.Name} run 'pureflux make-model --preset {p.Name} --random --out DIR' and pass --model DIR");
        string temp = Path.Combine(Path.GetTempPath(), $"pureflux-bench-{p.Name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        ctx.Err.WriteLine($"writing random {p.Name} snapshot to {temp}");
        RandomSnapshot.Write(temp, p, 0);
        return (temp, $"{p.Name} (random weights)", temp);
    }

    /// <summary>
    /// Fails now, not after the whole benchmark, when --json cannot be written: a missing parent, a directory, or a place
    /// where no file can be created or opened for writing (tried for real: an existing file is opened without truncating
    /// it, a new one is created and deleted at once).
    /// </summary>
    internal static void EnsureWritable(string path, string option = "--json")
    {
        string full = Path.GetFullPath(path);
        string? parent = Path.GetDirectoryName(full);
        if (parent is not null && !Directory.Exists(parent)) throw new IOException($"{option} {path}: directory {parent} does not exist");
        if (Directory.Exists(full)) throw new IOException($"{option} {path}: is a directory");
        try
        {
            if (File.Exists(full))
                using (new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) { }
            else
                using (new FileStream(full, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{option} {path}: cannot be written ({e.Message})");
        }
    }

    /// <summary>The operators that took most of a mode's time, then what the rest and the unprofiled remainder add up to.</summary>
    private static void PrintOps(TextWriter w, ModeResult m, int top = 16)
    {
        if (m.Ops.Length == 0) return;
        double total = m.Stages.Sum(s => s.Seconds), inOps = m.Ops.Sum(o => o.Seconds);
        w.WriteLine($"  operators (most time first; % of the mode's {total:0.00} s):");
        w.WriteLine($"    {"op",-26} {"shape",-30} {"calls",6} {"seconds",9} {"%",6} {"GFLOP/s",9}");
        foreach (var o in m.Ops.Take(top))
            w.WriteLine($"    {o.Op,-26} {o.Shape,-30} {o.Calls,6} {o.Seconds,9:0.000} {100 * o.Seconds / total,5:0.0}% {(o.GFlopPerSecond > 0 ? o.GFlopPerSecond.ToString("0.0") : "-"),9}");
        if (m.Ops.Length > top)
        {
            var rest = m.Ops.Skip(top).ToArray();
            w.WriteLine($"    {$"{rest.Length} more op/shape pairs",-57} {rest.Sum(o => o.Calls),6} {rest.Sum(o => o.Seconds),9:0.000} {100 * rest.Sum(o => o.Seconds) / total,5:0.0}%");
        }
        foreach (var g in m.Ops.GroupBy(o => o.Op.Split(' ')[0]).OrderByDescending(g => g.Sum(o => o.Seconds)).Take(6))
        {
            double sec = g.Sum(o => o.Seconds), gf = g.Sum(o => o.GFlop);
            w.WriteLine($"    {"all " + g.Key,-57} {g.Sum(o => o.Calls),6} {sec,9:0.000} {100 * sec / total,5:0.0}% {(gf > 0 ? (gf / sec).ToString("0.0") : "-"),9}");
        }
        w.WriteLine($"    {"outside profiled ops (loading, host work)",-57} {"",6} {total - inOps,9:0.000} {100 * (total - inOps) / total,5:0.0}%");
    }

    public static void Print(TextWriter w, E2eBenchReport r)
    {
        w.WriteLine($"bench e2e: {r.Model} on {r.Device} ({r.DeviceName})");
        w.WriteLine($"  {r.Width}x{r.Height}, {r.Steps} steps, seed {r.Seed}, {r.TextTokens} text + {r.ImageTokens} image tokens; " +
            $"GFLOP: text {r.TextEncoderGFlop:0.###}, step {r.StepGFlop:0.###}, vae {r.VaeGFlop:0.###}; peak {r.PeakGFlops:0.0} GFLOP/s ({r.PeakSource})");
        foreach (var m in r.Modes)
        {
            w.WriteLine();
            w.WriteLine($"quant {m.Mode}:");
            w.WriteLine($"  {"stage",-18} {"seconds",9} {"GFLOP",9} {"GFLOP/s",9} {"% peak",7}");
            foreach (var s in m.Stages)
                w.WriteLine(s.GFlop > 0
                    ? $"  {s.Stage,-18} {s.Seconds,9:0.000} {s.GFlop,9:0.###} {s.GFlopPerSecond,9:0.0} {s.PercentOfPeak,6:0.0}%"
                    : $"  {s.Stage,-18} {s.Seconds,9:0.000} {"-",9} {"-",9} {"-",7}");
            w.WriteLine($"  {"compute",-18} {m.ComputeSeconds,9:0.000} {m.ComputeGFlop,9:0.###} {m.ComputeGFlopPerSecond,9:0.0} {100 * m.ComputeGFlopPerSecond / r.PeakGFlops,6:0.0}%");
            w.WriteLine($"  {"total",-18} {m.TotalSeconds,9:0.000}");
            w.WriteLine($"  peak RSS {CommonOptions.FormatBytes(m.PeakRssBytes)}{(m.PeakRssPerMode ? "" : " (whole process)")}, pool peak {CommonOptions.FormatBytes(m.PoolPeakBytes)}, " +
                $"pool live after the run {m.PoolLiveBytesAfter} B{(m.PoolLiveBytesAfter == 0 ? " (nothing leaked)" : " (LEAK: tensors not returned)")}");
            PrintOps(w, m);
        }
        if (r.Quality.Length == 0) return;
        w.WriteLine();
        w.WriteLine($"quality vs {r.Quality[0].Reference} (same seed and prompt):");
        w.WriteLine($"  {"mode",-6} {"step",4} {"latent max abs",15} {"latent rel RMS",15}");
        foreach (var q in r.Quality)
            for (int i = 0; i < q.Steps.Length; i++)
                w.WriteLine($"  {q.Mode,-6} {i + 1,4} {q.Steps[i].MaxAbs,15:G4} {q.Steps[i].RelativeRms,15:G4}");
        w.WriteLine($"  {"mode",-6} {"PSNR (8-bit RGB)",17} {"image max abs",14}");
        foreach (var q in r.Quality)
            w.WriteLine($"  {q.Mode,-6} {(double.IsPositiveInfinity(q.ImagePsnrDb) ? "inf (identical)" : $"{q.ImagePsnrDb:0.00} dB"),17} {q.ImageMaxAbs,14:G4}");
    }
}
