using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>Fused single-row loops for the CPU norms (AVX-512, scalar tails): one call per row instead of several
/// TensorPrimitives calls, which cost more than the work itself on 128-wide per-head rows. AVX2-only CPUs take the
/// Vector256 branches with four accumulators (the same 32 partial sums): a sequential scalar sum over thousands of
/// channels would lose accuracy, not just speed.</summary>
internal static unsafe class RowMath
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumOfSquares(float* x, int n)
    {
        int j = 0;
        float sum = 0f;
        if (Vector512.IsHardwareAccelerated && n >= 32)
        {
            // Two accumulators hide the FMA latency.
            Vector512<float> a0 = default, a1 = default;
            for (; j + 32 <= n; j += 32)
            {
                var v0 = Vector512.Load(x + j);
                var v1 = Vector512.Load(x + j + 16);
                a0 = Vector512.FusedMultiplyAdd(v0, v0, a0);
                a1 = Vector512.FusedMultiplyAdd(v1, v1, a1);
            }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; j + 32 <= n; j += 32)
            {
                var v0 = Vector256.Load(x + j); var v1 = Vector256.Load(x + j + 8);
                var v2 = Vector256.Load(x + j + 16); var v3 = Vector256.Load(x + j + 24);
                a0 = Vector256.FusedMultiplyAdd(v0, v0, a0); a1 = Vector256.FusedMultiplyAdd(v1, v1, a1);
                a2 = Vector256.FusedMultiplyAdd(v2, v2, a2); a3 = Vector256.FusedMultiplyAdd(v3, v3, a3);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; j < n; j++) sum += x[j] * x[j];
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(float* x, int n)
    {
        int j = 0;
        float sum = 0f;
        if (Vector512.IsHardwareAccelerated && n >= 32)
        {
            Vector512<float> a0 = default, a1 = default;
            for (; j + 32 <= n; j += 32)
            {
                a0 += Vector512.Load(x + j);
                a1 += Vector512.Load(x + j + 16);
            }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; j + 32 <= n; j += 32)
            {
                a0 += Vector256.Load(x + j); a1 += Vector256.Load(x + j + 8);
                a2 += Vector256.Load(x + j + 16); a3 += Vector256.Load(x + j + 24);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; j < n; j++) sum += x[j];
        return sum;
    }

    /// <summary>Σ (x − mean)².</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float CentredSumOfSquares(float* x, int n, float mean)
    {
        int j = 0;
        float sum = 0f;
        if (Vector512.IsHardwareAccelerated && n >= 32)
        {
            var m = Vector512.Create(mean);
            Vector512<float> a0 = default, a1 = default;
            for (; j + 32 <= n; j += 32)
            {
                var v0 = Vector512.Load(x + j) - m;
                var v1 = Vector512.Load(x + j + 16) - m;
                a0 = Vector512.FusedMultiplyAdd(v0, v0, a0);
                a1 = Vector512.FusedMultiplyAdd(v1, v1, a1);
            }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            var m = Vector256.Create(mean);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; j + 32 <= n; j += 32)
            {
                var v0 = Vector256.Load(x + j) - m; var v1 = Vector256.Load(x + j + 8) - m;
                var v2 = Vector256.Load(x + j + 16) - m; var v3 = Vector256.Load(x + j + 24) - m;
                a0 = Vector256.FusedMultiplyAdd(v0, v0, a0); a1 = Vector256.FusedMultiplyAdd(v1, v1, a1);
                a2 = Vector256.FusedMultiplyAdd(v2, v2, a2); a3 = Vector256.FusedMultiplyAdd(v3, v3, a3);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; j < n; j++) sum += (x[j] - mean) * (x[j] - mean);
        return sum;
    }

    /// <summary>y = (x · s) · w (PyTorch's order for RMSNorm).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleMultiply(float* x, float s, float* w, float* y, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var sv = Vector512.Create(s);
            for (; j + 16 <= n; j += 16)
                (Vector512.Load(x + j) * sv * Vector512.Load(w + j)).Store(y + j);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s);
            for (; j + 8 <= n; j += 8)
                (Vector256.Load(x + j) * sv * Vector256.Load(w + j)).Store(y + j);
        }
        for (; j < n; j++) y[j] = x[j] * s * w[j];
    }

    /// <summary>y = (x − mean) · rstd · a + b (a = 1 + scale, b = shift); plain LayerNorm when a is null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void NormalizeModulate(float* x, float mean, float rstd, float* a, float* b, float* y, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var m = Vector512.Create(mean);
            var r = Vector512.Create(rstd);
            if (a is null)
                for (; j + 16 <= n; j += 16)
                    ((Vector512.Load(x + j) - m) * r).Store(y + j);
            else
                for (; j + 16 <= n; j += 16)
                    Vector512.FusedMultiplyAdd((Vector512.Load(x + j) - m) * r, Vector512.Load(a + j), Vector512.Load(b + j)).Store(y + j);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(mean);
            var r = Vector256.Create(rstd);
            if (a is null)
                for (; j + 8 <= n; j += 8)
                    ((Vector256.Load(x + j) - m) * r).Store(y + j);
            else
                for (; j + 8 <= n; j += 8)
                    Vector256.FusedMultiplyAdd((Vector256.Load(x + j) - m) * r, Vector256.Load(a + j), Vector256.Load(b + j)).Store(y + j);
        }
        for (; j < n; j++)
        {
            float v = (x[j] - mean) * rstd;
            y[j] = a is null ? v : v * a[j] + b[j];
        }
    }
}
