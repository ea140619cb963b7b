using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>
/// The register tile for x64 CPUs without AVX-512 (AVX2 + FMA: 16 ymm registers). It reads the same packed panels as
/// <see cref="Kernel14x32"/> (14 A rows and 32 B columns per k) in five passes that each fit the register file: rows 0–5
/// and 6–11 in 6×16 tiles (12 accumulators + 2 B vectors + 1 broadcast = 15 registers) for each 16-column half, then
/// rows 12–13 as a 2×32 tile. Every output element is the same FMA chain over k as in the AVX-512 tile, so both give
/// identical results.
/// </summary>
internal static unsafe partial class GemmCpu
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel14x32Avx2(float* a, float* b, int kc, float* c, long ldc, int mr, int nr, bool accumulate, float* bias, float* scale)
    {
        for (int r0 = 0; r0 < Math.Min(mr, 12); r0 += 6)
            for (int h = 0; h < Math.Min(nr, NR); h += 16)
                Tile6x16(a + r0, b + h, kc, c + r0 * ldc + h, ldc, Math.Min(6, mr - r0), Math.Min(16, nr - h), accumulate,
                    bias == null ? null : bias + h, scale == null ? null : scale + h);
        if (mr > 12) Tile2x32(a + 12, b, kc, c + 12 * ldc, ldc, mr - 12, nr, accumulate, bias, scale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6x16(float* a, float* b, int kc, float* c, long ldc, int rows, int cols, bool accumulate, float* bias, float* scale)
    {
        Vector256<float>* acc = stackalloc Vector256<float>[12];
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]); c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]); c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]); c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]); c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]); c40 = Fma.MultiplyAdd(x, b0, c40); c41 = Fma.MultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]); c50 = Fma.MultiplyAdd(x, b0, c50); c51 = Fma.MultiplyAdd(x, b1, c51);
            a += MR;
            b += NR;
        }
        // Parked in memory before any call: accumulators live across a call get spilled inside the k loop (all ymm
        // registers are caller-saved), which measured 3.5× slower.
        acc[0] = c00; acc[1] = c01; acc[2] = c10; acc[3] = c11; acc[4] = c20; acc[5] = c21;
        acc[6] = c30; acc[7] = c31; acc[8] = c40; acc[9] = c41; acc[10] = c50; acc[11] = c51;
        for (int r = 0; r < rows; r++) Store16(c + r * ldc, acc[2 * r], acc[2 * r + 1], cols, accumulate, bias, scale);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile2x32(float* a, float* b, int kc, float* c, long ldc, int rows, int nr, bool accumulate, float* bias, float* scale)
    {
        Vector256<float>* acc = stackalloc Vector256<float>[8];
        Vector256<float> c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var b2 = Vector256.Load(b + 16);
            var b3 = Vector256.Load(b + 24);
            var x = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01); c02 = Fma.MultiplyAdd(x, b2, c02); c03 = Fma.MultiplyAdd(x, b3, c03);
            x = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11); c12 = Fma.MultiplyAdd(x, b2, c12); c13 = Fma.MultiplyAdd(x, b3, c13);
            a += MR;
            b += NR;
        }
        acc[0] = c00; acc[1] = c01; acc[2] = c02; acc[3] = c03; acc[4] = c10; acc[5] = c11; acc[6] = c12; acc[7] = c13;
        for (int h = 0; h < nr; h += 16)
        {
            float* bh = bias == null ? null : bias + h, sh = scale == null ? null : scale + h;
            int cols = Math.Min(16, nr - h), q = h / 8;
            for (int r = 0; r < rows; r++) Store16(c + r * ldc + h, acc[4 * r + q], acc[4 * r + q + 1], cols, accumulate, bh, sh);
        }
    }

    /// <summary>One row of 16 columns (the first <paramref name="cols"/> kept), as <see cref="TileStore"/> does it: times the
    /// column scale (FP8 weights), then + bias (or + 0) on the first K block, + C after it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(float* c, Vector256<float> v0, Vector256<float> v1, int cols, bool accumulate, float* bias, float* scale)
    {
        if (cols == 16)
        {
            if (scale != null) { v0 *= Vector256.Load(scale); v1 *= Vector256.Load(scale + 8); }
            if (accumulate) { v0 += Vector256.Load(c); v1 += Vector256.Load(c + 8); }
            else if (bias != null) { v0 += Vector256.Load(bias); v1 += Vector256.Load(bias + 8); }
            else { v0 += Vector256<float>.Zero; v1 += Vector256<float>.Zero; }
            Vector256.Store(v0, c);
            Vector256.Store(v1, c + 8);
            return;
        }
        float* tmp = stackalloc float[16];
        Vector256.Store(v0, tmp);
        Vector256.Store(v1, tmp + 8);
        for (int j = 0; j < cols; j++)
        {
            float v = scale != null ? tmp[j] * scale[j] : tmp[j];
            c[j] = v + (accumulate ? c[j] : bias != null ? bias[j] : 0f);
        }
    }

    /// <summary><see cref="PackA"/> without AVX-512: the same panels (MR rows per k, zero rows past mc), row by row
    /// (sequential reads, stores within one L1-resident panel).</summary>
    private static void PackAScalar(float* a, long lda, int m0, int mc, int k0, int kc, float* dst)
    {
        for (int ip = 0; ip < mc; ip += MR)
        {
            int mr = Math.Min(MR, mc - ip);
            float* panel = dst + (long)ip * kc;
            for (int i = 0; i < MR; i++)
            {
                if (i >= mr) { for (int kk = 0; kk < kc; kk++) panel[kk * MR + i] = 0f; continue; }
                float* row = a + (m0 + ip + i) * lda + k0;
                for (int kk = 0; kk < kc; kk++) panel[kk * MR + i] = row[kk];
            }
        }
    }

    /// <summary><see cref="PackB"/> without AVX-512: the same NR-column panels, weight rows widened element by element.</summary>
    private static void PackBScalar<TRow>(in BOperand b, int k0, int kc, int n0, int nc, float* dst) where TRow : struct, IWeightRow
    {
        for (int jp = 0; jp < nc; jp += NR)
        {
            int nr = Math.Min(NR, nc - jp);
            float* panel = dst + (long)jp * kc;
            for (int j = 0; j < NR; j++)
            {
                if (j >= nr) { for (int kk = 0; kk < kc; kk++) panel[kk * NR + j] = 0f; continue; }
                if (b.Layout == BLayout.KN)
                {
                    float* col = (float*)b.Data + (long)k0 * b.Stride + n0 + jp + j;
                    for (int kk = 0; kk < kc; kk++) panel[kk * NR + j] = col[kk * b.Stride];
                }
                else
                {
                    long offset = (n0 + jp + j) * b.Stride + k0;
                    for (int kk = 0; kk < kc; kk++) panel[kk * NR + j] = TRow.Load1(b.Data, offset + kk);
                }
            }
        }
    }

    /// <summary><see cref="GemvRows{TRow}"/> without AVX-512: 8-wide FMA chains per row of A, scalar tail, same scale/bias order.</summary>
    private static void GemvRowsAvx2<TRow>(float* a, long lda, in BOperand b, float* bias, float* c, long ldc, int m, int n0, int n1, int k)
        where TRow : struct, IWeightRow
    {
        int full = k & ~7;
        for (int j = n0; j < n1; j++)
        {
            long rowOffset = j * b.Stride;
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int p = 0; p < full; p += 8)
            {
                var w = TRow.Load8(b.Data, rowOffset + p);
                s0 = Fma.MultiplyAdd(Vector256.Load(a + p), w, s0);
                if (m > 1) s1 = Fma.MultiplyAdd(Vector256.Load(a + lda + p), w, s1);
                if (m > 2) s2 = Fma.MultiplyAdd(Vector256.Load(a + 2 * lda + p), w, s2);
                if (m > 3) s3 = Fma.MultiplyAdd(Vector256.Load(a + 3 * lda + p), w, s3);
            }
            float t0 = Vector256.Sum(s0), t1 = Vector256.Sum(s1), t2 = Vector256.Sum(s2), t3 = Vector256.Sum(s3);
            for (int p = full; p < k; p++)
            {
                float w = TRow.Load1(b.Data, rowOffset + p);
                t0 += a[p] * w;
                if (m > 1) t1 += a[lda + p] * w;
                if (m > 2) t2 += a[2 * lda + p] * w;
                if (m > 3) t3 += a[3 * lda + p] * w;
            }
            float add = bias == null ? 0f : bias[j], scale = b.Scale == null ? 1f : b.Scale[j];
            c[j] = t0 * scale + add;
            if (m > 1) c[ldc + j] = t1 * scale + add;
            if (m > 2) c[2 * ldc + j] = t2 * scale + add;
            if (m > 3) c[3 * ldc + j] = t3 * scale + add;
        }
    }
}
