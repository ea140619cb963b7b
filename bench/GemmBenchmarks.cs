using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace PureFlux.Bench;

/// <summary>GEMM shapes of FLUX.2 klein 4B (hidden 3072, MLP 9216) and Qwen3-4B (hidden 2560, MLP 9728).</summary>
public static class GemmShapes
{
    public readonly record struct Shape(int M, int K, int N, string What)
    {
        public double Flops => 2.0 * M * K * N;
        public override string ToString() => $"{M}x{K}x{N}";
    }

    public static readonly Shape[] Klein =
    [
        new(4096, 3072, 3072, "klein attention proj, 4096 image tokens"),
        new(768, 3072, 9216, "klein MLP up (x N), 768 tokens"),
        new(768, 9216, 3072, "klein MLP down, 768 tokens"),
        new(512, 2560, 9728, "Qwen3 MLP up, 512 prompt tokens"),
        new(1536, 3072, 3072, "klein proj, 1536 tokens"),
    ];
}

/// <summary>Adds a GFLOP/s column: 2·M·K·N / mean time, from the benchmark's Shape parameter.</summary>
public sealed class GflopsColumn : IColumn
{
    public string Id => "GFLOPs";
    public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "2·M·K·N / mean time";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        var shape = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Value is GemmShapes.Shape)?.Value as GemmShapes.Shape?;
        if (report?.ResultStatistics is null || shape is null) return "-";
        double seconds = report.ResultStatistics.Mean * 1e-9;
        return (shape.Value.Flops / seconds / 1e9).ToString("F1");
    }
}

/// <summary>Short runs: GEMMs at these shapes take 0.1–1 s each on 2 cores, so a few iterations suffice.</summary>
public sealed class GemmBenchConfig : ManualConfig
{
    public GemmBenchConfig()
    {
        AddJob(Job.Default.WithWarmupCount(1).WithIterationCount(3).WithLaunchCount(1).WithInvocationCount(1).WithUnrollFactor(1));
        AddColumn(new GflopsColumn());
    }
}

/// <summary>Gemm.Linear at klein shapes: F32 vs BF16 weights vs int8 (per-channel) vs int4 (group 64), all CPU threads.</summary>
[Config(typeof(GemmBenchConfig))]
public class GemmBenchmarks
{
    private CpuDevice _cpu = null!;
    private Tensor _x = null!, _wF32 = null!, _wBf16 = null!, _y = null!;
    private QuantizedTensor _wInt8 = null!, _wInt4 = null!;

    public static IEnumerable<GemmShapes.Shape> Shapes => GemmShapes.Klein;

    [ParamsSource(nameof(Shapes))]
    public GemmShapes.Shape Shape;

    [GlobalSetup]
    public void Setup()
    {
        _cpu = new CpuDevice();
        (_x, _wF32, _wBf16, _y) = GemmQuickBench.MakeOperands(_cpu, Shape.M, Shape.K, Shape.N);
        _wInt8 = Quantize.Int8(_wF32);
        _wInt4 = Quantize.Int4(_wF32, 64);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose(); _wF32.Dispose(); _wBf16.Dispose(); _y.Dispose(); _wInt8.Dispose(); _wInt4.Dispose();
        _cpu.Dispose();
    }

    [Benchmark(Baseline = true)] public void LinearF32() => Gemm.Linear(_x, _wF32, null, _y);
    [Benchmark] public void LinearBf16() => Gemm.Linear(_x, _wBf16, null, _y);
    [Benchmark] public void LinearInt8() => QuantizedGemm.Linear(_x, _wInt8, null, _y);
    [Benchmark] public void LinearInt4() => QuantizedGemm.Linear(_x, _wInt4, null, _y);
}

/// <summary>The CPU kernel ladder (naive → blocked SIMD → packed 1 thread → packed all threads) at one mid-size shape.</summary>
[Config(typeof(GemmBenchConfig))]
public class GemmLadderBenchmarks
{
    private float[] _x = null!, _w = null!, _y = null!;

    public static IEnumerable<GemmShapes.Shape> Shapes => [new GemmShapes.Shape(256, 1024, 1024, "ladder")];

    [ParamsSource(nameof(Shapes))]
    public GemmShapes.Shape Shape;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        _x = Enumerable.Range(0, Shape.M * Shape.K).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        _w = Enumerable.Range(0, Shape.N * Shape.K).Select(_ => rng.NextSingle() - 0.5f).ToArray();
        _y = new float[Shape.M * Shape.N];
    }

    [Benchmark(Baseline = true)] public void Naive() => GemmLadder.Naive(_x, _w, _y, Shape.M, Shape.N, Shape.K);
    [Benchmark] public void Blocked() => GemmLadder.Blocked(_x, _w, _y, Shape.M, Shape.N, Shape.K);
    [Benchmark] public void Packed() => GemmLadder.Packed(_x, _w, _y, Shape.M, Shape.N, Shape.K);
    [Benchmark] public void PackedParallel() => GemmLadder.PackedParallel(_x, _w, _y, Shape.M, Shape.N, Shape.K, Environment.ProcessorCount);
}

/// <summary>
/// Plain console timing (no BenchmarkDotNet): best-of-N wall time → GFLOP/s per shape and kernel version.
/// Call <see cref="Run"/> from any console (BenchmarkDotNet runs are long on 2 cores).
/// </summary>
public static class GemmQuickBench
{
    public static (Tensor X, Tensor WF32, Tensor WBf16, Tensor Y) MakeOperands(Device device, int m, int k, int n)
    {
        var rng = new Random(42);
        var x = new float[(long)m * k];
        var w = new float[(long)n * k];
        for (long i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2f - 1f;
        for (long i = 0; i < w.Length; i++) w[i] = (rng.NextSingle() * 2f - 1f) * 0.05f;
        var wb = Array.ConvertAll(w, Bf16.FromFloat);
        return (Tensor.FromArray(device, x, m, k), Tensor.FromArray(device, w, n, k),
            Tensor.FromSpan<ushort>(device, wb, new Shape(n, k), DType.BF16), Tensor.Empty(device, DType.F32, m, n));
    }

    /// <summary>Times one action: one warm-up, then the best of <paramref name="reps"/> runs (seconds).</summary>
    public static double Time(Action action, int reps = 3)
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

    /// <summary>Prints GFLOP/s of Gemm.Linear (F32, BF16 weights; int8, int4 quantized) at the klein shapes for
    /// 1 thread and all threads, then the ladder at a smaller shape. <paramref name="shapes"/> filters by "MxKxN"
    /// ("ladder" selects the ladder).</summary>
    public static void Run(params string[] shapes)
    {
        Console.WriteLine($"GEMM quick bench on {new CpuDevice().Name}");
        if (shapes.Contains("quant")) RunQuantize();
        Console.WriteLine($"{"shape M x K x N",-18} {"threads",7} {"version",-10} {"ms",9} {"GFLOP/s",9}");
        // The klein shapes, or those named (any MxKxN, e.g. 768x3072x27648 for the fused single-block projection).
        var selected = shapes.Length == 0 ? GemmShapes.Klein
            : shapes.Where(a => a.Split('x') is { Length: 3 } p && p.All(d => int.TryParse(d, out _)))
                .Select(a => a.Split('x').Select(int.Parse).ToArray())
                .Select(d => GemmShapes.Klein.FirstOrDefault(s => s.M == d[0] && s.K == d[1] && s.N == d[2]) is { What: not null } known
                    ? known : new GemmShapes.Shape(d[0], d[1], d[2], "custom")).ToArray();
        foreach (var s in selected)
        {
            foreach (int threads in new[] { 1, Environment.ProcessorCount }.Distinct())
            {
                using var cpu = new CpuDevice(threads);
                var (x, wf, wb, y) = MakeOperands(cpu, s.M, s.K, s.N);
                using var q8 = Quantize.Int8(wf);
                using var q4 = Quantize.Int4(wf, 64);
                double f32 = Time(() => Gemm.Linear(x, wf, null, y));
                Report(s, threads, "f32", f32);
                Report(s, threads, "bf16", Time(() => Gemm.Linear(x, wb, null, y)));
                Report(s, threads, "int8", Time(() => QuantizedGemm.Linear(x, q8, null, y)));
                Report(s, threads, "int4/g64", Time(() => QuantizedGemm.Linear(x, q4, null, y)));
                if (QuantizedGemm.VnniSupported) // the default above is VNNI: the vpmaddwd rung of the ladder for comparison
                {
                    Report(s, threads, "int8-wd", Time(() => QuantizedGemm.Linear(x, q8, null, y, QuantizedCpuKernel.MaddWd)));
                    Report(s, threads, "int4-wd", Time(() => QuantizedGemm.Linear(x, q4, null, y, QuantizedCpuKernel.MaddWd)));
                }
                if (OpenBlas.TryLoad(out _)) // the reference GEMM, same operands, same process; last: its threads spin on after a call
                {
                    OpenBlas.SetNumThreads(threads);
                    nint px = x.Pointer, pw = wf.Pointer, py = y.Pointer;
                    double blas = Time(() => { unsafe { OpenBlas.SgemmNT(s.M, s.N, s.K, (float*)px, (float*)pw, (float*)py); } });
                    Report(s, threads, "openblas", blas);
                    Console.WriteLine($"{"",-18} {"",7} f32 / OpenBLAS ({OpenBlas.CoreName}) = {blas / f32:0.00}");
                }
                x.Dispose(); wf.Dispose(); wb.Dispose(); y.Dispose();
            }
        }
        if (shapes.Length > 0 && !shapes.Contains("ladder")) return;
        var ladder = new GemmShapes.Shape(256, 1024, 1024, "ladder");
        var b = new GemmLadderBenchmarks { Shape = ladder };
        b.Setup();
        Report(ladder, 1, "naive", Time(b.Naive, 1));
        Report(ladder, 1, "blocked", Time(b.Blocked));
        Report(ladder, 1, "packed", Time(b.Packed));
        Report(ladder, Environment.ProcessorCount, "packed-mt", Time(b.PackedParallel));
    }

    /// <summary>Quantize.Int8 / Int4(g64) of a 27648×3072 BF16 weight (klein's fused single-block projection):
    /// milliseconds and GB/s of BF16 input, 1 and all threads.</summary>
    private static void RunQuantize()
    {
        const int n = 27648, k = 3072;
        var rng = new Random(3);
        var w = new ushort[(long)n * k];
        for (long i = 0; i < w.Length; i++) w[i] = Bf16.FromFloat((rng.NextSingle() * 2f - 1f) * 0.05f);
        Console.WriteLine($"{"quantize N x K BF16",-20} {"threads",7} {"scheme",-8} {"ms",9} {"GB/s in",9}");
        foreach (int threads in new[] { 1, Environment.ProcessorCount }.Distinct())
        {
            using var cpu = new CpuDevice(threads);
            using var wt = Tensor.FromSpan<ushort>(cpu, w, new Shape(n, k), DType.BF16);
            foreach (var (scheme, quantize) in new (string, Func<QuantizedTensor>)[] { ("int8", () => Quantize.Int8(wt)), ("int4/g64", () => Quantize.Int4(wt, 64)) })
            {
                double seconds = Time(() => quantize().Dispose());
                Console.WriteLine($"{$"{n}x{k}",-20} {threads,7} {scheme,-8} {seconds * 1e3,9:F1} {wt.ByteCount / seconds / 1e9,9:F2}");
            }
        }
    }

    /// <summary>The FLUX.2 klein workload at its real small M: Qwen3 text encoder (512 tokens) and the transformer at
    /// 256² (768 tokens: 256 image + 512 text). y = x·Wᵀ with BF16 weights.</summary>
    public static readonly GemmShapes.Shape[] SmallM =
    [
        new(512, 2560, 4096, "Qwen3 q_proj"),
        new(512, 4096, 2560, "Qwen3 o_proj"),
        new(512, 2560, 9728, "Qwen3 MLP up/gate"),
        new(512, 9728, 2560, "Qwen3 MLP down"),
        new(768, 3072, 3072, "klein proj"),
        new(256, 3072, 18432, "klein double block img MLP in"),
        new(768, 3072, 27648, "klein single block fused QKV+MLP in"),
        new(768, 9216, 3072, "klein MLP down"),
        new(768, 12288, 3072, "klein single block to_out"),
        new(4096, 3072, 3072, "large M reference"),
    ];

    /// <summary>
    /// <c>dotnet run -c Release --project bench -- gemm [reps] [t=threads] [MxKxN ...]</c>: Gemm.Linear with BF16 weights at
    /// <see cref="SmallM"/>, 1 and all threads. Prints the first call (cold: JIT, page faults of the pack buffers;
    /// only the very first line of a process is truly cold; y is touched before it) and the best of <c>reps</c> after it.
    /// </summary>
    public static void RunSmallM(string[] args)
    {
        int reps = args.Length > 0 && int.TryParse(args[0], out int r) ? r : 5;
        var filter = args.Where(a => a.Contains('x')).ToArray();
        int[] threadCounts = args.FirstOrDefault(a => a.StartsWith("t=")) is { } t
            ? [int.Parse(t[2..])] : new[] { 1, Environment.ProcessorCount }.Distinct().ToArray();
        Console.WriteLine($"GEMM small-M bench (BF16 weights), best of {reps}; load average {LoadAverage()}");
        Console.WriteLine($"{"shape M x K x N",-18} {"threads",7} {"first ms",9} {"best ms",9} {"GFLOP/s",9}");
        foreach (var s in SmallM)
        {
            if (filter.Length > 0 && !filter.Contains(s.ToString())) continue;
            var rng = new Random(42);
            var x = new float[(long)s.M * s.K];
            var w = new ushort[(long)s.N * s.K];
            for (long i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2f - 1f;
            for (long i = 0; i < w.Length; i++) w[i] = Bf16.FromFloat((rng.NextSingle() * 2f - 1f) * 0.05f);
            foreach (int threads in threadCounts)
            {
                using var cpu = new CpuDevice(threads);
                using var xt = Tensor.FromArray(cpu, x, s.M, s.K);
                using var wt = Tensor.FromSpan<ushort>(cpu, w, new Shape(s.N, s.K), DType.BF16);
                using var yt = Tensor.Empty(cpu, DType.F32, s.M, s.N);
                yt.AsSpan<float>().Clear(); // first touch of y here (page faults ~1.6 ms/MB on this VM), as pooled buffers are in the pipeline
                var sw = Stopwatch.StartNew();
                Gemm.Linear(xt, wt, null, yt);
                double first = sw.Elapsed.TotalSeconds;
                double best = double.MaxValue;
                for (int i = 0; i < reps; i++)
                {
                    sw.Restart();
                    Gemm.Linear(xt, wt, null, yt);
                    best = Math.Min(best, sw.Elapsed.TotalSeconds);
                }
                Console.WriteLine($"{s,-18} {threads,7} {first * 1e3,9:F1} {best * 1e3,9:F1} {s.Flops / best / 1e9,9:F1}");
            }
        }
        Console.WriteLine($"load average {LoadAverage()}");
    }

    /// <summary>
    /// <c>dotnet run -c Release --project bench -- gemm-ab FIELD reps threads MxKxN...</c>: A/B of an experiment in the same
    /// process on the same data, alternating off/on every rep (so a noisy neighbour hits both sides alike), best of each.
    /// FIELD names a temporary <c>internal static bool</c> in GemmCpu that guards the experiment (added while trying a
    /// change, removed when it is kept or reverted).
    /// </summary>
    public static void RunAB(string[] args)
    {
        string flag = args[0];
        int reps = int.Parse(args[1]);
        int threads = int.Parse(args[2]);
        var field = typeof(Gemm).Assembly.GetType("PureFlux.Kernels.GemmCpu")!.GetField(flag, System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)
            ?? throw new ArgumentException($"GemmCpu has no internal static bool {flag}: add the experiment switch first");
        Console.WriteLine($"A/B {flag}, threads {threads}, best of {reps}; load average {LoadAverage()}");
        foreach (var s in SmallM)
        {
            if (!args.Skip(3).Contains(s.ToString())) continue;
            var rng = new Random(42);
            var x = new float[(long)s.M * s.K];
            var w = new ushort[(long)s.N * s.K];
            for (long i = 0; i < x.Length; i++) x[i] = rng.NextSingle() * 2f - 1f;
            for (long i = 0; i < w.Length; i++) w[i] = Bf16.FromFloat((rng.NextSingle() * 2f - 1f) * 0.05f);
            using var cpu = new CpuDevice(threads);
            using var xt = Tensor.FromArray(cpu, x, s.M, s.K);
            using var wt = Tensor.FromSpan<ushort>(cpu, w, new Shape(s.N, s.K), DType.BF16);
            using var yt = Tensor.Empty(cpu, DType.F32, s.M, s.N);
            var best = new[] { double.MaxValue, double.MaxValue };
            for (int i = 0; i < reps + 1; i++)
                for (int v = 0; v < 2; v++)
                {
                    field.SetValue(null, v == 1);
                    var sw = Stopwatch.StartNew();
                    Gemm.Linear(xt, wt, null, yt);
                    if (i > 0) best[v] = Math.Min(best[v], sw.Elapsed.TotalSeconds);
                }
            field.SetValue(null, false);
            Console.WriteLine($"{s,-18} off {s.Flops / best[0] / 1e9,7:F1}  on {s.Flops / best[1] / 1e9,7:F1} GFLOP/s  ({(best[0] / best[1] - 1) * 100:+0.0;-0.0}%)");
        }
        Console.WriteLine($"load average {LoadAverage()}");
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    private static void Report(GemmShapes.Shape s, int threads, string version, double seconds) =>
        Console.WriteLine($"{s,-18} {threads,7} {version,-10} {seconds * 1e3,9:F1} {s.Flops / seconds / 1e9,9:F1}");
}
