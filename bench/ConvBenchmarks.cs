using System.Diagnostics;
using BenchmarkDotNet.Attributes;

namespace PureFlux.Bench;

/// <summary>
/// Conv2d 3×3 (pad 1, stride 1) on the managed CPU backend at FLUX.2 VAE decoder shapes
/// (block_out_channels [128, 256, 512, 512]; a 256×256 image decodes through 32×32 … 256×256 maps).
/// Useful work: 2·O·C·9·H·W FLOP per call.
/// <c>dotnet run -c Release --project bench -- --filter '*ConvBenchmarks*'</c>
/// </summary>
[MemoryDiagnoser]
public class ConvBenchmarks
{
    private CpuDevice _device = null!;
    private Tensor _x = null!, _w = null!, _b = null!, _y = null!;

    /// <summary>(channels, map size): 512 ch at 32² and 64², 256 ch at 128².</summary>
    [Params("512x32", "512x64", "256x128")]
    public string Shape { get; set; } = "512x32";

    [GlobalSetup]
    public void Setup()
    {
        var (c, hw) = ConvQuickBench.Parse(Shape);
        _device = new CpuDevice();
        (_x, _w, _b, _y) = ConvQuickBench.MakeTensors(_device, c, hw, DType.F32);
    }

    [Benchmark]
    public void Conv3x3() => Conv2d.Forward(_x, _w, _b, _y, 1, Conv2dPadding.Same(1));

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose(); _w.Dispose(); _b.Dispose(); _y.Dispose();
        _device.Dispose();
    }
}

/// <summary>One VAE decoder conv shape: C → O channels, k×k kernel (stride 1, pad k / 2), H = W = Hw; Calls per 256² decode.</summary>
public readonly record struct ConvShape(int C, int O, int K, int Hw, int Calls)
{
    public double Flop => 2.0 * O * C * K * K * Hw * Hw;
    public override string ToString() => $"{C}->{O} {K}x{K} at {Hw}x{Hw}";
}

/// <summary>A quick console timing of the conv shapes of <see cref="ConvBenchmarks"/>, in GFLOP/s (no BenchmarkDotNet).</summary>
public static class ConvQuickBench
{
    /// <summary>Every Conv2d of FLUX.2 klein's VAE decoder at a 256×256 image (stride 1), with its number of calls,
    /// in the order of the op profile (largest total time first): 3×3 pad 1 and the 1×1 ResNet shortcuts.</summary>
    public static readonly ConvShape[] VaeDecoderShapes =
    [
        new(256, 256, 3, 256, 1), new(512, 512, 3, 64, 7), new(512, 512, 3, 128, 1), new(256, 256, 3, 128, 5),
        new(256, 128, 1, 256, 1), new(128, 128, 3, 256, 5), new(512, 512, 3, 32, 10), new(512, 256, 1, 128, 1),
        new(512, 256, 3, 128, 1), new(256, 128, 3, 256, 1), new(128, 3, 3, 256, 1),
    ];

    /// <summary>Times each VAE decoder shape with F32 weights (best of several runs after a warm-up), then the three
    /// original square shapes with BF16 weights, with <paramref name="threads"/> threads (0 = all). Ends with the
    /// decoder's conv total (Σ calls × best time).</summary>
    public static void Run(int threads = 0, TextWriter? output = null)
    {
        output ??= Console.Out;
        using var device = new CpuDevice(threads);
        output.WriteLine($"Conv2d stride 1 pad k/2, managed CPU, {device.Threads} threads, {device.Name}");
        foreach (var k in new[] { 1, 3 }) // JIT both paths before any timing
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var (x, w, b, y) = MakeTensors(device, new ConvShape(8, 8, k, 32, 1), dtype);
                using (x) using (w) using (b) using (y) Conv2d.Forward(x, w, b, y, 1, Conv2dPadding.Same(k / 2));
            }
        output.WriteLine("  'first' = the first call on a fresh device (empty pool: what a single VAE decode sees); 'best' = best warm call");
        double decoderSeconds = 0, decoderFirst = 0;
        foreach (var s in VaeDecoderShapes)
        {
            var (best, first) = Time(threads, s, DType.F32, output);
            decoderSeconds += s.Calls * best;
            decoderFirst += first + (s.Calls - 1) * best;
        }
        output.WriteLine($"  VAE decoder convs at 256x256: sum of calls x best {decoderSeconds:F3} s; with each shape's first call cold {decoderFirst:F3} s");
        foreach (var s in new ConvShape[] { new(512, 512, 3, 32, 10), new(512, 512, 3, 64, 7), new(256, 256, 3, 128, 5), new(256, 128, 1, 256, 1) })
            Time(threads, s, DType.BF16, output);
    }

    /// <summary>First (cold) and best wall time of one shape on a fresh device, printed with GFLOP/s.</summary>
    private static (double Best, double First) Time(int threads, ConvShape s, DType dtype, TextWriter output)
    {
        using var device = new CpuDevice(threads);
        var (x, w, b, y) = MakeTensors(device, s, dtype);
        using (x) using (w) using (b) using (y)
        {
            var pad = Conv2dPadding.Same(s.K / 2);
            double flop = s.Flop;
            var cold = Stopwatch.StartNew();
            Conv2d.Forward(x, w, b, y, 1, pad); // the first call: the pool's scratch buffers are fresh
            double first = cold.Elapsed.TotalSeconds;
            int reps = Math.Clamp((int)(3e10 / flop), 3, 50);
            double best = double.MaxValue, total = 0, bestCpu = double.MaxValue;
            for (int r = 0; r < reps; r++)
            {
                double cpu0 = ProcessCpuSeconds();
                var sw = Stopwatch.StartNew();
                Conv2d.Forward(x, w, b, y, 1, pad);
                double t = sw.Elapsed.TotalSeconds;
                bestCpu = Math.Min(bestCpu, ProcessCpuSeconds() - cpu0);
                best = Math.Min(best, t);
                total += t;
            }
            // On a shared machine wall time includes time other processes held our cores; GFLOP per
            // CPU-second × threads is what the threads would reach with the cores to themselves.
            output.WriteLine($"  {s.C,3}->{s.O,3} {s.K}x{s.K} {s.Hw,3}x{s.Hw,-3} {dtype,-4}: first {first * 1e3,7:F1} ms = {flop / first / 1e9,6:F1} GFLOP/s; " +
                $"best {best * 1e3,7:F2} ms = {flop / best / 1e9,6:F1} GFLOP/s wall (mean {flop / (total / reps) / 1e9,6:F1}, {reps} runs); {flop / bestCpu / 1e9 * device.Threads,6:F1} on {device.Threads} free cores");
            return (best, first);
        }
    }

    /// <summary>
    /// <c>conv-ab FLAG [reps] [shape index ...]</c>: A/B of an internal static bool switch of Conv2d (off, on alternating
    /// in one process, best and median of <c>reps</c> pairs per shape), F32 weights, all threads.
    /// </summary>
    public static void RunAB(string[] args)
    {
        string flag = args[0];
        int reps = args.Length > 1 ? int.Parse(args[1]) : 5;
        var pick = args.Skip(2).Select(int.Parse).ToHashSet();
        var field = typeof(Conv2d).GetField(flag, System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)
            ?? throw new ArgumentException($"Conv2d has no internal static bool {flag}");
        using var device = new CpuDevice();
        Console.WriteLine($"A/B Conv2d.{flag}, {device.Threads} threads, {reps} pairs");
        for (int i = 0; i < VaeDecoderShapes.Length; i++)
        {
            if (pick.Count > 0 && !pick.Contains(i)) continue;
            var s = VaeDecoderShapes[i];
            var (x, w, b, y) = MakeTensors(device, s, DType.F32);
            using (x) using (w) using (b) using (y)
            {
                var pad = Conv2dPadding.Same(s.K / 2);
                var times = new[] { new List<double>(), new List<double>() };
                for (int r = 0; r < reps + 1; r++)
                    for (int v = 0; v < 2; v++)
                    {
                        field.SetValue(null, v == 1);
                        var sw = Stopwatch.StartNew();
                        Conv2d.Forward(x, w, b, y, 1, pad);
                        if (r > 0) times[v].Add(sw.Elapsed.TotalSeconds);
                    }
                field.SetValue(null, false);
                double G(double t) => s.Flop / t / 1e9;
                double Median(List<double> l) { var o = l.Order().ToList(); return o[o.Count / 2]; }
                Console.WriteLine($"  [{i,2}] {s,-24} off best {G(times[0].Min()),6:F1} med {G(Median(times[0])),6:F1}   on best {G(times[1].Min()),6:F1} med {G(Median(times[1])),6:F1} GFLOP/s");
            }
        }
    }

    private static double ProcessCpuSeconds()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime.TotalSeconds;
    }

    internal static (int C, int Hw) Parse(string shape)
    {
        var parts = shape.Split('x');
        return (int.Parse(parts[0]), int.Parse(parts[1]));
    }

    internal static (Tensor X, Tensor W, Tensor B, Tensor Y) MakeTensors(Device device, int c, int hw, DType weightType) =>
        MakeTensors(device, new ConvShape(c, c, 3, hw, 1), weightType);

    internal static (Tensor X, Tensor W, Tensor B, Tensor Y) MakeTensors(Device device, ConvShape s, DType weightType)
    {
        var rng = new Random(1);
        var xs = new float[s.C * s.Hw * s.Hw];
        var ws = new float[s.O * s.C * s.K * s.K];
        var bs = new float[s.O];
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < ws.Length; i++) ws[i] = (float)(rng.NextDouble() * 0.1 - 0.05);
        for (int i = 0; i < bs.Length; i++) bs[i] = (float)rng.NextDouble();
        var x = Tensor.FromArray(device, xs, s.C, s.Hw, s.Hw);
        var w = weightType == DType.BF16
            ? Tensor.FromSpan<ushort>(device, Array.ConvertAll(ws, Bf16.FromFloat), new Shape(s.O, s.C, s.K, s.K), DType.BF16)
            : Tensor.FromArray(device, ws, s.O, s.C, s.K, s.K);
        var b = Tensor.FromArray(device, bs, s.O);
        var y = Tensor.Empty(device, DType.F32, s.O, s.Hw, s.Hw);
        return (x, w, b, y);
    }
}
