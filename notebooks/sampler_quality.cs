#:project ../src/Model/PureFlux.Model.csproj
#:package ScottPlot@5.1.59
#:property ManagePackageVersionsCentrally=false
#:property WarningsNotAsErrors=NU1603
#:property PublishAot=false
// "Fewer steps with a better solver", measured: on a random-weight klein snapshot, the final latents of Euler,
// DPM-Solver++ 2M and UniPC at 4, 8, 12 and 20 steps against a 50-step Euler reference (same prompt and seed), as
// relative RMS error (‖x − ref‖ / ‖ref‖ over all latent values) and image PSNR. Every run goes through the one
// generation loop (GenerationEngine), with klein's schedule (empirical mu) for each sampler.
//
//   dotnet run -c Release notebooks/sampler_quality.cs [-- --preset small|tiny | --model DIR] [--size 256 --quick --out DIR]
//
// --model runs it on any snapshot (a trained one shows the solvers' real advantage; see OPTIMIZATION_LOG.md).
//
// Writes DIR/sampler_quality.png (error vs steps, log scale), DIR/sampler_quality.md and DIR/sampler_quality.json.
// A random-weight model's velocity field is not a trained one: the curves show each solver's order of accuracy on
// a smooth but arbitrary ODE, not image quality. Directives: see notebooks/gemm_ladder.cs.
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using PureFlux.Model.Engine;
using PureFlux.Runtime;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using ScottPlot;

bool quick = args.Contains("--quick");
string Arg(string name, string def) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : def; }
string outDir = Arg("--out", Path.Combine(Here.Dir(), "out"));
var preset = SnapshotPreset.Find(Arg("--preset", quick ? "tiny" : "small"));
int size = int.Parse(Arg("--size", quick ? "64" : "256"));
int referenceSteps = quick ? 12 : 50;
int[] stepCounts = quick ? [2, 4] : [4, 8, 12, 20];
SamplerKind[] samplers = [SamplerKind.Euler, SamplerKind.DpmPP2M, SamplerKind.UniPC];
Directory.CreateDirectory(outDir);

string? given = Arg("--model", "");
string dir = given.Length > 0 ? given : Path.Combine(Path.GetTempPath(), $"pureflux-notebook-samplers-{Environment.ProcessId}");
string label = given.Length > 0 ? Path.GetFileName(Path.GetFullPath(given).TrimEnd('/')) : $"{preset.Name} random weights";
var rows = new List<Row>();
float[] reference;
try
{
    if (given.Length == 0) RandomSnapshot.Write(dir, preset, 0);
    using var dev = Devices.Open("cpu");
    using var model = ModelFamilies.Open(dir, dev);
    var job = new GenerationJob { Prompts = ["a red fox in fresh snow, golden hour"], Width = size, Height = size, Seed = 42 };
    (float[] Latents, float[] Image) Run(SamplerKind kind, int steps)
    {
        float[]? last = null;
        var r = GenerationEngine.Run(model, job with { Sampler = kind, Steps = steps },
            new GenerationHooks { OnStep = s => last = s.Latents.ToFloatArray() });
        return (last!, r.Decoded);
    }
    Console.WriteLine($"reference: euler, {referenceSteps} steps, {label} at {size}x{size}");
    var (refLatents, refImage) = Run(SamplerKind.Euler, referenceSteps);
    reference = refLatents;
    foreach (var kind in samplers)
        foreach (int n in stepCounts)
        {
            var (lat, img) = Run(kind, n);
            rows.Add(new Row(Samplers.NameOf(kind), n, RelRms(lat, refLatents), Psnr(img, refImage)));
            Console.WriteLine($"{rows[^1].Sampler,-8} {n,3} steps: latent rel RMS {rows[^1].LatentRelRms:0.0000}, PSNR {rows[^1].PsnrDb:0.00} dB");
        }
}
finally
{
    if (given.Length == 0 && Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
}

var plt = new Plot();
foreach (var g in rows.GroupBy(r => r.Sampler))
{
    var sc = plt.Add.Scatter(g.Select(r => (double)r.Steps).ToArray(), g.Select(r => Math.Log10(r.LatentRelRms)).ToArray());
    sc.LegendText = g.Key;
    sc.MarkerSize = 8;
}
plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = v => $"{Math.Pow(10, v):G2}" };
plt.XLabel("steps");
plt.YLabel($"final latent relative RMS error vs {referenceSteps}-step Euler (log)");
plt.Title($"Sampler error per step count — {label}, {size}x{size}");
plt.ShowLegend(Alignment.UpperRight);
string png = Path.Combine(outDir, "sampler_quality.png");
plt.SavePng(png, 900, 560);

var md = new StringBuilder();
md.AppendLine("# Sampler quality per step count").AppendLine();
md.AppendLine($"{label}, {size}×{size}, seed 42, klein schedules (empirical mu); reference: Euler, {referenceSteps} steps.");
md.AppendLine("Latent error = ‖x − x_ref‖ / ‖x_ref‖ over the final packed latents; PSNR of the decoded image against the reference's.").AppendLine();
md.AppendLine("| sampler | " + string.Join(" | ", stepCounts.Select(n => $"{n} steps")) + " |");
md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", stepCounts.Length)));
foreach (var g in rows.GroupBy(r => r.Sampler))
    md.AppendLine($"| {g.Key} | " + string.Join(" | ", g.Select(r => $"{r.LatentRelRms:0.0000} ({r.PsnrDb:0.0} dB)")) + " |");
md.AppendLine().AppendLine("![sampler quality](sampler_quality.png)");
File.WriteAllText(Path.Combine(outDir, "sampler_quality.md"), md.ToString());
File.WriteAllText(Path.Combine(outDir, "sampler_quality.json"), JsonSerializer.Serialize(new { model = label, size, referenceSteps, rows }, new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine($"wrote {png} and {Path.Combine(outDir, "sampler_quality.md")}");

static double RelRms(float[] x, float[] r)
{
    double num = 0, den = 0;
    for (int i = 0; i < x.Length; i++) { double d = x[i] - r[i]; num += d * d; den += (double)r[i] * r[i]; }
    return Math.Sqrt(num / den);
}

// Images in [-1, 1] → 8-bit levels as the PNG would hold them.
static double Psnr(float[] a, float[] b)
{
    double mse = 0;
    for (int i = 0; i < a.Length; i++)
    {
        double d = Math.Round(Math.Clamp(a[i] / 2 + 0.5, 0, 1) * 255) - Math.Round(Math.Clamp(b[i] / 2 + 0.5, 0, 1) * 255);
        mse += d * d;
    }
    mse /= a.Length;
    return mse == 0 ? double.PositiveInfinity : 10 * Math.Log10(255.0 * 255.0 / mse);
}

record Row(string Sampler, int Steps, double LatentRelRms, double PsnrDb);

static class Here
{
    public static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
