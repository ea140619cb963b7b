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

/// <summary>A quick console timing of the conv shapes of <see cref="ConvBenchmarks"/>, in GFLOP/s (no BenchmarkDotNet).</summary>
public static class ConvQuickBench
{
    /// <summary>Times each shape (best of several runs after a warm-up) with <paramref name="threads"/> threads (0 = all).</summary>
    public static void Run(int threads = 0, TextWriter? output = null)
    {
        output ??= Console.Out;
        using var device = new CpuDevice(threads);
        output.WriteLine($"Conv2d 3x3 pad 1, managed CPU, {device.Threads} threads, {device.Name}");
        foreach (var (c, hw) in new[] { (512, 32), (512, 64), (256, 128) })
        {
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var (x, w, b, y) = MakeTensors(device, c, hw, dtype);
                using (x) using (w) using (b) using (y)
                {
                    double flop = 2.0 * c * c * 9 * hw * hw;
                    Conv2d.Forward(x, w, b, y, 1, Conv2dPadding.Same(1)); // warm-up (JIT, pool)
                    int reps = Math.Max(3, (int)(3e10 / flop));
                    double best = double.MaxValue, total = 0, bestCpu = double.MaxValue;
                    for (int r = 0; r < reps; r++)
                    {
                        double cpu0 = ProcessCpuSeconds();
                        var sw = Stopwatch.StartNew();
                        Conv2d.Forward(x, w, b, y, 1, Conv2dPadding.Same(1));
                        double t = sw.Elapsed.TotalSeconds;
                        bestCpu = Math.Min(bestCpu, ProcessCpuSeconds() - cpu0);
                        best = Math.Min(best, t);
                        total += t;
                    }
                    // On a shared machine wall time includes time other processes held our cores; GFLOP per
                    // CPU-second × threads is what the threads would reach with the cores to themselves.
                    output.WriteLine($"  {c,3}->{c,3} {hw,3}x{hw,-3} weights {dtype,-4}: best {best * 1e3,8:F2} ms = {flop / best / 1e9,6:F1} GFLOP/s wall " +
                        $"(mean {flop / (total / reps) / 1e9,6:F1}, {reps} runs); {flop / bestCpu / 1e9,6:F1} GFLOP per CPU-s = {flop / bestCpu / 1e9 * device.Threads,6:F1} GFLOP/s on {device.Threads} free cores");
                }
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

    internal static (Tensor X, Tensor W, Tensor B, Tensor Y) MakeTensors(Device device, int c, int hw, DType weightType)
    {
        var rng = new Random(1);
        var xs = new float[c * hw * hw];
        var ws = new float[c * c * 9];
        var bs = new float[c];
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < ws.Length; i++) ws[i] = (float)(rng.NextDouble() * 0.1 - 0.05);
        for (int i = 0; i < bs.Length; i++) bs[i] = (float)rng.NextDouble();
        var x = Tensor.FromArray(device, xs, c, hw, hw);
        var w = weightType == DType.BF16
            ? Tensor.FromSpan<ushort>(device, Array.ConvertAll(ws, Bf16.FromFloat), new Shape(c, c, 3, 3), DType.BF16)
            : Tensor.FromArray(device, ws, c, c, 3, 3);
        var b = Tensor.FromArray(device, bs, c);
        var y = Tensor.Empty(device, DType.F32, c, hw, hw);
        return (x, w, b, y);
    }
}
