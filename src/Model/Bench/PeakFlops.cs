using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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

    /// <summary>
    /// The int8 dot-product peak in GOP/s (one u8×s8 multiply-add = 2 operations, as FLOP count an FMA) with the widest
    /// instruction .NET exposes on this CPU for the quantized GEMM: AVX-VNNI vpdpbusd on 256-bit registers (32 MACs per
    /// instruction; the 512-bit form needs AVX10, which .NET reports only where CPUID has it). Null where AVX-VNNI is
    /// absent (the quantized GEMM then runs vpmaddwd at about the FP32 rate). Same windows and threads as <see cref="Measure"/>.
    /// </summary>
    public static double? MeasureInt8(double seconds = 0.3, int threads = 0)
    {
        if (!AvxVnni.IsSupported) return null;
        if (threads <= 0) threads = Environment.ProcessorCount;
        if (!(seconds > 0)) throw new ArgumentException($"PeakFlops.MeasureInt8: seconds {seconds} must be positive");
        KernelVnni(1000);
        return Enumerable.Range(0, 3).Max(_ => Window(seconds / 3, threads, KernelVnni, Chains * 32 * 2.0));
    }

    private static double Window(double seconds, int threads) => Window(seconds, threads, n => Kernel(n), FlopPerIteration);

    private static double Window(double seconds, int threads, Func<long, float> kernel, double opsPerIteration)
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
                    kernel(Batch);
                    done += Batch;
                }
                flops[id] = done * opsPerIteration / sw.Elapsed.TotalSeconds;
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

    // vpdpbusd ymm chains: u8 1 × s8 1 summed in fours adds 4 to each int32 lane per instruction (wraps after 2^29
    // iterations per lane; the value is only returned to keep the loop alive).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float KernelVnni(long n)
    {
        var u = Vector256.Create((byte)1);
        var w = Vector256.Create((sbyte)1);
        Vector256<int> s0 = Vector256<int>.Zero, s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0, s8 = s0, s9 = s0;
        for (long i = 0; i < n; i++)
        {
            s0 = AvxVnni.MultiplyWideningAndAdd(s0, u, w); s1 = AvxVnni.MultiplyWideningAndAdd(s1, u, w);
            s2 = AvxVnni.MultiplyWideningAndAdd(s2, u, w); s3 = AvxVnni.MultiplyWideningAndAdd(s3, u, w);
            s4 = AvxVnni.MultiplyWideningAndAdd(s4, u, w); s5 = AvxVnni.MultiplyWideningAndAdd(s5, u, w);
            s6 = AvxVnni.MultiplyWideningAndAdd(s6, u, w); s7 = AvxVnni.MultiplyWideningAndAdd(s7, u, w);
            s8 = AvxVnni.MultiplyWideningAndAdd(s8, u, w); s9 = AvxVnni.MultiplyWideningAndAdd(s9, u, w);
        }
        return Vector256.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9);
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
