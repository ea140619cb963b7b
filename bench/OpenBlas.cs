using System.Runtime.InteropServices;

namespace PureFlux.Bench;

/// <summary>
/// OpenBLAS through its C ABI, used only as the machine's reference GEMM in the peak benchmarks (never by the
/// engine). Debian: <c>apt-get install -y libopenblas0-pthread</c>. OPENBLAS_CORETYPE is read when the library
/// loads, so <see cref="PeakBenchmarks"/> re-executes itself without it before calling <see cref="TryLoad"/>.
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

    /// <summary>The kernel family OpenBLAS picked for this CPU (e.g. "SkylakeX", "Haswell", "Zen").</summary>
    public static string CoreName => _getCorename is null ? "?" : Marshal.PtrToStringAnsi((nint)_getCorename()) ?? "?";

    public static string Config => _getConfig is null ? "?" : Marshal.PtrToStringAnsi((nint)_getConfig()) ?? "?";

    /// <summary>C[M,N] = A[M,K] · B[N,K]ᵀ, row-major (a Linear layer: weight stored [out, in]).</summary>
    public static void SgemmNT(int m, int n, int k, float* a, float* b, float* c) =>
        _sgemm(RowMajor, NoTrans, Trans, m, n, k, 1f, a, k, b, k, 0f, c, n);
}
