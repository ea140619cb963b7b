using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace PureFlux.Bench;

/// <summary>
/// Attention at FLUX.2 klein shapes: 24 heads × D 128, S = 1536 (256² image = 1024 tokens + 512 text tokens) and
/// S = 4608 (1024² image = 4096 + 512). Flops counted as 4·S²·D·H (Q·Kᵀ and P·V, one FMA = 2 flops).
/// <c>dotnet run -c Release --project bench -- --filter '*Attention*'</c>; PUREFLUX_THREADS sets the CPU threads.
/// </summary>
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class AttentionBenchmarks
{
    private CpuDevice _device = null!;
    private Tensor _q = null!, _k = null!, _v = null!, _o = null!;

    [Params(1536, 4608)]
    public int S { get; set; }

    public const int Heads = 24, HeadDim = 128;

    [GlobalSetup]
    public void Setup()
    {
        _device = new CpuDevice();
        (_q, _k, _v, _o) = AttentionQuickBench.MakeTensors(_device, S, Heads, HeadDim);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _q.Dispose(); _k.Dispose(); _v.Dispose(); _o.Dispose();
        _device.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void Materialised() => AttentionQuickBench.MaterialisedBaseline(_device, _q, _k, _v, _o);

    [Benchmark]
    public void Flash() => Attention.Forward(_q, _k, _v, _o);
}

/// <summary>Plain console timing of attention (no BenchmarkDotNet): best-of-N wall time and GFLOP/s.</summary>
public static class AttentionQuickBench
{
    public static (Tensor Q, Tensor K, Tensor V, Tensor O) MakeTensors(Device device, int s, int heads, int d)
    {
        var rng = new Random(7);
        float[] Rand()
        {
            var a = new float[(long)s * heads * d];
            for (long i = 0; i < a.Length; i++) a[i] = rng.NextSingle() * 2f - 1f;
            return a;
        }
        return (Tensor.FromArray(device, Rand(), s, heads, d), Tensor.FromArray(device, Rand(), s, heads, d),
            Tensor.FromArray(device, Rand(), s, heads, d), Tensor.Empty(device, DType.F32, s, heads, d));
    }

    /// <summary>
    /// The straightforward way, for the ratio: per head, gather Q/K/V into [S, D], materialise the S×S scores
    /// (TensorPrimitives.Dot per element), softmax each row, then O = P·V as row axpys (TensorPrimitives.MultiplyAdd).
    /// Threads over heads.
    /// </summary>
    public static void MaterialisedBaseline(CpuDevice device, Tensor q, Tensor k, Tensor v, Tensor o)
    {
        int s = q.Shape[0], heads = q.Shape[1], d = q.Shape[2];
        float scale = 1f / MathF.Sqrt(d);
        Parallel.For(0, heads, device.ParallelOptions, h =>
        {
            var qh = Gather(q, h); var kh = Gather(k, h); var vh = Gather(v, h);
            var scores = new float[(long)s * s];
            var oh = new float[(long)s * d];
            for (int i = 0; i < s; i++)
            {
                var qi = qh.AsSpan(i * d, d);
                var row = scores.AsSpan(i * s, s);
                for (int j = 0; j < s; j++) row[j] = TensorPrimitives.Dot(qi, kh.AsSpan(j * d, d)) * scale;
                float max = TensorPrimitives.Max(row);
                TensorPrimitives.Subtract(row, max, row);
                TensorPrimitives.Exp(row, row);
                TensorPrimitives.Multiply(row, 1f / TensorPrimitives.Sum(row), row);
                var oi = oh.AsSpan(i * d, d);
                for (int j = 0; j < s; j++) TensorPrimitives.MultiplyAdd(vh.AsSpan(j * d, d), row[j], oi, oi);
            }
            var dst = o.AsSpan<float>();
            for (int i = 0; i < s; i++) oh.AsSpan(i * d, d).CopyTo(dst.Slice((i * heads + h) * d, d));
        });
    }

    private static float[] Gather(Tensor t, int h)
    {
        int s = t.Shape[0], heads = t.Shape[1], d = t.Shape[2];
        var src = t.AsSpan<float>();
        var a = new float[s * d];
        for (int i = 0; i < s; i++) src.Slice((i * heads + h) * d, d).CopyTo(a.AsSpan(i * d, d));
        return a;
    }

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

    /// <summary>
    /// Prints time and GFLOP/s of the flash CPU path at S = 1536 and 4608 (24 × 128) on <paramref name="threads"/>
    /// threads (0 = PUREFLUX_THREADS or all), and the materialised baseline at S = 1536 for the ratio.
    /// </summary>
    public static void Run(int threads = 0, bool large = true, bool baseline = true)
    {
        using var device = new CpuDevice(threads);
        Console.WriteLine($"attention, {device.Threads} threads, {device.Name}");
        foreach (int s in large ? new[] { 1536, 4608 } : new[] { 1536 })
        {
            var (q, k, v, o) = MakeTensors(device, s, AttentionBenchmarks.Heads, AttentionBenchmarks.HeadDim);
            double flops = 4.0 * s * s * AttentionBenchmarks.HeadDim * AttentionBenchmarks.Heads;
            double t = Time(() => Attention.Forward(q, k, v, o), s > 2000 ? 1 : 3);
            Console.WriteLine($"  flash        S={s,5} H=24 D=128: {t * 1e3,8:F1} ms  {flops / t / 1e9,6:F1} GFLOP/s");
            if (baseline && s <= 1536)
            {
                double tb = Time(() => MaterialisedBaseline(device, q, k, v, o), 1);
                Console.WriteLine($"  materialised S={s,5} H=24 D=128: {tb * 1e3,8:F1} ms  {flops / tb / 1e9,6:F1} GFLOP/s  (flash is {tb / t:F1}x faster)");
            }
            q.Dispose(); k.Dispose(); v.Dispose(); o.Dispose();
        }
    }
}
