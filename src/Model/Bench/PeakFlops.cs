using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Model.Bench;

/// <summary>
/// Measured FMA peak of this CPU: every thread runs independent FMA chains on registers for a fixed time.
/// Ten chains cover the FMA latency × throughput product of current x86 cores (Zen 4: 4 cycles × 2 pipes of
/// 256 bits = 4 Vector512 FMAs in flight; Intel server cores: 4 × 2 × 512). One Vector512 FMA = 32 FLOP.
/// </summary>
public static class PeakFlops
{
    /// <summary>
    /// GFLOP/s summed over <paramref name="threads"/> threads (default: all processors) in about <paramref name="seconds"/>:
    /// the best of three equal windows, so a moment of contention from another process does not lower the peak.
    /// </summary>
    public static double Measure(double seconds = 0.3, int threads = 0)
    {
        if (threads <= 0) threads = Environment.ProcessorCount;
        if (!(seconds > 0)) throw new ArgumentException($"PeakFlops.Measure: seconds {seconds} must be positive");
        Kernel(1000); // JIT before timing
        return Enumerable.Range(0, 3).Max(_ => Window(seconds / 3, threads));
    }

    private static double Window(double seconds, int threads)
    {
        var flops = new double[threads];
        var workers = new Thread[threads];
        var start = new Barrier(threads);
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                var sw = Stopwatch.StartNew();
                long done = 0;
                const long Batch = 200_000;
                while (sw.Elapsed.TotalSeconds < seconds)
                {
                    Kernel(Batch);
                    done += Batch;
                }
                flops[id] = done * FlopPerIteration / sw.Elapsed.TotalSeconds;
            }) { IsBackground = true, Name = "peak-fma" };
            workers[t].Start();
        }
        foreach (var w in workers) w.Join();
        return flops.Sum() / 1e9;
    }

    private const int Chains = 10;
    private static readonly double FlopPerIteration = Chains * 2.0 *
        (Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256.IsHardwareAccelerated ? Vector256<float>.Count : Vector128<float>.Count);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Kernel(long iterations)
    {
        if (Vector512.IsHardwareAccelerated) return Kernel512(iterations);
        if (Vector256.IsHardwareAccelerated) return Kernel256(iterations);
        return Kernel128(iterations);
    }

    // Multipliers just below 1 and addends tiny keep values finite and normal for any iteration count.
    private static float Kernel512(long n)
    {
        var m = Vector512.Create(0.9999999f);
        var a = Vector512.Create(1e-7f);
        Vector512<float> s0 = Vector512.Create(1f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0;
        for (long i = 0; i < n; i++)
        {
            s0 = Vector512.FusedMultiplyAdd(s0, m, a); s1 = Vector512.FusedMultiplyAdd(s1, m, a);
            s2 = Vector512.FusedMultiplyAdd(s2, m, a); s3 = Vector512.FusedMultiplyAdd(s3, m, a);
            s4 = Vector512.FusedMultiplyAdd(s4, m, a); s5 = Vector512.FusedMultiplyAdd(s5, m, a);
            s6 = Vector512.FusedMultiplyAdd(s6, m, a); s7 = Vector512.FusedMultiplyAdd(s7, m, a);
            s8 = Vector512.FusedMultiplyAdd(s8, m, a); s9 = Vector512.FusedMultiplyAdd(s9, m, a);
        }
        return Vector512.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9);
    }

    private static float Kernel256(long n)
    {
        var m = Vector256.Create(0.9999999f);
        var a = Vector256.Create(1e-7f);
        Vector256<float> s0 = Vector256.Create(1f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0;
        for (long i = 0; i < n; i++)
        {
            s0 = Vector256.FusedMultiplyAdd(s0, m, a); s1 = Vector256.FusedMultiplyAdd(s1, m, a);
            s2 = Vector256.FusedMultiplyAdd(s2, m, a); s3 = Vector256.FusedMultiplyAdd(s3, m, a);
            s4 = Vector256.FusedMultiplyAdd(s4, m, a); s5 = Vector256.FusedMultiplyAdd(s5, m, a);
            s6 = Vector256.FusedMultiplyAdd(s6, m, a); s7 = Vector256.FusedMultiplyAdd(s7, m, a);
            s8 = Vector256.FusedMultiplyAdd(s8, m, a); s9 = Vector256.FusedMultiplyAdd(s9, m, a);
        }
        return Vector256.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9);
    }

    private static float Kernel128(long n)
    {
        var m = Vector128.Create(0.9999999f);
        var a = Vector128.Create(1e-7f);
        Vector128<float> s0 = Vector128.Create(1f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0;
        for (long i = 0; i < n; i++)
        {
            s0 = Vector128.FusedMultiplyAdd(s0, m, a); s1 = Vector128.FusedMultiplyAdd(s1, m, a);
            s2 = Vector128.FusedMultiplyAdd(s2, m, a); s3 = Vector128.FusedMultiplyAdd(s3, m, a);
            s4 = Vector128.FusedMultiplyAdd(s4, m, a); s5 = Vector128.FusedMultiplyAdd(s5, m, a);
            s6 = Vector128.FusedMultiplyAdd(s6, m, a); s7 = Vector128.FusedMultiplyAdd(s7, m, a);
            s8 = Vector128.FusedMultiplyAdd(s8, m, a); s9 = Vector128.FusedMultiplyAdd(s9, m, a);
        }
        return Vector128.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9);
    }
}
