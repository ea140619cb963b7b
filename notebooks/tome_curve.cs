#:project ../src/Model/PureFlux.Model.csproj
#:package ScottPlot@5.1.59
#:property ManagePackageVersionsCentrally=false
#:property WarningsNotAsErrors=NU1603
#:property PublishAot=false
// Token merging's speed/quality curve from a `pureflux experiment` result whose variants are tome=R arms: time over the
// baseline (paired median, bootstrap 95% interval) and image PSNR / final-latent difference to the baseline, per ratio,
// with the pictures the experiment saved (--images) linked in the table.
//
//   pureflux experiment --model DIR --size 256 --steps 4 --reps 2 --variant tome-0.25:tome=0.25 \
//       --variant tome-0.5:tome=0.5 --variant tome-0.75:tome=0.75 --images notebooks/out/tome --json tome.json
//   dotnet run -c Release notebooks/tome_curve.cs -- tome.json [--images notebooks/out/tome] [--out DIR]
//   dotnet run -c Release notebooks/tome_curve.cs [-- --quick]     (no JSON: runs the curve on the tiny preset)
//
// Writes DIR/tome_curve.png and DIR/tome_curve.md (DIR defaults to notebooks/out, git-ignored); without a JSON also the
// tiny preset's pictures per ratio in DIR/tome/. Directives: see notebooks/gemm_ladder.cs.
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using PureFlux.Model.Engine;
using PureFlux.Model.Experiments;
using PureFlux.Model.Snapshot;
using ScottPlot;

bool quick = args.Contains("--quick");
string? Arg(string name) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
string outDir = Arg("--out") ?? Path.Combine(Here.Dir(), "out");
string? jsonPath = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (i == 0 || !args[i - 1].StartsWith("--", StringComparison.Ordinal))).FirstOrDefault();
string? imageDir = Arg("--images");
Directory.CreateDirectory(outDir);

ExperimentReport report;
if (jsonPath is not null)
{
    report = ExperimentReport.FromJson(File.ReadAllText(jsonPath));
    Console.WriteLine($"read {jsonPath}");
}
else
{
    // No JSON: the tiny random klein preset at three ratios, its pictures saved beside the plot.
    string dir = Path.Combine(Path.GetTempPath(), $"pureflux-notebook-tome-{Environment.ProcessId}");
    imageDir = Path.Combine(outDir, "tome");
    try
    {
        RandomSnapshot.Write(dir, SnapshotPreset.Tiny, 0);
        int px = quick ? 64 : 256;
        var plan = new ExperimentPlan(new GenerationJob { Prompts = ["a red fox in fresh snow"], Width = px, Height = px, Steps = 4 },
            SwitchSet.Empty,
            [.. new[] { "0.25", "0.5", "0.75" }.Select(r => new ExperimentVariant($"tome-{r}", SwitchSet.Parse($"tome={r}")))],
            Repetitions: quick ? 1 : 3)
        { ImageDirectory = imageDir, Warmup = !quick };
        report = Experiment.Run(dir, plan, Console.WriteLine, "notebooks/tome_curve.cs (tiny preset)");
    }
    finally
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }
}

// The tome arms, by ratio; the baseline is ratio 0 with ratio 1 by definition.
static double? RatioOf(string switches)
{
    foreach (var part in switches.Split(','))
        if (part.StartsWith("tome=", StringComparison.Ordinal) && double.TryParse(part[5..], NumberStyles.Float, CultureInfo.InvariantCulture, out double r)) return r;
    return null;
}
var points = report.Arms.Skip(1).Select(a => (Arm: a, Ratio: RatioOf(a.Switches))).Where(p => p.Ratio is not null)
    .OrderBy(p => p.Ratio).Select(p => (p.Arm, Ratio: p.Ratio!.Value)).ToArray();
if (points.Length == 0) throw new ArgumentException("the experiment has no tome=R variants to plot");

// Denoising alone (the sum of the "step N" stage medians), since token merging changes only the steps; the totals also
// carry load and text-encoding time, and first-run costs of whichever arm ran first.
static double StepSeconds(ArmSummary a) => a.Stages.Where(s => s.Stage.StartsWith("step ", StringComparison.Ordinal)).Sum(s => s.Seconds.Median);
double baseSteps = StepSeconds(report.Arms[0]);

var plt = new Plot();
double[] xs = [0, .. points.Select(p => p.Ratio)];
double[] ys = [1, .. points.Select(p => p.Arm.Ratio!.Ratio)];
var line = plt.Add.Scatter(xs, ys);
line.LegendText = "time / baseline (left)";
line.LineWidth = 2;
foreach (var (a, r) in points)
{
    plt.Add.Line(r, a.Ratio!.Lo, r, a.Ratio.Hi).Color = Colors.Black;
    plt.Add.Line(r - 0.01, a.Ratio.Lo, r + 0.01, a.Ratio.Lo).Color = Colors.Black;
    plt.Add.Line(r - 0.01, a.Ratio.Hi, r + 0.01, a.Ratio.Hi).Color = Colors.Black;
}
var steps = plt.Add.Scatter(xs, [1, .. points.Select(p => StepSeconds(p.Arm) / baseSteps)]);
steps.LegendText = "denoising steps / baseline (left)";
steps.LineWidth = 2;
steps.Color = Colors.Green;
plt.Axes.SetLimitsY(0, 1.15);
plt.YLabel("time / baseline (paired median, 95% CI)");
plt.XLabel("tome ratio (share of the image tokens merged in the single-stream blocks)");
// PSNR on the right axis (a finite cap for identical images).
var psnr = points.Select(p => Math.Min(p.Arm.Quality?.ImagePsnrDb ?? double.NaN, 99)).ToArray();
var right = plt.Add.Scatter(points.Select(p => p.Ratio).ToArray(), psnr);
right.Axes.YAxis = plt.Axes.Right;
right.LegendText = "image PSNR vs baseline, dB (right)";
right.LinePattern = LinePattern.Dashed;
plt.Axes.Right.Label.Text = "PSNR dB";
plt.ShowLegend(Alignment.LowerLeft);
plt.Title($"token merging: {report.Family}, {report.Width}x{report.Height}, {report.Repetitions} alternated repetitions on {report.Device}");
string png = Path.Combine(outDir, "tome_curve.png");
plt.SavePng(png, 900, 560);

var md = new StringBuilder();
md.AppendLine("# Token merging: speed vs quality").AppendLine();
md.AppendLine($"{report.Model} ({report.Family}) on {report.Device}; {report.Machine}; {report.Width}×{report.Height}, seed {report.Seed}; " +
    $"{report.Repetitions} repetitions, {report.Order}. Command: `{report.Command}`").AppendLine();
md.AppendLine("| ratio | total median s | time / baseline [95% interval] | steps s | steps / baseline | image PSNR dB | final latents rel RMS | picture |");
md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---|");
string Picture(string arm) => imageDir is not null && File.Exists(Path.Combine(imageDir, arm + ".png"))
    ? $"![{arm}]({Path.GetRelativePath(outDir, Path.Combine(imageDir, arm + ".png"))})" : "—";
md.AppendLine($"| 0 (baseline) | {report.Arms[0].Total.Median:0.00} | 1 | {baseSteps:0.00} | 1 | — | — | {Picture(report.Arms[0].Name)} |");
foreach (var (a, r) in points)
    md.AppendLine($"| {r:0.##} | {a.Total.Median:0.00} | {a.Ratio!.Ratio:0.000} [{a.Ratio.Lo:0.000}, {a.Ratio.Hi:0.000}] | {StepSeconds(a):0.00} | {StepSeconds(a) / baseSteps:0.000} | " +
        $"{(a.Quality is { } q ? (double.IsPositiveInfinity(q.ImagePsnrDb) ? "∞" : q.ImagePsnrDb.ToString("0.0", CultureInfo.InvariantCulture)) : "—")} | " +
        $"{(a.Quality is { } q2 ? q2.FinalLatents.RelativeRms.ToString("G3", CultureInfo.InvariantCulture) : "—")} | {Picture(a.Name)} |");
md.AppendLine().AppendLine("![curve](tome_curve.png)");
string mdPath = Path.Combine(outDir, "tome_curve.md");
File.WriteAllText(mdPath, md.ToString());
Console.WriteLine($"wrote {png} and {mdPath}");

static class Here
{
    public static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
