using System.CommandLine;
using System.Text.Json;
using PureFlux.Cli.Progress;
using PureFlux.Model.Engine;
using PureFlux.Model.Experiments;
using PureFlux.Runtime;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux experiment --model DIR --variant [NAME:]SWITCHES … [--baseline SWITCHES] [--variants FILE] [--reps N]
/// [--size --steps --seed --prompt --device] [--fresh-process] [--progress auto|live|plain|none] [--json FILE]
/// [--log OPTIMIZATION_LOG.md]</c>: the baseline and each variant run alternately on the same job (in this process, or a
/// child process per run with --fresh-process); per arm the stage and total medians, the paired ratio to the baseline with its
/// bootstrap 95% interval, peak RSS and the output's difference to the baseline's. <c>--list-switches</c> prints the switches.
/// </summary>
public static class ExperimentCommand
{
    internal static Command Create(CliContext ctx)
    {
        var model = new Option<string?>("--model", "-m") { Description = "Snapshot directory (default: a random --preset written to a temporary directory)" };
        var preset = new Option<string>("--preset") { Description = "Random-weight preset when no --model: tiny, small, zimage-tiny or zimage-small", DefaultValueFactory = _ => "tiny" };
        var variant = new Option<string[]>("--variant", "-v") { Description = "A variant: [NAME:]switch=value,switch=value (repeatable); see --list-switches", AllowMultipleArgumentsPerToken = false };
        var baseline = new Option<string>("--baseline") { Description = "Switches of the baseline (default: the engine's defaults)", DefaultValueFactory = _ => "" };
        var variantsFile = new Option<string?>("--variants") { Description = "JSON file {\"baseline\": \"SWITCHES\", \"variants\": {\"NAME\": \"SWITCHES\", …}} (commit it next to the results)" };
        var reps = new Option<int>("--reps", "-n") { Description = "Alternated repetitions (A B … per repetition)", DefaultValueFactory = _ => 3 };
        var size = new Option<int>("--size") { Description = "Image width and height in pixels, a multiple of 16", DefaultValueFactory = _ => 256 };
        var steps = new Option<int?>("--steps", "-s") { Description = "Denoising steps (default: the model's; the switch steps=N overrides per arm)" };
        var seed = new Option<ulong>("--seed") { Description = "Noise seed (the same for every run)", DefaultValueFactory = _ => 42 };
        var prompt = new Option<string>("--prompt", "-p") { Description = "Prompt", DefaultValueFactory = _ => "a red fox in fresh snow, golden hour" };
        var warmup = new Option<bool>("--warmup") { Description = "Run every arm once at 64x64 first (JIT tiering, page faults, and switch checks before the long runs)", DefaultValueFactory = _ => true };
        var json = new Option<string?>("--json") { Description = "Write the result as JSON (notebooks/experiment_plot.cs plots it)" };
        var images = new Option<string?>("--images") { Description = "Save each arm's image (repetition 0) in this directory as NAME.png" };
        var log = new Option<string?>("--log") { Description = "Append a ready-made entry (date, machine, command, before, after, verdict placeholder) to this markdown file, e.g. OPTIMIZATION_LOG.md" };
        var list = new Option<bool>("--list-switches") { Description = "Print the switches and exit" };
        var fresh = new Option<bool>("--fresh-process")
        {
            Description = "Run every measured run and warm-up in a child process of this executable, for effects at load time; "
                + "each run's total is then the child's wall time from process start to exit (runtime start-up and model load included) and its peak RSS the child's own",
        };
        var device = CommonOptions.Device();
        device.DefaultValueFactory = _ => "cpu";
        var progress = CommonOptions.Progress();
        var cmd = new Command("experiment", "A/B-measure optimisation switches: alternated runs, medians, ratio with a bootstrap interval, peak RSS, quality vs baseline.")
            { model, preset, variant, baseline, variantsFile, reps, size, steps, seed, prompt, warmup, json, images, log, list, fresh, device, progress };
        cmd.SetAction(parse =>
        {
            if (parse.GetValue(list))
            {
                PrintSwitches(ctx.Out);
                return Cli.Ok;
            }
            var (baseSet, variants) = Variants(parse.GetValue(baseline)!, parse.GetValue(variant) ?? [], parse.GetValue(variantsFile));
            int px = parse.GetValue(size);
            var plan = new ExperimentPlan(new GenerationJob
            {
                Prompts = [parse.GetValue(prompt)!],
                Width = px,
                Height = px,
                Steps = parse.GetValue(steps),
                Seed = parse.GetValue(seed),
            }, baseSet, variants, parse.GetValue(reps))
            {
                Warmup = parse.GetValue(warmup),
                DeviceSpec = parse.GetValue(device)!,
                ImageDirectory = parse.GetValue(images),
            };
            plan.Validate(); // before any model work
            if (plan.ImageDirectory is { } imageDir && File.Exists(imageDir))
                throw new ArgumentException($"--images {imageDir}: is a file; expected a directory (created if missing)");
            var progressMode = ProgressDisplay.Parse(parse.GetValue(progress)!);
            string? jsonPath = parse.GetValue(json), logPath = parse.GetValue(log);
            if (jsonPath is not null) BenchCommand.EnsureWritable(jsonPath);
            if (logPath is not null)
            {
                if (!File.Exists(logPath)) throw new ArgumentException($"--log {logPath}: no such file (the entry is appended to an existing log)");
                BenchCommand.EnsureWritable(logPath, "--log");
            }

            var (dir, label, temp) = BenchCommand.ResolveModel(ctx, parse.GetValue(model), parse.GetValue(preset)!);
            try
            {
                string command = "pureflux " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).Select(Quote));
                var report = ProgressDisplay.Show(ctx, progressMode, PlainSteps.Lines, display =>
                {
                    if (!parse.GetValue(fresh)) return Experiment.Run(dir, plan, display.ToRunProgress(), command);
                    using var runner = new FreshProcessRunner(dir, plan, display);
                    return Experiment.Run(dir, plan, display.ToRunProgress(), command, runner);
                });
                Print(ctx.Out, report, label);
                if (jsonPath is not null)
                {
                    AtomicFile.WriteAllBytes(jsonPath, System.Text.Encoding.UTF8.GetBytes(report.ToJson()));
                    ctx.Out.WriteLine($"wrote {jsonPath}");
                }
                if (logPath is not null)
                {
                    File.AppendAllText(logPath, Environment.NewLine + Experiment.LogEntry(report));
                    ctx.Out.WriteLine($"appended an entry to {logPath} (write its verdict)");
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

    private static string Quote(string a) => a.Any(c => char.IsWhiteSpace(c) || c is '"' or '\'' or ',') ? $"\"{a.Replace("\"", "\\\"")}\"" : a;

    /// <summary>The baseline and variants from --baseline/--variant and/or --variants FILE.</summary>
    public static (SwitchSet Baseline, List<ExperimentVariant> Variants) Variants(string baseline, IEnumerable<string> given, string? file)
    {
        var baseSet = SwitchSet.Parse(baseline, "--baseline");
        var variants = new List<ExperimentVariant>();
        if (file is not null)
        {
            if (!File.Exists(file)) throw new ArgumentException($"--variants {file}: no such file");
            JsonElement root;
            try { root = JsonDocument.Parse(File.ReadAllText(file)).RootElement.Clone(); }
            catch (JsonException e) { throw new ArgumentException($"--variants {file}: not valid JSON ({e.Message.Split('\n')[0]})"); }
            if (root.ValueKind != JsonValueKind.Object) throw new ArgumentException($"--variants {file}: expected an object {{\"baseline\": ..., \"variants\": {{...}}}}");
            foreach (var p in root.EnumerateObject())
                if (p.Name is not ("baseline" or "variants")) throw new ArgumentException($"--variants {file}: unknown key '{p.Name}' (expected baseline, variants)");
            if (root.TryGetProperty("baseline", out var b))
            {
                if (b.ValueKind != JsonValueKind.String) throw new ArgumentException($"--variants {file}: 'baseline' must be a string of switches");
                if (baseSet.Values.Count > 0) throw new ArgumentException($"--variants {file} and --baseline both give the baseline; give it once");
                baseSet = SwitchSet.Parse(b.GetString()!, $"--variants {file} baseline");
            }
            if (!root.TryGetProperty("variants", out var vs) || vs.ValueKind != JsonValueKind.Object)
                throw new ArgumentException($"--variants {file}: expected a 'variants' object of NAME: \"SWITCHES\"");
            foreach (var v in vs.EnumerateObject())
            {
                if (v.Value.ValueKind != JsonValueKind.String) throw new ArgumentException($"--variants {file}: variant '{v.Name}' must be a string of switches");
                variants.Add(new ExperimentVariant(v.Name, SwitchSet.Parse(v.Value.GetString()!, $"--variants {file} variant '{v.Name}'")));
            }
        }
        foreach (var text in given)
        {
            int colon = text.IndexOf(':');
            string name = colon > 0 ? text[..colon].Trim() : text.Trim();
            string switches = colon > 0 ? text[(colon + 1)..] : text;
            variants.Add(new ExperimentVariant(name, SwitchSet.Parse(switches, $"--variant '{text}'")));
        }
        return (baseSet, variants);
    }

    private static void PrintSwitches(TextWriter w)
    {
        w.WriteLine($"  {"switch",-20} {"values",-38} {"scope",-7} what");
        foreach (var d in ExperimentSwitches.All)
            w.WriteLine($"  {d.Name,-20} {d.ValueHelp,-38} {(d.Scope == ExperimentSwitches.SwitchScope.Engine ? "engine" : "family"),-7} {d.Description}{(d.Missing is null ? "" : $" [{d.Missing}]")}");
    }

    internal static void Print(TextWriter w, ExperimentReport r, string label)
    {
        w.WriteLine($"experiment: {label} ({r.Family}) on {r.Device} ({r.DeviceName}), {r.Width}x{r.Height}, seed {r.Seed}, {r.Repetitions} repetitions, {r.Order}");
        w.WriteLine($"  {"arm",-16} {"total median",12} {"min",8} {"max",8} {"ratio",7} {"95% interval",17} {"peak RSS",10} {"latent relRMS",13} {"PSNR",8}");
        foreach (var a in r.Arms)
        {
            string ratio = a.Ratio is { } q ? $"{q.Ratio,7:0.000} [{q.Lo:0.000}, {q.Hi:0.000}]".PadRight(25) : $"{"1",7} {"",17}";
            string quality = a.Quality is { } ql ? $"{ql.FinalLatents.RelativeRms,13:G3} {(double.IsPositiveInfinity(ql.ImagePsnrDb) ? "inf" : ql.ImagePsnrDb.ToString("0.0")),8}" : $"{"-",13} {"-",8}";
            w.WriteLine($"  {a.Name,-16} {a.Total.Median,11:0.000}s {a.Total.Min,8:0.000} {a.Total.Max,8:0.000} {ratio} {CommonOptions.FormatBytes(a.PeakRssBytes),10} {quality}");
        }
        w.WriteLine("  stage medians (s):");
        var stages = r.Arms.SelectMany(a => a.Stages.Select(s => s.Stage)).Distinct().ToArray();
        w.WriteLine($"    {"stage",-20} {string.Join(" ", r.Arms.Select(a => $"{a.Name,12}"))}");
        foreach (var s in stages)
            w.WriteLine($"    {s,-20} {string.Join(" ", r.Arms.Select(a => a.Stages.FirstOrDefault(x => x.Stage == s) is { } x ? $"{x.Seconds.Median,12:0.000}" : $"{"-",12}"))}");
    }
}
