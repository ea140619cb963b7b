#:project ../src/Model/PureFlux.Model.csproj
#:package ScottPlot@5.1.59
#:property ManagePackageVersionsCentrally=false
#:property WarningsNotAsErrors=NU1603
#:property PublishAot=false
// The GEMM ladder notebook: GFLOP/s of every step of the CPU GEMM ladder (naive → blocked SIMD → packed 1 thread →
// packed all threads) and of Gemm.Linear / QuantizedGemm with BF16, int8 and int4 weights, at a few shapes,
// against the measured FMA peak (and OpenBLAS's sgemm when libopenblas is installed).
//
//   dotnet run -c Release notebooks/gemm_ladder.cs [-- --quick] [--out DIR]
//
// -c Release matters: without it the kernels run unoptimised (the notebook says so in its output and plot).
// Writes DIR/gemm_ladder.png and DIR/gemm_ladder.md (DIR defaults to notebooks/out, git-ignored).
// Timing as bench/GemmBenchmarks.cs's GemmQuickBench: one warm-up, then the best of N runs.
// Directives: CPM is off for this file (ScottPlot is not in Directory.Packages.props); NU1603 stays a warning because
// the NuGet mirror serves slightly newer SkiaSharp/HarfBuzz than ScottPlot's lower bounds.
using System.Diagnostics;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using PureFlux.Kernels;
using PureFlux.Model.Bench;
using PureFlux.Runtime;
using ScottPlot;

bool quick = args.Contains("--quick");
int outAt = Array.IndexOf(args, "--out");
string outDir = outAt >= 0 && outAt + 1 < args.Length ? args[outAt + 1] : Path.Combine(Notebook.Dir(), "out");
Directory.CreateDirectory(outDir);
bool optimised = typeof(Gemm).Assembly.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled != true;
if (!optimised) Console.WriteLine("warning: kernels are built without optimisation; run with 'dotnet run -c Release'");

int threads = Environment.ProcessorCount;
(int M, int K, int N)[] shapes = quick
    ? [(128, 256, 256)]
    : [(256, 1024, 1024), (512, 1024, 3072), (1024, 3072, 3072)];
int reps = quick ? 1 : 3;
double peakAll = PeakFlops.Measure(quick ? 0.1 : 0.3), peakOne = PeakFlops.Measure(quick ? 0.1 : 0.3, threads: 1);
bool haveBlas = OpenBlas.Available(out string blasWhy);
Console.WriteLine($"CPU: {new CpuDevice().Name}; FMA peak {peakAll:0.0} GFLOP/s ({threads} threads), {peakOne:0.0} (1 thread); OpenBLAS: {(haveBlas ? $"yes, {OpenBlas.CoreName} kernels" : blasWhy)}");
// OPENBLAS_CORETYPE is read when the library loads, so it cannot be fixed from here: say when the line will be unfair.
if (haveBlas && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && OpenBlas.CoreName is "Prescott" or "Core2" or "Nehalem" or "Sandybridge" or "Haswell" or "Zen")
    Console.WriteLine($"warning: OpenBLAS runs its {OpenBlas.CoreName} kernels on an AVX-512 CPU (an older OpenBLAS that does not know this CPU, or OPENBLAS_CORETYPE); " +
        "rerun with OPENBLAS_CORETYPE=SKYLAKEX (or COOPERLAKE where avx512_bf16 is present) for its best, as `bench peak` does");

string[] versions = ["naive (1t)", "blocked (1t)", "packed (1t)", $"packed ({threads}t)", $"f32 Linear ({threads}t)", $"bf16 w ({threads}t)", $"int8 w ({threads}t)", $"int4 w ({threads}t)"];
if (haveBlas) versions = [.. versions, $"OpenBLAS sgemm ({OpenBlas.CoreName})"];
var gflops = new double[shapes.Length, versions.Length];

for (int si = 0; si < shapes.Length; si++)
{
    var (m, k, n) = shapes[si];
    double flop = 2.0 * m * n * k;
    var rng = new Random(42);
    var x = new float[m * k];
    var w = new float[n * k];
    for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2f - 1f;
    for (int i = 0; i < w.Length; i++) w[i] = (rng.NextSingle() * 2f - 1f) * 0.05f;
    var y = new float[m * n];
    double Rate(Action a, int r) => flop / Notebook.Time(a, r) / 1e9;

    // The scalar loop is ~1 GFLOP/s: skip it where it alone would take many seconds.
    gflops[si, 0] = flop <= 1.1e9 ? Rate(() => GemmLadder.Naive(x, w, y, m, n, k), 1) : double.NaN;
    gflops[si, 1] = Rate(() => GemmLadder.Blocked(x, w, y, m, n, k), reps);
    gflops[si, 2] = Rate(() => GemmLadder.Packed(x, w, y, m, n, k), reps);
    gflops[si, 3] = Rate(() => GemmLadder.PackedParallel(x, w, y, m, n, k, threads), reps);
    using (var cpu = new CpuDevice(threads))
    {
        using var xt = Tensor.FromArray(cpu, x, m, k);
        using var wt = Tensor.FromArray(cpu, w, n, k);
        using var wb = Tensor.FromSpan<ushort>(cpu, Array.ConvertAll(w, Bf16.FromFloat), new PureFlux.Runtime.Shape(n, k), DType.BF16);
        using var yt = Tensor.Empty(cpu, DType.F32, m, n);
        using var q8 = Quantize.Int8(wt);
        using var q4 = Quantize.Int4(wt, 64);
        gflops[si, 4] = Rate(() => Gemm.Linear(xt, wt, null, yt), reps);
        gflops[si, 5] = Rate(() => Gemm.Linear(xt, wb, null, yt), reps);
        gflops[si, 6] = Rate(() => QuantizedGemm.Linear(xt, q8, null, yt), reps);
        gflops[si, 7] = Rate(() => QuantizedGemm.Linear(xt, q4, null, yt), reps);
    }
    Console.WriteLine($"{m}x{k}x{n}: " + string.Join(", ", Enumerable.Range(0, 8).Select(v => $"{versions[v]} {gflops[si, v]:0.0}")));
}
if (haveBlas)
    // Last, after all of ours: OpenBLAS's worker threads keep spinning for a while after each call.
    for (int si = 0; si < shapes.Length; si++)
    {
        var (m, k, n) = shapes[si];
        var x = new float[m * k]; var w = new float[n * k]; var y = new float[m * n];
        var rng = new Random(42);
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2f - 1f;
        for (int i = 0; i < w.Length; i++) w[i] = (rng.NextSingle() * 2f - 1f) * 0.05f;
        gflops[si, versions.Length - 1] = 2.0 * m * n * k / Notebook.Time(() => OpenBlas.Gemm(x, w, y, m, n, k), reps) / 1e9;
    }

// ---- plot: grouped bars per shape, peaks as lines ----
var plt = new Plot();
var palette = new ScottPlot.Palettes.Category10();
int groups = shapes.Length, nv = versions.Length;
double width = 0.8 / nv;
for (int v = 0; v < nv; v++)
{
    var color = palette.GetColor(v);
    var bars = new List<Bar>();
    for (int si = 0; si < groups; si++)
        if (!double.IsNaN(gflops[si, v]))
            bars.Add(new Bar { Position = si + (v - (nv - 1) / 2.0) * width, Value = gflops[si, v], Size = width * 0.95, FillColor = color, LineWidth = 0 });
    var plotted = plt.Add.Bars(bars);
    plotted.LegendText = versions[v];
}
var lineAll = plt.Add.HorizontalLine(peakAll);
lineAll.LegendText = $"FMA peak {threads}t ({peakAll:0} GFLOP/s)";
lineAll.LinePattern = LinePattern.Dashed;
lineAll.Color = Colors.Black;
var lineOne = plt.Add.HorizontalLine(peakOne);
lineOne.LegendText = $"FMA peak 1t ({peakOne:0} GFLOP/s)";
lineOne.LinePattern = LinePattern.Dotted;
lineOne.Color = Colors.Gray;
plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
    Enumerable.Range(0, groups).Select(i => (double)i).ToArray(),
    shapes.Select(s => $"{s.M}x{s.K}x{s.N}").ToArray());
plt.Axes.SetLimitsY(0, Math.Max(peakAll, gflops.Cast<double>().Where(g => !double.IsNaN(g)).Max()) * 1.1);
plt.XLabel("GEMM shape M x K x N (y = x·Wᵀ)");
plt.YLabel("GFLOP/s");
plt.Title($"GEMM ladder on {Environment.ProcessorCount} cores" + (haveBlas ? "" : $" — OpenBLAS: {blasWhy}") + (optimised ? "" : " — UNOPTIMISED BUILD"));
plt.ShowLegend(Alignment.UpperLeft);
string png = Path.Combine(outDir, "gemm_ladder.png");
plt.SavePng(png, 1200, 650);

// ---- markdown table ----
var md = new StringBuilder();
md.AppendLine("# GEMM ladder").AppendLine();
md.AppendLine($"CPU: {new CpuDevice().Name}. FMA peak {peakAll:0.0} GFLOP/s ({threads} threads), {peakOne:0.0} GFLOP/s (1 thread). " +
    $"Best of {reps} after a warm-up; GFLOP/s = 2·M·N·K / time. OpenBLAS: {(haveBlas ? "libopenblas sgemm (its default threads)" : blasWhy)}." +
    (quick ? " Quick mode (one small shape)." : "") + (optimised ? "" : " **Unoptimised build: run with -c Release.**")).AppendLine();
md.AppendLine("| shape M×K×N | " + string.Join(" | ", versions) + " |");
md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", nv)));
for (int si = 0; si < groups; si++)
    md.AppendLine($"| {shapes[si].M}×{shapes[si].K}×{shapes[si].N} | " +
        string.Join(" | ", Enumerable.Range(0, nv).Select(v => double.IsNaN(gflops[si, v]) ? "—" : $"{gflops[si, v]:0.0}")) + " |");
md.AppendLine().AppendLine("![GEMM ladder](gemm_ladder.png)");
string mdPath = Path.Combine(outDir, "gemm_ladder.md");
File.WriteAllText(mdPath, md.ToString());
Console.WriteLine($"wrote {png} and {mdPath}");

static class Notebook
{
    public static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    /// <summary>One warm-up, then the best of <paramref name="reps"/> runs, in seconds.</summary>
    public static double Time(Action action, int reps)
    {
        action();
        double best = double.MaxValue;
        for (int r = 0; r < reps; r++)
        {
            var sw = Stopwatch.StartNew();
            action();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}

/// <summary>cblas_sgemm from the system's libopenblas, if installed (row-major, y = x·wᵀ).</summary>
static class OpenBlas
{
    private const string Lib = "libopenblas.so.0";

    public static bool Available(out string why)
    {
        if (!OperatingSystem.IsLinux()) { why = "not measured (Linux-only P/Invoke)"; return false; }
        if (!NativeLibrary.TryLoad(Lib, out var h)) { why = $"not measured ({Lib} not installed)"; return false; }
        bool ok = NativeLibrary.TryGetExport(h, "cblas_sgemm", out _);
        why = ok ? "" : $"not measured ({Lib} has no cblas_sgemm)";
        return ok;
    }

    /// <summary>The kernel family OpenBLAS chose (e.g. "SkylakeX", "Prescott" when it does not know the CPU).</summary>
    public static string CoreName => NativeLibrary.TryLoad(Lib, out var h) && NativeLibrary.TryGetExport(h, "openblas_get_corename", out var f)
        ? Marshal.PtrToStringAnsi(GetCoreName(f)) ?? "?" : "?";

    private static unsafe nint GetCoreName(nint f) => ((delegate* unmanaged<nint>)f)();

    public static void Gemm(float[] x, float[] w, float[] y, int m, int n, int k) =>
        cblas_sgemm(101 /* row-major */, 111 /* no trans */, 112 /* trans */, m, n, k, 1f, x, k, w, k, 0f, y, n);

    [DllImport(Lib)]
    private static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float[] a, int lda, float[] b, int ldb, float beta, float[] c, int ldc);
}
