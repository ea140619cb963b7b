using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>How the B operand of a GEMM is stored.</summary>
internal enum BLayout
{
    /// <summary>B is a weight [N, K] (PyTorch Linear): C = A · Bᵀ.</summary>
    NK,
    /// <summary>B is [K, N]: C = A · B.</summary>
    KN,
}

/// <summary>The B operand: pointer, element type (F32, F16 or BF16 bits; F8E4M3/F8E5M2 codes for NK), layout and row
/// stride in elements, and an optional per-column scale [N] (FP8 weights: C = (A · Bᵀ) · diag(Scale), applied where a
/// tile is stored, before the bias).</summary>
internal readonly unsafe struct BOperand(void* data, DType type, BLayout layout, long stride)
{
    public readonly void* Data = data;
    public readonly DType Type = type;
    public readonly BLayout Layout = layout;
    public readonly long Stride = stride;
    public float* Scale { get; init; }
}

/// <summary>
/// The packed CPU GEMM: C[M, N] = A[M, K] · B (+ bias), FP32 accumulation, after the BLIS design
/// (Van Zee and van de Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS Functionality", 2015;
/// Goto and van de Geijn, "Anatomy of High-Performance Matrix Multiplication", 2008):
/// <code>
/// for jc in N step NC:                 thread share of N (or of M when N is small)
///   for pc in K step KC:               pack B[pc.., jc..] into KC×NR panels (F16/BF16 widened here)
///     for ic in M step MC:             pack A[ic.., pc..] into MR×KC panels (in L2)
///       for jr in NC step NR:          one B panel (KC×32 floats) stays in L1
///         for ir in MC step MR:        MR×32 register tile, accumulated over KC
/// </code>
/// Edges: packing pads A rows and B columns with zeros, so the micro-kernel always runs a full tile; stores
/// of partial tiles are masked (AVX-512 masked loads/stores), rows beyond M are not stored.
/// </summary>
internal static unsafe partial class GemmCpu
{
    /// <summary>Rows of the register tile: 14 × 2 zmm accumulators + 2 B vectors + 1 broadcast = 31 of 32 registers
    /// (14×32 measured ~5% faster than 12×32 on Zen 4; the JIT keeps all of them in registers, no spills).</summary>
    public const int MR = 14;
    /// <summary>Columns of the register tile: two 16-float vectors.</summary>
    public const int NR = 32;
    /// <summary>K depth of one packed block: the KC×NR B panel (48 KiB) is reused from L1/L2 by every A panel; larger KC means
    /// fewer passes over C. 384 measured best of 192–512 (klein shapes, Zen 4).</summary>
    public const int KC = 384;
    /// <summary>Rows of A packed at once (a multiple of MR): MC×KC floats (420 KiB) live in L2 (1 MiB per core).</summary>
    public const int MC = 280;
    /// <summary>Most columns of B packed at once: KC×NC floats (up to 3 MiB per thread) stay in L3.</summary>
    public const int NC = 3072;

    [ThreadStatic] private static ThreadScratch? _packA, _packB;
    /// <summary>PackB (NK weights) prefetches the next panel's rows while it packs this one: each panel reads 32 rows of a
    /// weight that lie a row stride apart (a page or more), so the hardware prefetcher, which follows streams within a
    /// page, cannot start them early. +1–3% on the klein shapes from memory, +5% under memory contention
    /// (OPTIMIZATION_LOG.md, 2026-12-02 sixth session). A field, not a constant, so `bench gemm-ab PrefetchB` can A/B it.</summary>
    internal static bool PrefetchB = true;

    /// <summary>C = A·B (+ bias) using up to <paramref name="threads"/> threads; <paramref name="rowBias"/> [M], when given,
    /// is added to every row (C[i, j] += rowBias[i]: a convolution's per-output-channel bias with C = weight · input).</summary>
    public static void Run(float* a, long lda, in BOperand b, float* bias, float* c, long ldc, int m, int n, int k, int threads, float* rowBias = null)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            for (int i = 0; i < m; i++)
            {
                var row = new Span<float>(c + i * ldc, n);
                if (bias == null) row.Clear(); else new ReadOnlySpan<float>(bias, n).CopyTo(row);
                if (rowBias != null) for (int j = 0; j < n; j++) row[j] += rowBias[i];
            }
            return;
        }
        if (m <= GemvMaxRows && b.Layout == BLayout.NK && rowBias == null)
        {
            Gemv(a, lda, b, bias, c, ldc, m, n, k, threads);
            return;
        }
        // Work per thread must cover at least a few tiles; split N (no duplicated B packing) when it is
        // wide enough, otherwise M (each thread then packs all of the narrow B).
        long flops = 2L * m * n * k;
        threads = (int)Math.Clamp(Math.Min(threads, flops / (1 << 21)), 1, 64);
        if (threads == 1)
        {
            Block(a, lda, b, bias, c, ldc, 0, m, 0, n, k, rowBias);
            return;
        }
        bool splitN = n >= threads * NR * 2 || n >= m;
        var bb = b;
        nint pa = (nint)a, pbias = (nint)bias, pc = (nint)c, prow = (nint)rowBias;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            if (splitN)
            {
                var (start, len) = Partition.Range(n, t, threads, NR);
                if (len > 0) Block((float*)pa, lda, bb, (float*)pbias, (float*)pc, ldc, 0, m, (int)start, (int)len, k, (float*)prow);
            }
            else
            {
                var (start, len) = Partition.Range(m, t, threads, MR);
                if (len > 0) Block((float*)pa, lda, bb, (float*)pbias, (float*)pc, ldc, (int)start, (int)len, 0, n, k, (float*)prow);
            }
        });
    }

    /// <summary>Up to this many rows of A, a Linear streams the weight once (dot products) instead of packing it:
    /// packing costs about as much as the product itself when M is tiny (e.g. M = 1 modulation linears).</summary>
    public const int GemvMaxRows = 4;

    /// <summary>C[m ≤ 4, N] = A · Bᵀ (+ bias) for a weight B [N, K]: each weight row is read once (widened 16 at a time)
    /// and multiplied with every row of A; threads split N.</summary>
    private static void Gemv(float* a, long lda, in BOperand b, float* bias, float* c, long ldc, int m, int n, int k, int threads)
    {
        threads = (int)Math.Clamp(Math.Min(threads, (long)n * k / (1 << 16)), 1, 64);
        var bb = b;
        nint pa = (nint)a, pbias = (nint)bias, pc = (nint)c;
        if (threads == 1) { GemvRows(a, lda, bb, bias, c, ldc, m, 0, n, k); return; }
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var (start, len) = Partition.Range(n, t, threads, 16);
            GemvRows((float*)pa, lda, bb, (float*)pbias, (float*)pc, ldc, m, (int)start, (int)(start + len), k);
        });
    }

    private static void GemvRows(float* a, long lda, in BOperand b, float* bias, float* c, long ldc, int m, int n0, int n1, int k)
    {
        if (!Simd512.Native)
        {
            switch (b.Type)
            {
                case DType.F32: GemvRowsAvx2<F32Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
                case DType.BF16: GemvRowsAvx2<Bf16Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
                case DType.F8E4M3: GemvRowsAvx2<F8E4M3Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
                case DType.F8E5M2: GemvRowsAvx2<F8E5M2Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
                default: GemvRowsAvx2<F16Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
            }
            return;
        }
        switch (b.Type)
        {
            case DType.F32: GemvRows<F32Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
            case DType.BF16: GemvRows<Bf16Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
            case DType.F8E4M3: GemvRows<F8E4M3Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
            case DType.F8E5M2: GemvRows<F8E5M2Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
            default: GemvRows<F16Row>(a, lda, b, bias, c, ldc, m, n0, n1, k); break;
        }
    }

    /// <summary>The GEMV loop, specialised by the JIT per weight type (struct generic) so the widening is inlined.</summary>
    private static void GemvRows<TRow>(float* a, long lda, in BOperand b, float* bias, float* c, long ldc, int m, int n0, int n1, int k)
        where TRow : struct, IWeightRow
    {
        int full = k & ~15, tail = k - full;
        var tailMask = TailMask(tail);
        for (int j = n0; j < n1; j++)
        {
            long rowOffset = j * b.Stride;
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int p = 0; p < full; p += 16)
            {
                var w = TRow.Load16(b.Data, rowOffset + p);
                s0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + p), w, s0);
                if (m > 1) s1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + lda + p), w, s1);
                if (m > 2) s2 = Vector512.FusedMultiplyAdd(Vector512.Load(a + 2 * lda + p), w, s2);
                if (m > 3) s3 = Vector512.FusedMultiplyAdd(Vector512.Load(a + 3 * lda + p), w, s3);
            }
            if (tail > 0)
            {
                var w = LoadRow16(b, rowOffset + full, tail);
                s0 = Vector512.FusedMultiplyAdd(Simd512.MaskLoad(a + full, tailMask), w, s0);
                if (m > 1) s1 = Vector512.FusedMultiplyAdd(Simd512.MaskLoad(a + lda + full, tailMask), w, s1);
                if (m > 2) s2 = Vector512.FusedMultiplyAdd(Simd512.MaskLoad(a + 2 * lda + full, tailMask), w, s2);
                if (m > 3) s3 = Vector512.FusedMultiplyAdd(Simd512.MaskLoad(a + 3 * lda + full, tailMask), w, s3);
            }
            float add = bias == null ? 0f : bias[j];
            if (b.Scale != null)
            {
                float scale = b.Scale[j];
                c[j] = Vector512.Sum(s0) * scale + add;
                if (m > 1) c[ldc + j] = Vector512.Sum(s1) * scale + add;
                if (m > 2) c[2 * ldc + j] = Vector512.Sum(s2) * scale + add;
                if (m > 3) c[3 * ldc + j] = Vector512.Sum(s3) * scale + add;
                continue;
            }
            c[j] = Vector512.Sum(s0) + add;
            if (m > 1) c[ldc + j] = Vector512.Sum(s1) + add;
            if (m > 2) c[2 * ldc + j] = Vector512.Sum(s2) + add;
            if (m > 3) c[3 * ldc + j] = Vector512.Sum(s3) + add;
        }
    }

    /// <summary>Weight elements as floats, for one storage type: 16 at a time (widened in registers) or one.
    /// Also used by <see cref="Quantize"/> to read rows of any weight dtype.</summary>
    internal interface IWeightRow
    {
        static abstract Vector512<float> Load16(void* data, long offset);
        /// <summary>8 elements for the AVX2 paths (CPUs without AVX-512).</summary>
        static abstract Vector256<float> Load8(void* data, long offset);
        static abstract float Load1(void* data, long offset);
    }

    /// <summary>8 elements read one at a time: the AVX2 <c>Load8</c> of the types with no 256-bit decode (F16, FP8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scalar8<TRow>(void* data, long offset) where TRow : struct, IWeightRow =>
        Vector256.Create(TRow.Load1(data, offset), TRow.Load1(data, offset + 1), TRow.Load1(data, offset + 2), TRow.Load1(data, offset + 3),
            TRow.Load1(data, offset + 4), TRow.Load1(data, offset + 5), TRow.Load1(data, offset + 6), TRow.Load1(data, offset + 7));

    internal readonly struct F32Row : IWeightRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* data, long offset) => Vector512.Load((float*)data + offset);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* data, long offset) => Vector256.Load((float*)data + offset);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* data, long offset) => ((float*)data)[offset];
    }

    internal readonly struct Bf16Row : IWeightRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* data, long offset) => Bf16ToSingle(Vector256.Load((ushort*)data + offset));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* data, long offset) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)data + offset), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* data, long offset) => Bf16.ToFloat(((ushort*)data)[offset]);
    }

    internal readonly struct F16Row : IWeightRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* data, long offset) => HalfToSingle(Vector256.Load((ushort*)data + offset));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* data, long offset) => Scalar8<F16Row>(data, offset);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* data, long offset) => (float)((Half*)data)[offset];
    }

    internal readonly struct F8E4M3Row : IWeightRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* data, long offset) => E4M3ToSingle(Vector128.Load((byte*)data + offset));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* data, long offset) => Scalar8<F8E4M3Row>(data, offset);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* data, long offset) => Fp8.Decode(((byte*)data)[offset], Fp8Format.E4M3);
    }

    internal readonly struct F8E5M2Row : IWeightRow
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* data, long offset) => E5M2ToSingle(Vector128.Load((byte*)data + offset));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load8(void* data, long offset) => Scalar8<F8E5M2Row>(data, offset);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Load1(void* data, long offset) => Fp8.Decode(((byte*)data)[offset], Fp8Format.E5M2);
    }

    /// <summary>The single-threaded blocked loop nest over C[m0.., n0..] (one thread's share). With a
    /// <paramref name="rowBias"/>, the first K block's tile is filled with rowBias[row] (+ bias[col]) where the tile is
    /// about to be computed (so it is in L1) and the micro-kernel accumulates into it.</summary>
    public static void Block(float* a, long lda, in BOperand b, float* bias, float* c, long ldc, int m0, int mLen, int n0, int nLen, int k, float* rowBias = null)
    {
        int kcMax = Math.Min(KC, k);
        int ncMax = Math.Min(NC, RoundUp(nLen, NR));
        int mcMax = Math.Min(MC, RoundUp(mLen, MR));
        float* packA = (float*)(_packA ??= new()).Get((long)mcMax * kcMax * sizeof(float));
        float* packB = (float*)(_packB ??= new()).Get((long)ncMax * kcMax * sizeof(float));

        for (int jc = n0; jc < n0 + nLen; jc += ncMax)
        {
            int nc = Math.Min(ncMax, n0 + nLen - jc);
            for (int pc = 0; pc < k; pc += kcMax)
            {
                int kc = Math.Min(kcMax, k - pc);
                PackB(b, pc, kc, jc, nc, packB);
                bool accumulate = pc > 0;
                for (int ic = m0; ic < m0 + mLen; ic += mcMax)
                {
                    int mc = Math.Min(mcMax, m0 + mLen - ic);
                    PackA(a, lda, ic, mc, pc, kc, packA);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* panelB = packB + (long)jr * kc;
                        float* biasTile = bias == null ? null : bias + jc + jr;
                        float* scaleTile = b.Scale == null ? null : b.Scale + jc + jr;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            float* cTile = c + (ic + ir) * ldc + jc + jr;
                            int mr = Math.Min(MR, mc - ir);
                            bool acc = accumulate;
                            if (rowBias != null && !accumulate)
                            {
                                FillRowBias(cTile, ldc, mr, nr, rowBias + ic + ir, biasTile);
                                acc = true;
                            }
                            if (Simd512.Native)
                                Kernel14x32(packA + (long)ir * kc, panelB, kc, cTile, ldc, mr, nr, acc, biasTile, scaleTile);
                            else
                                Kernel14x32Avx2(packA + (long)ir * kc, panelB, kc, cTile, ldc, mr, nr, acc, biasTile, scaleTile);
                        }
                    }
                }
            }
        }
    }

    /// <summary>C[r, 0..nr) = rowBias[r] (+ bias[0..nr)) for the mr rows of a tile.</summary>
    private static void FillRowBias(float* c, long ldc, int mr, int nr, float* rowBias, float* bias)
    {
        for (int r = 0; r < mr; r++)
        {
            var row = new Span<float>(c + r * ldc, nr);
            row.Fill(rowBias[r]);
            if (bias != null)
                for (int j = 0; j < nr; j++) row[j] += bias[j];
        }
    }

    /// <summary>A[m0..m0+mc, k0..k0+kc] → MR-row panels, k-major inside a panel (14 floats per k); rows past mc are
    /// zero. 16 rows × 16 k are loaded (rows 14, 15 zero), transposed in registers and stored as 16 masked 14-float
    /// k-rows (the scalar loop with 56-byte-strided stores cost ~3.5% of a 512-row GEMM).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackA(float* a, long lda, int m0, int mc, int k0, int kc, float* dst)
    {
        if (!Simd512.Native) { PackAScalar(a, lda, m0, mc, k0, kc, dst); return; }
        Vector512<float>* block = stackalloc Vector512<float>[32]; // 16 rows + transpose scratch
        var panelMask = TailMask(MR);
        for (int ip = 0; ip < mc; ip += MR)
        {
            int mr = Math.Min(MR, mc - ip);
            float* panel = dst + (long)ip * kc;
            float* rows = a + (m0 + ip) * lda + k0;
            for (int kk = 0; kk < kc; kk += 16)
            {
                int kn = Math.Min(16, kc - kk);
                var kMask = TailMask(kn);
                for (int i = 0; i < 16; i++)
                    block[i] = i >= mr ? Vector512<float>.Zero
                        : kn == 16 ? Vector512.Load(rows + i * lda + kk)
                        : Simd512.MaskLoad(rows + i * lda + kk, kMask);
                Simd512.Transpose16x16(block, block + 16);
                for (int q = 0; q < kn; q++)
                    Simd512.MaskStore(panel + (kk + q) * MR, panelMask, block[q]);
            }
        }
    }

    /// <summary>
    /// B[k0..k0+kc, n0..n0+nc] → NR-column panels, k-major inside a panel (32 consecutive floats per k);
    /// columns past nc are zero. F16/BF16/FP8 weights are widened to F32 here, a panel at a time: the full
    /// weight is never expanded (FP8 codes unscaled: the column scale is applied in the tile store).
    /// </summary>
    internal static void PackB(in BOperand b, int k0, int kc, int n0, int nc, float* dst)
    {
        if (!Simd512.Native)
        {
            switch (b.Type)
            {
                case DType.F32: PackBScalar<F32Row>(b, k0, kc, n0, nc, dst); break;
                case DType.BF16: PackBScalar<Bf16Row>(b, k0, kc, n0, nc, dst); break;
                case DType.F8E4M3: PackBScalar<F8E4M3Row>(b, k0, kc, n0, nc, dst); break;
                case DType.F8E5M2: PackBScalar<F8E5M2Row>(b, k0, kc, n0, nc, dst); break;
                default: PackBScalar<F16Row>(b, k0, kc, n0, nc, dst); break;
            }
            return;
        }
        Vector512<float>* block = stackalloc Vector512<float>[32]; // 16 rows + transpose scratch
        long elemBytes = b.Type.ByteCount(1);
        for (int jp = 0; jp < nc; jp += NR)
        {
            int nr = Math.Min(NR, nc - jp);
            float* panel = dst + (long)jp * kc;
            if (b.Layout == BLayout.KN)
            {
                var (m0, m1) = ColumnMasks(nr);
                for (int kk = 0; kk < kc; kk++)
                {
                    float* src = (float*)b.Data + (k0 + kk) * b.Stride + n0 + jp;
                    Vector512<float> lo, hi;
                    if (nr == NR) { lo = Vector512.Load(src); hi = Vector512.Load(src + 16); }
                    else { lo = Simd512.MaskLoad(src, m0); hi = Simd512.MaskLoad(src + 16, m1); }
                    Vector512.Store(lo, panel + kk * NR);
                    Vector512.Store(hi, panel + kk * NR + 16);
                }
                continue;
            }
            // NK: row n of the weight holds K contiguous values. 16 rows × 16 k are loaded (widened from
            // F16/BF16), transposed in registers and stored as 16 k-rows of the panel.
            int nextRows = PrefetchB ? Math.Min(NR, nc - jp - NR) : 0;
            for (int kk = 0; kk < kc; kk += 16)
            {
                int kn = Math.Min(16, kc - kk);
                if (nextRows > 0 && ((k0 + kk) * elemBytes & 63) < 16 * elemBytes)
                {
                    byte* line = (byte*)b.Data + ((n0 + jp + NR) * b.Stride + k0 + kk) * elemBytes;
                    for (int i = 0; i < nextRows; i++) Sse.Prefetch0(line + i * b.Stride * elemBytes);
                }
                for (int half = 0; half < NR; half += 16)
                {
                    for (int i = 0; i < 16; i++)
                    {
                        long offset = (n0 + jp + half + i) * b.Stride + k0 + kk;
                        block[i] = half + i < nr ? LoadRow16(b, offset, kn) : Vector512<float>.Zero;
                    }
                    Simd512.Transpose16x16(block, block + 16);
                    for (int q = 0; q < kn; q++)
                        Vector512.Store(block[q], panel + (kk + q) * NR + half);
                }
            }
        }
    }

    /// <summary>16 consecutive weight elements from <paramref name="offset"/> as floats; past <paramref name="count"/> zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LoadRow16(in BOperand b, long offset, int count)
    {
        if (b.Type == DType.F32)
        {
            float* src = (float*)b.Data + offset;
            return count == 16 ? Vector512.Load(src) : Simd512.MaskLoad(src, TailMask(count));
        }
        if (b.Type is DType.F8E4M3 or DType.F8E5M2)
        {
            byte* codes = (byte*)b.Data + offset;
            Vector128<byte> q = default; // a K tail: copied (byte-masked loads are not available in .NET 10), never read past the row
            if (count == 16) q = Vector128.Load(codes);
            else Unsafe.CopyBlockUnaligned(&q, codes, (uint)count);
            return b.Type == DType.F8E4M3 ? E4M3ToSingle(q) : E5M2ToSingle(q);
        }
        ushort* bits = (ushort*)b.Data + offset;
        var h = count == 16 ? Vector256.Load(bits) : Simd512.LoadUShorts(bits, count);
        return b.Type == DType.BF16 ? Bf16ToSingle(h) : HalfToSingle(h);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> TailMask(int count) =>
        Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Bf16ToSingle(Vector256<ushort> bits) =>
        (Simd512.WidenToUInt32(bits) << 16).AsSingle();

    /// <summary>IEEE half bits → float: exponent rebias by a multiply with 2^112 (exact, handles subnormals),
    /// Inf/NaN patched in by a select.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> HalfToSingle(Vector256<ushort> bits)
    {
        var h = Simd512.WidenToUInt32(bits);
        var magnitude = (h & Vector512.Create(0x7FFFu)) << 13;
        var sign = (h & Vector512.Create(0x8000u)) << 16;
        var value = (magnitude.AsSingle() * Vector512.Create(5.192296858534828e33f)).AsUInt32(); // 2^112
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u << 13));
        value = Vector512.ConditionalSelect(special, magnitude | Vector512.Create(0x7F800000u), value);
        return (value | sign).AsSingle();
    }

    /// <summary>E4M3 codes → floats, exact (as <see cref="Fp8.Decode"/>): the 7 magnitude bits under the float exponent
    /// field, rebias by a multiply with 2^120 (subnormal codes become float denormals there and are scaled exactly);
    /// S.1111.111 patched to NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> E4M3ToSingle(Vector128<byte> codes)
    {
        var q = Simd512.WidenToUInt32(codes);
        var magnitude = (q & Vector512.Create(0x7Fu)) << 20;
        var value = (magnitude.AsSingle() * Vector512.Create(1.329228e36f)).AsUInt32(); // 2^120
        value = Vector512.ConditionalSelect(Vector512.Equals(magnitude, Vector512.Create(0x7Fu << 20)), Vector512.Create(0x7FC00000u), value);
        return (value | ((q & Vector512.Create(0x80u)) << 24)).AsSingle();
    }

    /// <summary>E5M2 codes → floats, exact: E5M2 is the upper byte of an IEEE half (rebias by 2^112, inf/NaN selected).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> E5M2ToSingle(Vector128<byte> codes)
    {
        var q = Simd512.WidenToUInt32(codes);
        var magnitude = (q & Vector512.Create(0x7Fu)) << 21;
        var value = (magnitude.AsSingle() * Vector512.Create(5.192296858534828e33f)).AsUInt32(); // 2^112
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7Cu << 21));
        value = Vector512.ConditionalSelect(special, magnitude | Vector512.Create(0x7F800000u), value);
        return (value | ((q & Vector512.Create(0x80u)) << 24)).AsSingle();
    }

    /// <summary>Lane masks for the first <paramref name="nr"/> of 32 columns (two 16-lane halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector512<float> Lo, Vector512<float> Hi) ColumnMasks(int nr)
    {
        var idx = Vector512<int>.Indices;
        var limit = Vector512.Create(nr);
        return (Vector512.LessThan(idx, limit).AsSingle(), Vector512.LessThan(idx + Vector512.Create(16), limit).AsSingle());
    }

    internal static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>A per-thread 64-byte aligned scratch buffer of at least <paramref name="floats"/> floats, kept for reuse.</summary>
    /// <summary>Stores one row of a register tile: full or masked to nr columns, with bias (first K block) or
    /// accumulating into C (later K blocks); with a column scale (FP8 weights) the tile is multiplied by it first, so each
    /// K block adds scale · (its partial sum).</summary>
    private readonly ref struct TileStore
    {
        private readonly Vector512<float> _add0, _add1, _mask0, _mask1, _scale0, _scale1;
        private readonly bool _accumulate, _full, _scaled;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TileStore(float* bias, bool accumulate, int nr, float* scale)
        {
            _accumulate = accumulate;
            _full = nr == NR;
            (_mask0, _mask1) = ColumnMasks(nr);
            _scaled = scale != null;
            if (_scaled)
            {
                _scale0 = Simd512.MaskLoad(scale, _mask0);
                _scale1 = Simd512.MaskLoad(scale + 16, _mask1);
            }
            if (!accumulate && bias != null)
            {
                _add0 = Simd512.MaskLoad(bias, _mask0);
                _add1 = Simd512.MaskLoad(bias + 16, _mask1);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Row(float* c, Vector512<float> v0, Vector512<float> v1)
        {
            if (_scaled) { v0 *= _scale0; v1 *= _scale1; }
            if (_full)
            {
                if (_accumulate) { v0 += Vector512.Load(c); v1 += Vector512.Load(c + 16); }
                else { v0 += _add0; v1 += _add1; }
                Vector512.Store(v0, c);
                Vector512.Store(v1, c + 16);
            }
            else
            {
                if (_accumulate)
                {
                    v0 += Simd512.MaskLoad(c, _mask0);
                    v1 += Simd512.MaskLoad(c + 16, _mask1);
                }
                else { v0 += _add0; v1 += _add1; }
                Simd512.MaskStore(c, _mask0, v0);
                Simd512.MaskStore(c + 16, _mask1, v1);
            }
        }
    }

    /// <summary>14×32 register tile: C[0..mr, 0..nr] (+)= Apanel[kc][14] · Bpanel[kc][32]. 28 zmm accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel14x32(float* a, float* b, int kc, float* c, long ldc, int mr, int nr, bool accumulate, float* bias, float* scale)
    {
        Vector512<float> c00 = Vector512<float>.Zero, c01 = Vector512<float>.Zero, c10 = Vector512<float>.Zero, c11 = Vector512<float>.Zero, c20 = Vector512<float>.Zero, c21 = Vector512<float>.Zero, c30 = Vector512<float>.Zero, c31 = Vector512<float>.Zero, c40 = Vector512<float>.Zero, c41 = Vector512<float>.Zero, c50 = Vector512<float>.Zero, c51 = Vector512<float>.Zero, c60 = Vector512<float>.Zero, c61 = Vector512<float>.Zero, c70 = Vector512<float>.Zero, c71 = Vector512<float>.Zero, c80 = Vector512<float>.Zero, c81 = Vector512<float>.Zero, c90 = Vector512<float>.Zero, c91 = Vector512<float>.Zero, c100 = Vector512<float>.Zero, c101 = Vector512<float>.Zero, c110 = Vector512<float>.Zero, c111 = Vector512<float>.Zero, c120 = Vector512<float>.Zero, c121 = Vector512<float>.Zero, c130 = Vector512<float>.Zero, c131 = Vector512<float>.Zero;
        // Fetch the C tile now: its load (accumulate) or store at the end would otherwise wait on L3/DRAM
        // (C of one thread's block is MBs, evicted between K blocks). Measured +1–6% at M = 512–4096.
        for (int r = 0; r < mr; r++) { Sse.Prefetch0(c + r * ldc); Sse.Prefetch0(c + r * ldc + 16); }
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]); c00 = Vector512.FusedMultiplyAdd(a0, b0, c00); c01 = Vector512.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector512.Create(a[1]); c10 = Vector512.FusedMultiplyAdd(a1, b0, c10); c11 = Vector512.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector512.Create(a[2]); c20 = Vector512.FusedMultiplyAdd(a2, b0, c20); c21 = Vector512.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector512.Create(a[3]); c30 = Vector512.FusedMultiplyAdd(a3, b0, c30); c31 = Vector512.FusedMultiplyAdd(a3, b1, c31);
            var a4 = Vector512.Create(a[4]); c40 = Vector512.FusedMultiplyAdd(a4, b0, c40); c41 = Vector512.FusedMultiplyAdd(a4, b1, c41);
            var a5 = Vector512.Create(a[5]); c50 = Vector512.FusedMultiplyAdd(a5, b0, c50); c51 = Vector512.FusedMultiplyAdd(a5, b1, c51);
            var a6 = Vector512.Create(a[6]); c60 = Vector512.FusedMultiplyAdd(a6, b0, c60); c61 = Vector512.FusedMultiplyAdd(a6, b1, c61);
            var a7 = Vector512.Create(a[7]); c70 = Vector512.FusedMultiplyAdd(a7, b0, c70); c71 = Vector512.FusedMultiplyAdd(a7, b1, c71);
            var a8 = Vector512.Create(a[8]); c80 = Vector512.FusedMultiplyAdd(a8, b0, c80); c81 = Vector512.FusedMultiplyAdd(a8, b1, c81);
            var a9 = Vector512.Create(a[9]); c90 = Vector512.FusedMultiplyAdd(a9, b0, c90); c91 = Vector512.FusedMultiplyAdd(a9, b1, c91);
            var a10 = Vector512.Create(a[10]); c100 = Vector512.FusedMultiplyAdd(a10, b0, c100); c101 = Vector512.FusedMultiplyAdd(a10, b1, c101);
            var a11 = Vector512.Create(a[11]); c110 = Vector512.FusedMultiplyAdd(a11, b0, c110); c111 = Vector512.FusedMultiplyAdd(a11, b1, c111);
            var a12 = Vector512.Create(a[12]); c120 = Vector512.FusedMultiplyAdd(a12, b0, c120); c121 = Vector512.FusedMultiplyAdd(a12, b1, c121);
            var a13 = Vector512.Create(a[13]); c130 = Vector512.FusedMultiplyAdd(a13, b0, c130); c131 = Vector512.FusedMultiplyAdd(a13, b1, c131);
            a += 14;
            b += 32;
        }
        var tile = new TileStore(bias, accumulate, nr, scale);
        tile.Row(c + 0 * ldc, c00, c01);
        if (mr > 1) tile.Row(c + 1 * ldc, c10, c11);
        if (mr > 2) tile.Row(c + 2 * ldc, c20, c21);
        if (mr > 3) tile.Row(c + 3 * ldc, c30, c31);
        if (mr > 4) tile.Row(c + 4 * ldc, c40, c41);
        if (mr > 5) tile.Row(c + 5 * ldc, c50, c51);
        if (mr > 6) tile.Row(c + 6 * ldc, c60, c61);
        if (mr > 7) tile.Row(c + 7 * ldc, c70, c71);
        if (mr > 8) tile.Row(c + 8 * ldc, c80, c81);
        if (mr > 9) tile.Row(c + 9 * ldc, c90, c91);
        if (mr > 10) tile.Row(c + 10 * ldc, c100, c101);
        if (mr > 11) tile.Row(c + 11 * ldc, c110, c111);
        if (mr > 12) tile.Row(c + 12 * ldc, c120, c121);
        if (mr > 13) tile.Row(c + 13 * ldc, c130, c131);
    }

}
