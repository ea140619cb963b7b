#:project ../src/Model/PureFlux.Model.csproj
#:package ScottPlot@5.1.59
#:property ManagePackageVersionsCentrally=false
#:property WarningsNotAsErrors=NU1603
#:property PublishAot=false
// Plots any `pureflux experiment --json` result: (1) each arm's time relative to the baseline as a bar with its
// bootstrap 95% interval, (2) speed vs quality: ratio against the final-latent relative RMS difference to the baseline
// (log scale; identical outputs sit on the floor line), and a markdown table of the same numbers.
//
//   pureflux experiment --model DIR --variant int8:quant=int8 --variant rope-off:rope-cache=off --json r.json
//   dotnet run -c Release notebooks/experiment_plot.cs -- r.json [--out DIR]
//   dotnet run -c Release notebooks/experiment_plot.cs [-- --quick]     (no JSON: runs a small experiment on the tiny preset)
//
// Writes DIR/experiment_plot.png, DIR/experiment_plot_quality.png and DIR/experiment_plot.md (DIR defaults to notebooks/out, git-ignored).
// Directives: see notebooks/gemm_ladder.cs.
using System.Runtime.CompilerServices;
using System.Text;
using PureFlux.Model.Engine;
using PureFlux.Model.Experiments;
using PureFlux.Model.Snapshot;
using ScottPlot;

bool quick = args.Contains("--quick");
int outAt = Array.IndexOf(args, "--out");
string outDir = outAt >= 0 && outAt + 1 < args.Length ? args[outAt + 1] : Path.Combine(Here.Dir(), "out");
string? jsonPath = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (i == 0 || args[i - 1] != "--out")).FirstOrDefault();
Directory.CreateDirectory(outDir);

ExperimentReport report;
if (jsonPath is not null)
{
    report = ExperimentReport.FromJson(File.ReadAllText(jsonPath));
    Console.WriteLine($"read {jsonPath}");
}
else
{
    // No JSON: the tiny random preset, three arms that change speed, output, or neither.
    string dir = Path.Combine(Path.GetTempPath(), $"pureflux-notebook-exp-{Environment.ProcessId}");
    try
    {
        RandomSnapshot.Write(dir, SnapshotPreset.Tiny, 0);
        var plan = new ExperimentPlan(new GenerationJob { Prompts = ["a red fox in fresh snow"], Width = quick ? 32 : 128, Height = quick ? 32 : 128, Steps = 4 },
            SwitchSet.Empty,
            [
                new ExperimentVariant("int8", SwitchSet.Parse("quant=int8")),
                new ExperimentVariant("rope-off", SwitchSet.Parse("rope-cache=off")),
                new ExperimentVariant("2 steps", SwitchSet.Parse("steps=2")),
            ], Repetitions: quick ? 2 : 5);
        report = Experiment.Run(dir, plan, Console.WriteLine, "notebooks/experiment_plot.cs (tiny preset)");
    }
    finally
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }
}

var arms = report.Arms;
var plt = new Plot();
for (int i = 0; i < arms.Length; i++)
{
    var r = arms[i].Ratio ?? new RatioInterval(1, 1, 1);
    var bar = plt.Add.Bar(position: i, value: r.Ratio);
    bar.Bars[0].FillColor = i == 0 ? Colors.LightGray : new ScottPlot.Palettes.Category10().GetColor(i);
    bar.Bars[0].Error = 0; // the interval is drawn below: it is not symmetric
    if (i > 0)
    {
        var lo = plt.Add.Line(i, r.Lo, i, r.Hi);
        lo.LineWidth = 2;
        lo.Color = Colors.Black;
        plt.Add.Line(i - 0.1, r.Lo, i + 0.1, r.Lo).Color = Colors.Black;
        plt.Add.Line(i - 0.1, r.Hi, i + 0.1, r.Hi).Color = Colors.Black;
    }
}
plt.Add.HorizontalLine(1, 1, Colors.Gray, LinePattern.Dashed);
plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
    Enumerable.Range(0, arms.Length).Select(i => (double)i).ToArray(),
    arms.Select(a => $"{a.Name}\n{a.Total.Median:0.00} s").ToArray());
plt.Axes.SetLimitsY(0, Math.Max(1.2, arms.Max(a => a.Ratio?.Hi ?? 1) * 1.1));
plt.YLabel("time / baseline (paired median, 95% CI)");
plt.Title($"{report.Family}: {report.Width}x{report.Height}, {report.Repetitions} alternated repetitions on {report.Device}");
string png = Path.Combine(outDir, "experiment_plot.png");
plt.SavePng(png, 900, 560);

// Speed vs quality: identical outputs (error 0) are drawn at the floor so they stay on a log axis.
const double Floor = 1e-9;
var q = new Plot();
foreach (var a in arms.Skip(1))
{
    double err = Math.Max(a.Quality?.FinalLatents.RelativeRms ?? Floor, Floor);
    var m = q.Add.Marker(a.Ratio!.Ratio, Math.Log10(err));
    m.Size = 10;
    var t = q.Add.Text(a.Name, a.Ratio.Ratio, Math.Log10(err));
    t.LabelFontSize = 12;
}
int[] decades = Enumerable.Range(-9, 10).ToArray(); // 1e-9 (the floor: identical) .. 1e0
q.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(decades.Select(d => (double)d).ToArray(),
    decades.Select(d => d == -9 ? "identical" : $"1e{d}").ToArray());
q.Axes.SetLimitsY(-9.5, 0.5);
q.XLabel("time / baseline");
q.YLabel("final latents: rel. RMS diff. to baseline");
q.Title("speed vs quality");
string qpng = Path.Combine(outDir, "experiment_plot_quality.png");
q.SavePng(qpng, 900, 560);

var md = new StringBuilder();
md.AppendLine("# Experiment").AppendLine();
md.AppendLine($"{report.Model} ({report.Family}) on {report.Device} ({report.DeviceName}); {report.Machine}; {report.Width}×{report.Height}, seed {report.Seed}; " +
    $"{report.Repetitions} repetitions, {report.Order}. Command: `{report.Command}`").AppendLine();
md.AppendLine("| arm | switches | total median (min–max) s | ratio [95% interval] | peak RSS MiB | final latents rel RMS | PSNR dB |");
md.AppendLine("|---|---|---:|---:|---:|---:|---:|");
foreach (var a in arms)
    md.AppendLine($"| {a.Name} | {a.Switches} | {a.Total.Median:0.000} ({a.Total.Min:0.000}–{a.Total.Max:0.000}) | " +
        (a.Ratio is { } r ? $"{r.Ratio:0.000} [{r.Lo:0.000}, {r.Hi:0.000}]" : "1") + $" | {a.PeakRssBytes / 1048576.0:0} | " +
        (a.Quality is { } ql ? $"{ql.FinalLatents.RelativeRms:G3} | {(double.IsPositiveInfinity(ql.ImagePsnrDb) ? "∞" : ql.ImagePsnrDb.ToString("0.0"))}" : "— | —") + " |");
md.AppendLine().AppendLine("![ratios](experiment_plot.png)").AppendLine().AppendLine("![speed vs quality](experiment_plot_quality.png)");
string mdPath = Path.Combine(outDir, "experiment_plot.md");
File.WriteAllText(mdPath, md.ToString());
Console.WriteLine($"wrote {png}, {qpng} and {mdPath}");

static class Here
{
    public static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
