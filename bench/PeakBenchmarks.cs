using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Bench;

/// <summary>
/// The machine's reference line: what the hardware can do, against which every kernel is judged.
/// <c>dotnet run -c Release --project bench -- peak [--quick] [--only fma|mem|blas] [--keep-coretype]</c> measures
/// (a) FP32 FMA peak: a register-resident Vector512 FMA loop with 16 independent accumulators, 1 and 2 threads;
/// (b) memory bandwidth on a 1 GiB array: read (sum), copy (counted as bytes read + bytes written) and write (fill);
/// (c) OpenBLAS sgemm (C = A·Bᵀ, fp32) at M×N×K = 4096×3072×3072 and 768×9216×3072, 1 and 2 threads.
/// Each figure is the best of several runs (the machine is shared; the best is the least disturbed).
/// OPENBLAS_CORETYPE (set to Haswell on some machines, which forces AVX2 kernels) is read when OpenBLAS loads,
/// so this command re-executes itself with the best kernel family for this CPU (<see cref="OpenBlas.BestCoreType"/>:
/// OpenBLAS 0.3.21 falls back to SSE3 on CPUs newer than itself) — --keep-coretype keeps the variable as it is.
/// </summary>
public static unsafe class PeakBenchmarks
{
    public static int Run(string[] args)
    {
        if (!args.Contains("--keep-coretype") && OpenBlas.RerunWithBestCoreType(["peak", .. args]) is { } code) return code;

        bool quick = args.Contains("--quick");
        int onlyAt = Array.IndexOf(args, "--only");
        string only = onlyAt >= 0 && onlyAt + 1 < args.Length ? args[onlyAt + 1] : "all";
        bool Want(string part) => only == "all" || only == part;
        int reps = quick ? 2 : 5;
        long bytes = quick ? 256L << 20 : 1L << 30;

        Console.WriteLine($"# machine: {CpuDescription()}");
        Console.WriteLine($"# .NET {Environment.Version}, Vector512 hardware-accelerated: {Vector512.IsHardwareAccelerated}, {Environment.ProcessorCount} logical processors");
        Console.WriteLine($"# each number: best of {reps} runs");

        foreach (int threads in Want("fma") ? new[] { 1, 2 } : [])
        {
            double gflops = Best(reps, () => FmaPeak(threads, quick ? 1L << 24 : 1L << 26));
            Console.WriteLine($"fp32 FMA peak (Vector512, 16 accumulators), {threads} thread{(threads > 1 ? "s" : " ")}: {gflops,8:F1} GFLOP/s");
        }

        float* src = Want("mem") ? Alloc(bytes) : null, dst = Want("mem") ? Alloc(bytes) : null;
        if (src != null)
        try
        {
            long n = bytes / sizeof(float);
            var init = new Span<float>(src, checked((int)n));
            for (int i = 0; i < init.Length; i++) init[i] = (i & 1023) * 1e-3f;
            new Span<float>(dst, (int)n).Clear(); // first touch: pages are mapped before timing
            foreach (int threads in new[] { 1, 2 })
            {
                double read = Best(reps, () => Bandwidth(threads, n, bytes, (lo, hi) => Sink(Sum(src + lo, hi - lo))));
                double copy = Best(reps, () => Bandwidth(threads, n, 2 * bytes, (lo, hi) => Buffer.MemoryCopy(src + lo, dst + lo, (hi - lo) * 4, (hi - lo) * 4)));
                double write = Best(reps, () => Bandwidth(threads, n, bytes, (lo, hi) => new Span<float>(dst + lo, checked((int)(hi - lo))).Fill(1f)));
                Console.WriteLine($"memory bandwidth {bytes >> 20} MiB, {threads} thread{(threads > 1 ? "s" : " ")}: read {read,6:F1} GB/s, copy {copy,6:F1} GB/s (read+write bytes), write {write,6:F1} GB/s");
            }
        }
        finally
        {
            NativeMemory.AlignedFree(src);
            NativeMemory.AlignedFree(dst);
        }

        if (!Want("blas")) return 0;
        if (!OpenBlas.TryLoad(out var why))
        {
            Console.WriteLine($"OpenBLAS sgemm: skipped: {why}");
            return 0;
        }
        Console.WriteLine($"# OpenBLAS: {OpenBlas.LibraryPath}; core {OpenBlas.CoreName}; {OpenBlas.Config.Trim()}; OPENBLAS_CORETYPE={Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") ?? "(unset)"}");
        int[][] shapes = quick ? [[1024, 768, 768]] : [[4096, 3072, 3072], [768, 9216, 3072]];
        foreach (var s in shapes)
            foreach (int threads in new[] { 1, 2 })
            {
                double g = SgemmGflops(s[0], s[1], s[2], threads, quick ? 2 : 4);
                Console.WriteLine($"OpenBLAS sgemm M×N×K {s[0]}×{s[1]}×{s[2]} (A·Bᵀ), {threads} thread{(threads > 1 ? "s" : " ")}: {g,7:F1} GFLOP/s");
            }
        return 0;
    }

    private static double Best(int reps, Func<double> measure)
    {
        double best = 0;
        for (int i = 0; i < reps; i++) best = Math.Max(best, measure());
        return best;
    }

    // ---- (a) FMA peak ---------------------------------------------------------------------------------

    /// <summary>GFLOP/s of <paramref name="threads"/> threads each running <paramref name="iterations"/> × 16 FMAs.</summary>
    private static double FmaPeak(int threads, long iterations)
    {
        var sums = new float[threads];
        var start = new Barrier(threads + 1);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            sums[t] = FmaLoop(iterations, 1f + t);
        })).ToList();
        foreach (var w in workers) w.Start();
        start.SignalAndWait();
        var sw = Stopwatch.StartNew();
        foreach (var w in workers) w.Join();
        double seconds = sw.Elapsed.TotalSeconds;
        Sink(sums.Sum());
        // 16 accumulators × 16 lanes × 2 flops per FMA.
        return threads * (double)iterations * 16 * 16 * 2 / seconds / 1e9;
    }

    /// <summary>
    /// 16 independent dependency chains of Vector512 FMAs (Zen 4: FMA latency 4 cycles, 512-bit throughput 1/cycle
    /// on two double-pumped 256-bit pipes, so ≥ 4 chains keep the units busy; 16 leaves margin). The multiplier is just
    /// below 1 and the addend small, so the values stay finite and never denormal.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float FmaLoop(long iterations, float seed)
    {
        var m = Vector512.Create(0.999999f);
        var c = Vector512.Create(1e-6f);
        Vector512<float> a0 = Vector512.Create(seed), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c, a6 = a5 + c, a7 = a6 + c;
        Vector512<float> a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c, a12 = a11 + c, a13 = a12 + c, a14 = a13 + c, a15 = a14 + c;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c);
            a2 = Vector512.FusedMultiplyAdd(a2, m, c); a3 = Vector512.FusedMultiplyAdd(a3, m, c);
            a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c);
            a8 = Vector512.FusedMultiplyAdd(a8, m, c); a9 = Vector512.FusedMultiplyAdd(a9, m, c);
            a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
            a12 = Vector512.FusedMultiplyAdd(a12, m, c); a13 = Vector512.FusedMultiplyAdd(a13, m, c);
            a14 = Vector512.FusedMultiplyAdd(a14, m, c); a15 = Vector512.FusedMultiplyAdd(a15, m, c);
        }
        var s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11)) + ((a12 + a13) + (a14 + a15));
        return Vector512.Sum(s);
    }

    // ---- (b) memory bandwidth ---------------------------------------------------------------------------

    /// <summary>GB/s (10^9 bytes) for <paramref name="work"/> split in contiguous chunks over <paramref name="threads"/> threads.</summary>
    private static double Bandwidth(int threads, long elements, long bytesMoved, Action<long, long> work)
    {
        var start = new Barrier(threads + 1);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            long lo = elements * t / threads / 16 * 16, hi = t == threads - 1 ? elements : elements * (t + 1) / threads / 16 * 16;
            start.SignalAndWait();
            work(lo, hi);
        })).ToList();
        foreach (var w in workers) w.Start();
        start.SignalAndWait();
        var sw = Stopwatch.StartNew();
        foreach (var w in workers) w.Join();
        return bytesMoved / sw.Elapsed.TotalSeconds / 1e9;
    }

    /// <summary>Sum with 4 independent Vector512 accumulators (enough to stay load-bound, not add-latency-bound).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Sum(float* p, long n)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        long i = 0;
        for (; i + 64 <= n; i += 64)
        {
            s0 += Vector512.Load(p + i);
            s1 += Vector512.Load(p + i + 16);
            s2 += Vector512.Load(p + i + 32);
            s3 += Vector512.Load(p + i + 48);
        }
        float tail = 0;
        for (; i < n; i++) tail += p[i];
        return Vector512.Sum((s0 + s1) + (s2 + s3)) + tail;
    }

    private static float* Alloc(long bytes) => (float*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);

    private static volatile float _sink;
    private static void Sink(float v) => _sink = v;

    // ---- (c) OpenBLAS sgemm ---------------------------------------------------------------------------

    private static double SgemmGflops(int m, int n, int k, int threads, int reps)
    {
        OpenBlas.SetNumThreads(threads);
        float* a = Alloc((long)m * k * 4), b = Alloc((long)n * k * 4), c = Alloc((long)m * n * 4);
        try
        {
            var rng = new Random(1);
            for (long i = 0; i < (long)m * k; i++) a[i] = (float)rng.NextDouble() - 0.5f;
            for (long i = 0; i < (long)n * k; i++) b[i] = (float)rng.NextDouble() - 0.5f;
            OpenBlas.SgemmNT(m, n, k, a, b, c); // warm-up: thread pool, page faults on C
            double best = double.MaxValue;
            for (int r = 0; r < reps; r++)
            {
                var sw = Stopwatch.StartNew();
                OpenBlas.SgemmNT(m, n, k, a, b, c);
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return 2.0 * m * n * k / best / 1e9;
        }
        finally
        {
            NativeMemory.AlignedFree(a);
            NativeMemory.AlignedFree(b);
            NativeMemory.AlignedFree(c);
        }
    }

    private static string CpuDescription()
    {
        string model = "?", mhz = "?", cache = "?";
        var flags = new List<string>();
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                var parts = line.Split(':', 2);
                if (parts.Length < 2) continue;
                var (key, value) = (parts[0].Trim(), parts[1].Trim());
                if (key == "model name" && model == "?") model = value;
                else if (key == "cpu MHz" && mhz == "?") mhz = value;
                else if (key == "cache size" && cache == "?") cache = value;
                else if (key == "flags" && flags.Count == 0)
                    flags.AddRange(value.Split(' ').Where(f => f is "avx2" or "fma" or "avx512f" or "avx512_bf16" or "avx512_vnni" or "avx512vl"));
            }
        }
        catch (IOException) { }
        return $"{model}, {Environment.ProcessorCount} logical CPUs, {mhz} MHz (as reported), L2 {cache}, {string.Join(" ", flags)}";
    }
}
