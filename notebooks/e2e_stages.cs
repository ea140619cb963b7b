#:project ../src/Model/PureFlux.Model.csproj
#:package ScottPlot@5.1.59
#:property ManagePackageVersionsCentrally=false
#:property WarningsNotAsErrors=NU1603
#:property PublishAot=false
// End-to-end stage breakdown: seconds per stage (text encoding, each denoising step, VAE, weight loading) for each
// quant mode as a stacked bar chart, with GFLOP/s per stage and the quantization error table.
//
//   pureflux bench e2e --preset small --quant all --json small.json
//   dotnet run -c Release notebooks/e2e_stages.cs -- small.json [--out DIR]
//   dotnet run -c Release notebooks/e2e_stages.cs [-- --quick]     (no JSON: runs the tiny preset itself)
//
// Writes DIR/e2e_stages.png and DIR/e2e_stages.md (DIR defaults to notebooks/out, git-ignored).
// Directives: see notebooks/gemm_ladder.cs.
using System.Runtime.CompilerServices;
using System.Text;
using PureFlux.Model.Bench;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using ScottPlot;

bool quick = args.Contains("--quick");
int outAt = Array.IndexOf(args, "--out");
string outDir = outAt >= 0 && outAt + 1 < args.Length ? args[outAt + 1] : Path.Combine(Here.Dir(), "out");
string? jsonPath = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (i == 0 || args[i - 1] != "--out")).FirstOrDefault();
Directory.CreateDirectory(outDir);

E2eBenchReport report;
if (jsonPath is not null)
{
    report = E2eBenchReport.FromJson(File.ReadAllText(jsonPath));
    Console.WriteLine($"read {jsonPath}");
}
else
{
    // No JSON: the tiny random preset, all three modes with the quality report (as 'bench e2e --quant all').
    string dir = Path.Combine(Path.GetTempPath(), $"pureflux-notebook-tiny-{Environment.ProcessId}");
    try
    {
        RandomSnapshot.Write(dir, SnapshotPreset.Tiny, 0);
        using var snapshot = ModelSnapshot.Open(dir);
        var options = new E2eBenchOptions(quick ? 64 : 256, quick ? 64 : 256, quick ? 2 : 4)
        {
            Modes = [QuantMode.None, QuantMode.Int8, QuantMode.Int4],
            Quality = true,
        };
        report = E2eBench.Run(snapshot, "tiny (random weights)", options, Console.WriteLine);
    }
    finally
    {
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
    }
}

// Stack order: loading first (grey), then text encoding, the steps, the VAE.
static string Group(string stage) => stage.StartsWith("load", StringComparison.Ordinal) ? "loading" : stage;
var stackNames = report.Modes.SelectMany(m => m.Stages).Select(s => Group(s.Stage)).Distinct()
    .OrderBy(n => n == "loading" ? 0 : n == "text encoding" ? 1 : n.StartsWith("step ", StringComparison.Ordinal) ? 2 : 3)
    .ThenBy(n => n.StartsWith("step ", StringComparison.Ordinal) ? int.Parse(n[5..]) : 0).ToArray();
double Seconds(ModeResult m, string group) => m.Stages.Where(s => Group(s.Stage) == group).Sum(s => s.Seconds);

var plt = new Plot();
var palette = new ScottPlot.Palettes.Category20();
for (int g = 0; g < stackNames.Length; g++)
{
    var color = stackNames[g] == "loading" ? Colors.LightGray : palette.GetColor(g);
    var bars = new List<Bar>();
    for (int mi = 0; mi < report.Modes.Length; mi++)
    {
        var m = report.Modes[mi];
        double below = stackNames.Take(g).Sum(n => Seconds(m, n));
        bars.Add(new Bar { Position = mi, ValueBase = below, Value = below + Seconds(m, stackNames[g]), FillColor = color, Size = 0.6, LineWidth = 0 });
    }
    plt.Add.Bars(bars).LegendText = stackNames[g];
}
plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
    Enumerable.Range(0, report.Modes.Length).Select(i => (double)i).ToArray(),
    report.Modes.Select(m => $"{m.Mode}\n{m.ComputeGFlopPerSecond:0.0} GFLOP/s").ToArray());
plt.Axes.SetLimitsY(0, report.Modes.Max(m => m.TotalSeconds) * 1.15);
plt.Axes.SetLimitsX(-0.6, report.Modes.Length - 0.4 + 0.9); // room on the right for the legend
plt.YLabel("seconds");
plt.Title($"{report.Model}: {report.Width}x{report.Height}, {report.Steps} steps on {report.Device} — time per stage");
plt.ShowLegend(Alignment.UpperRight);
string png = Path.Combine(outDir, "e2e_stages.png");
plt.SavePng(png, 1000, 600);

var md = new StringBuilder();
md.AppendLine("# End-to-end stages").AppendLine();
md.AppendLine($"{report.Model} on {report.Device} ({report.DeviceName}); {report.Width}×{report.Height}, {report.Steps} steps, seed {report.Seed}, " +
    $"{report.TextTokens} text + {report.ImageTokens} image tokens. Analytic GFLOP: text {report.TextEncoderGFlop:0.###}, step {report.StepGFlop:0.###}, " +
    $"VAE {report.VaeGFlop:0.###}. Peak {report.PeakGFlops:0.0} GFLOP/s ({report.PeakSource}).").AppendLine();
md.AppendLine("| stage | " + string.Join(" | ", report.Modes.Select(m => $"{m.Mode} s | {m.Mode} GFLOP/s")) + " |");
md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|---:|", report.Modes.Length)));
foreach (var stage in report.Modes[0].Stages.Select(s => s.Stage))
    md.AppendLine($"| {stage} | " + string.Join(" | ", report.Modes.Select(m =>
    {
        var s = m.Stages.FirstOrDefault(x => x.Stage == stage);
        return s is null ? "— | —" : $"{s.Seconds:0.000} | {(s.GFlop > 0 ? $"{s.GFlopPerSecond:0.0}" : "—")}";
    })) + " |");
md.AppendLine("| **compute** | " + string.Join(" | ", report.Modes.Select(m => $"{m.ComputeSeconds:0.000} | {m.ComputeGFlopPerSecond:0.0} ({100 * m.ComputeGFlopPerSecond / report.PeakGFlops:0.0}% of peak)")) + " |");
md.AppendLine("| **total** | " + string.Join(" | ", report.Modes.Select(m => $"{m.TotalSeconds:0.000} | ")) + " |");
md.AppendLine("| peak RSS / pool | " + string.Join(" | ", report.Modes.Select(m => $"{Mib(m.PeakRssBytes)} | {Mib(m.PoolPeakBytes)}")) + " |");
if (report.Quality.Length > 0)
{
    md.AppendLine().AppendLine($"Quality vs {report.Quality[0].Reference} (same seed and prompt):").AppendLine();
    md.AppendLine("| mode | " + string.Join(" | ", Enumerable.Range(1, report.Quality[0].Steps.Length).Select(i => $"step {i} max abs / rel RMS")) + " | PSNR (8-bit) | image max abs |");
    md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", report.Quality[0].Steps.Length + 2)));
    foreach (var q in report.Quality)
        md.AppendLine($"| {q.Mode} | " + string.Join(" | ", q.Steps.Select(e => $"{e.MaxAbs:G3} / {e.RelativeRms:G3}")) +
            $" | {(double.IsPositiveInfinity(q.ImagePsnrDb) ? "∞" : $"{q.ImagePsnrDb:0.00} dB")} | {q.ImageMaxAbs:G3} |");
}
md.AppendLine().AppendLine("![stages](e2e_stages.png)");
string mdPath = Path.Combine(outDir, "e2e_stages.md");
File.WriteAllText(mdPath, md.ToString());
Console.WriteLine($"wrote {png} and {mdPath}");

static string Mib(long bytes) => bytes > 0 ? $"{bytes / 1048576.0:0.0} MiB" : "—";

static class Here
{
    public static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
