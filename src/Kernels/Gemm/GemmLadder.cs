using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>
/// The CPU GEMM "kernel ladder": each step of the optimisation kept runnable so benchmarks show its gain.
/// All compute y[M, N] = x[M, K] · wᵀ with w [N, K] (PyTorch Linear layout), F32, row-major spans.
/// <list type="number">
/// <item><see cref="Naive"/>: three scalar loops.</item>
/// <item><see cref="Blocked"/>: 64×64 cache blocks, AVX-512 dot products along K (4 weight rows per pass).</item>
/// <item><see cref="Packed"/>: BLIS-style packing + 14×32 register tile, one thread (<see cref="GemmCpu"/>).</item>
/// <item><see cref="PackedParallel"/>: the same across threads (what <see cref="Gemm.Linear"/> runs).</item>
/// </list>
/// </summary>
public static unsafe class GemmLadder
{
    public static void Naive(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int n, int k)
    {
        CheckSizes(nameof(Naive), x, w, y, m, n, k);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float acc = 0f;
                for (int p = 0; p < k; p++) acc += x[i * k + p] * w[j * k + p];
                y[i * n + j] = acc;
            }
    }

    public static void Blocked(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int n, int k)
    {
        CheckSizes(nameof(Blocked), x, w, y, m, n, k);
        const int Block = 64;
        fixed (float* px = x, pw = w, py = y)
        {
            for (int nb = 0; nb < n; nb += Block)
                for (int mb = 0; mb < m; mb += Block)
                    for (int i = mb; i < Math.Min(m, mb + Block); i++)
                    {
                        float* xr = px + (long)i * k;
                        int j = nb, nEnd = Math.Min(n, nb + Block);
                        for (; j + 4 <= nEnd; j += 4)
                            Dot4(xr, pw + (long)j * k, k, py + (long)i * n + j);
                        for (; j < nEnd; j++)
                            py[(long)i * n + j] = Dot1(xr, pw + (long)j * k, k);
                    }
        }
    }

    public static void Packed(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int n, int k) =>
        PackedParallel(x, w, y, m, n, k, 1);

    public static void PackedParallel(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int n, int k, int threads)
    {
        CheckSizes(nameof(PackedParallel), x, w, y, m, n, k);
        fixed (float* px = x, pw = w, py = y)
            GemmCpu.Run(px, k, new BOperand(pw, DType.F32, BLayout.NK, k), null, py, n, m, n, k, threads);
    }

    /// <summary>Four dot products of one x row with four consecutive weight rows; K tail by masked loads.</summary>
    private static void Dot4(float* x, float* w, int k, float* y)
    {
        var s0 = Vector512<float>.Zero; var s1 = s0; var s2 = s0; var s3 = s0;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            var xv = Vector512.Load(x + p);
            s0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w + p), s0);
            s1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w + k + p), s1);
            s2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w + 2L * k + p), s2);
            s3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(w + 3L * k + p), s3);
        }
        if (p < k)
        {
            var mask = TailMask(k - p);
            var xv = Simd512.MaskLoad(x + p, mask);
            s0 = Vector512.FusedMultiplyAdd(xv, Simd512.MaskLoad(w + p, mask), s0);
            s1 = Vector512.FusedMultiplyAdd(xv, Simd512.MaskLoad(w + k + p, mask), s1);
            s2 = Vector512.FusedMultiplyAdd(xv, Simd512.MaskLoad(w + 2L * k + p, mask), s2);
            s3 = Vector512.FusedMultiplyAdd(xv, Simd512.MaskLoad(w + 3L * k + p, mask), s3);
        }
        y[0] = Vector512.Sum(s0);
        y[1] = Vector512.Sum(s1);
        y[2] = Vector512.Sum(s2);
        y[3] = Vector512.Sum(s3);
    }

    private static float Dot1(float* x, float* w, int k)
    {
        var s = Vector512<float>.Zero;
        int p = 0;
        for (; p + 16 <= k; p += 16)
            s = Vector512.FusedMultiplyAdd(Vector512.Load(x + p), Vector512.Load(w + p), s);
        if (p < k)
        {
            var mask = TailMask(k - p);
            s = Vector512.FusedMultiplyAdd(Simd512.MaskLoad(x + p, mask), Simd512.MaskLoad(w + p, mask), s);
        }
        return Vector512.Sum(s);
    }

    private static Vector512<float> TailMask(int count) =>
        Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();

    private static void CheckSizes(string step, ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int n, int k)
    {
        string op = $"GemmLadder.{step}";
        Check.That(m >= 0 && n >= 0 && k >= 0, op, $"sizes must be >= 0, got M={m}, N={n}, K={k}");
        Check.That(x.Length >= (long)m * k, op, $"x holds {x.Length} floats; expected M·K = {(long)m * k}");
        Check.That(w.Length >= (long)n * k, op, $"w holds {w.Length} floats; expected N·K = {(long)n * k}");
        Check.That(y.Length >= (long)m * n, op, $"y holds {y.Length} floats; expected M·N = {(long)m * n}");
    }
}
