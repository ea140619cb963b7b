using System.Runtime.InteropServices;

namespace PureFlux.Bench;

/// <summary>
/// OpenBLAS through its C ABI, used only as the machine's reference GEMM in the peak benchmarks (never by the
/// engine). Debian: <c>apt-get install -y libopenblas0-pthread</c>. OPENBLAS_CORETYPE is read when the library
/// loads, so <see cref="PeakBenchmarks"/> re-executes itself with <see cref="BestCoreType"/> before calling <see cref="TryLoad"/>.
/// </summary>
internal static unsafe class OpenBlas
{
    public const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly string[] Candidates =
    [
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
        "libopenblas.so.0",
        "libopenblas.so",
    ];

    private static delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> _sgemm;
    private static delegate* unmanaged<int, void> _setNumThreads;
    private static delegate* unmanaged<byte*> _getCorename;
    private static delegate* unmanaged<byte*> _getConfig;

    /// <summary>The file that was loaded, or null.</summary>
    public static string? LibraryPath { get; private set; }

    /// <summary>Loads libopenblas; returns false (and why) when it is not installed.</summary>
    public static bool TryLoad(out string reason)
    {
        reason = "";
        if (LibraryPath is not null) return true;
        foreach (var path in Candidates)
        {
            if (!NativeLibrary.TryLoad(path, out var h)) continue;
            _sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)NativeLibrary.GetExport(h, "cblas_sgemm");
            _setNumThreads = (delegate* unmanaged<int, void>)NativeLibrary.GetExport(h, "openblas_set_num_threads");
            _getCorename = NativeLibrary.TryGetExport(h, "openblas_get_corename", out var cn) ? (delegate* unmanaged<byte*>)cn : null;
            _getConfig = NativeLibrary.TryGetExport(h, "openblas_get_config", out var cf) ? (delegate* unmanaged<byte*>)cf : null;
            LibraryPath = path;
            return true;
        }
        reason = "libopenblas not found (apt-get install -y libopenblas0-pthread)";
        return false;
    }

    public static void SetNumThreads(int n) => _setNumThreads(n);

    /// <summary>
    /// The OPENBLAS_CORETYPE that gives this CPU OpenBLAS's best sgemm kernels, from /proc/cpuinfo's flags:
    /// COOPERLAKE (AVX-512 + BF16), SKYLAKEX (AVX-512), HASWELL (AVX2), or null (let OpenBLAS choose).
    /// Needed because a DYNAMIC_ARCH build only knows the CPU models of its release: Debian 12's OpenBLAS 0.3.21 takes
    /// an Emerald Rapids Xeon (family 6, model 207) for a Prescott and runs SSE3 kernels at ~20% of its AVX-512 speed
    /// (measured 2026-11-30: 32.8 vs 151–157 GFLOP/s on one thread at 4096×3072×3072).
    /// </summary>
    private const string ReexecMarker = "PUREFLUX_OPENBLAS_REEXEC";

    /// <summary>
    /// When OPENBLAS_CORETYPE is not <see cref="BestCoreType"/> (and this is not already the re-run), runs this program
    /// again with <paramref name="args"/> and the best core type, and returns its exit code; otherwise null (go on here).
    /// The variable is read when the library loads, so it cannot be changed in-process.
    /// </summary>
    public static int? RerunWithBestCoreType(string[] args)
    {
        string? coreType = Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is { Length: > 0 } set ? set : null;
        string? best = BestCoreType();
        if (string.Equals(coreType, best, StringComparison.OrdinalIgnoreCase) || Environment.GetEnvironmentVariable(ReexecMarker) is not null)
            return null;
        Console.WriteLine($"# OPENBLAS_CORETYPE={coreType ?? "(unset)"}; re-running with {best ?? "(unset)"}, the best kernels for this CPU's flags");
        var psi = new System.Diagnostics.ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        // Under `dotnet PureFlux.Bench.dll` the process is dotnet itself and the dll comes first.
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
            psi.ArgumentList.Add(typeof(OpenBlas).Assembly.Location);
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (best is null) psi.Environment.Remove("OPENBLAS_CORETYPE");
        else psi.Environment["OPENBLAS_CORETYPE"] = best;
        psi.Environment[ReexecMarker] = "1";
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.WaitForExit();
        return p.ExitCode;
    }

    public static string? BestCoreType()
    {
        string flags;
        try { flags = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? ""; }
        catch (IOException) { return null; }
        var set = flags.Split([' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        return set.Contains("avx512f") && set.Contains("avx512_bf16") ? "COOPERLAKE"
            : set.Contains("avx512f") ? "SKYLAKEX"
            : set.Contains("avx2") && set.Contains("fma") ? "HASWELL"
            : null;
    }

    /// <summary>The kernel family OpenBLAS picked for this CPU (e.g. "SkylakeX", "Haswell", "Zen").</summary>
    public static string CoreName => _getCorename is null ? "?" : Marshal.PtrToStringAnsi((nint)_getCorename()) ?? "?";

    public static string Config => _getConfig is null ? "?" : Marshal.PtrToStringAnsi((nint)_getConfig()) ?? "?";

    /// <summary>C[M,N] = A[M,K] · B[N,K]ᵀ, row-major (a Linear layer: weight stored [out, in]).</summary>
    public static void SgemmNT(int m, int n, int k, float* a, float* b, float* c) =>
        _sgemm(RowMajor, NoTrans, Trans, m, n, k, 1f, a, k, b, k, 0f, c, n);
}
