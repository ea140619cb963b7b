using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>
/// The AVX-VNNI CPU kernel (vpdpbusd ymm: 32 u8×s8 products summed into 8 int32 per instruction, 2 per cycle on
/// Intel since Ice Lake / Alder Lake — twice the MACs per cycle of an fp32 FMA zmm).
/// <para>
/// vpdpbusd multiplies unsigned by signed bytes, so activations are stored biased: u = qx + 128 ∈ [1, 255], and
/// Σ_k u·w = Σ_k qx·w + 128·Σ_k w. The accumulators of each (group, column) start at −128·Σ_k w (the column sums,
/// computed while packing the weight panel), so they end at exactly Σ_k qx·w — the same int32 as the vpmaddwd
/// kernel, hence bit-identical y.
/// </para>
/// <para>
/// Exactness: each u·w product (|·| ≤ 255·127 = 32385) fits the instruction's int16 intermediates, and the int32
/// accumulator never exceeds 127·127·G + 128·127·G = 32385·G in magnitude over a group of G k values
/// (G = int4 group, or the 512-wide K block for int8): exact for G up to 66,311, i.e. any K block here; even without
/// K blocking K = 12288 stays below 4.0e8 &lt; 2³¹.
/// </para>
/// <para>
/// Register tile 8×16 (16 ymm accumulators, two 8-column halves per row): the JIT emits EVEX vpdpbusd with sources
/// in ymm16–31 but keeps the read-modify-write accumulator in ymm0–15 (beyond that it copies each accumulator in and
/// out around every vpdpbusd: a 12×16 tile measured 20% slower in a loop-only test), so 16 accumulators is the
/// largest clean tile. The kernel is all-ymm (see <see cref="AddRow16"/>); loop-only test: 300–360 GOP/s per thread
/// against 175 GFLOP/s fp32 FMA peak. Weight panels are packed per call (vectorised 8×8 transposes, column sums by
/// vpdpbusd against ones): about 2–3% of a call at M = 512–768; pre-packing once would double the weight memory
/// (the canonical Data stays for ILGPU and <see cref="Quantize.Dequantize"/>).
/// </para>
/// </summary>
public static partial class QuantizedGemm
{
    private const int VMR = 8, VNR = 16;
    /// <summary>Cache blocks. K block up to 2048 (the 16-column s8 weight panel is 32 KiB, in L1): the C tile is read and
    /// written once per K block, and at 512 that traffic cost 15–25% at M = 4096 (C far beyond L2). int8 still rescales
    /// every 512 k inside the block. A block 144×2048 u8 = 288 KiB and B block 1536×2048 = 3 MiB sit in L2/L3.
    /// Measured on the Emerald Rapids guest (int8, 1 thread, GFLOP/s at 4096×3072×3072 / 768×9216×3072 / 512×2560×9728):
    /// KC 512, NC 3072: 213 / 214 / 205; KC 1024, NC 1536: 255 / 259 / 235; KC 2048, NC 1536: 284 / 279 / 262.</summary>
    private const int VMC = 144, VNC = 1536, VKC = 2048;

    [ThreadStatic] private static ThreadScratch? _packCorr;

    /// <summary>Whether the VNNI kernel can run here (AVX-VNNI for vpdpbusd, BMI2 for the int4 unpack, AVX-512 for the rest).</summary>
    public static bool VnniSupported => AvxVnni.IsSupported && Bmi2.IsSupported && Avx512BW.IsSupported;

    /// <summary>x F32 [M, K] (rows past m zero) → u8 rows [mp][kq] (round(x/sx) + 128, K padded with 128 = zero), then
    /// one thread's share of y per <see cref="BlockVnni"/>.</summary>
    private static unsafe void LinearCpuVnni(CpuDevice device, Tensor x, QuantizedTensor w, Tensor? bias, Tensor y, int m, int n, int k)
    {
        int kq = (k + 3) & ~3;              // K padded to whole quads (4 bytes per vpdpbusd lane)
        int mp = (m + VMR - 1) / VMR * VMR;  // rows padded to whole tiles (never stored)
        byte* xq = (byte*)NativeMemory.AlignedAlloc((nuint)((long)mp * kq), 64);
        float* sx = (float*)NativeMemory.AlignedAlloc((nuint)(mp * sizeof(float)), 64);
        try
        {
            nint px = x.Pointer, pq = (nint)xq, ps = (nint)sx;
            var weight = new QWeight((void*)w.Data.Pointer, (float*)w.Scales.Pointer, w.Data.DType == DType.I4, k, w.GroupSize);
            nint pbias = bias is null ? 0 : bias.Pointer, py = y.Pointer;
            RunShares(device, m, mp, n, k, VMR, VNR,
                r => QuantizeRowU8(r < m ? (float*)px + r * k : null, k, (byte*)pq + r * kq, kq, (float*)ps + r),
                (m0, mLen, n0, nLen) => BlockVnni((byte*)pq, kq, (float*)ps, weight, (float*)pbias, (float*)py, n, m0, mLen, n0, nLen));
        }
        finally
        {
            NativeMemory.AlignedFree(xq);
            NativeMemory.AlignedFree(sx);
        }
    }

    /// <summary>One row of x → u8 = round(x / sx) + 128 (the same round(x/sx) as <see cref="QuantizeRow"/>), padded
    /// with 128 to kq; a null row is all 128 with scale 0.</summary>
    private static unsafe void QuantizeRowU8(float* src, int k, byte* dst, int kq, float* scale)
    {
        new Span<byte>(dst, kq).Fill(128);
        if (src == null) { *scale = 0f; return; }
        *scale = RowScale(src, k, out float inv);
        var vinv = Vector512.Create(inv);
        var bias = Vector512.Create(128);
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var q = Vector512.ConvertToInt32(Vector512.Round(Vector512.Load(src + i) * vinv));
            Avx512F.ConvertToVector128Byte(q + bias).Store(dst + i);
        }
        for (; i < k; i++) dst[i] = (byte)((int)MathF.Round(src[i] * inv) + 128);
    }

    /// <summary>One thread's share C[m0.., n0..]: bias, then the blocked loop nest with the 8×16 VNNI tile.</summary>
    private static unsafe void BlockVnni(byte* xq, int kq, float* sx, in QWeight w, float* bias, float* c, long ldc, int m0, int mLen, int n0, int nLen)
    {
        InitRows(c, ldc, bias, m0, mLen, n0, nLen);
        // K blocks of at most VKC, balanced, in whole 512s (the int8 rescale boundaries must fall where the vpmaddwd kernel's do).
        int kBlocks = (kq + VKC - 1) / VKC;
        int kcMax = Math.Min(kq, ((kq + kBlocks - 1) / kBlocks + KC - 1) / KC * KC);
        int groupK = w.Int4 ? w.GroupSize : Math.Min(KC, kcMax); // int8: one rescale per 512 k, as the vpmaddwd kernel
        int ncMax = Math.Min(VNC, (nLen + VNR - 1) / VNR * VNR);
        int mcMax = Math.Min(VMC, (mLen + VMR - 1) / VMR * VMR);
        int groupsMax = (kcMax + groupK - 1) / groupK;
        int* packA = (int*)Buffer(ref _packA, (long)mcMax * kcMax);
        int* packB = (int*)Buffer(ref _packB, (long)ncMax * kcMax);
        float* packS = (float*)Buffer(ref _packScales, (long)ncMax * groupsMax * sizeof(float));
        int* packC = (int*)Buffer(ref _packCorr, (long)ncMax * groupsMax * sizeof(int));
        float* edge = stackalloc float[VMR * VNR];
        for (int jc = n0; jc < n0 + nLen; jc += ncMax)
        {
            int nc = Math.Min(ncMax, n0 + nLen - jc);
            for (int pc = 0; pc < kq; pc += kcMax)
            {
                int kc = Math.Min(kcMax, kq - pc);
                int groupsInBlock = (kc + groupK - 1) / groupK;
                PackBVnni(w, pc, kc, jc, nc, packB, packS, packC, groupK);
                for (int ic = m0; ic < m0 + mLen; ic += mcMax)
                {
                    int mc = Math.Min(mcMax, m0 + mLen - ic);
                    int mcPad = (mc + VMR - 1) / VMR * VMR;
                    PackAVnni(xq, kq, ic, mcPad, pc, kc, packA);
                    for (int jr = 0; jr < nc; jr += VNR)
                    {
                        int nr = Math.Min(VNR, nc - jr);
                        int* panelB = packB + (long)jr * kc / 4;
                        float* panelS = packS + (long)jr * groupsInBlock;
                        int* panelC = packC + (long)jr * groupsInBlock;
                        for (int ir = 0; ir < mc; ir += VMR)
                        {
                            int mr = Math.Min(VMR, mc - ir);
                            float* ct = c + (ic + ir) * ldc + jc + jr;
                            if (nr == VNR)
                                Kernel8x16Vnni(packA + (long)ir * kc / 4, panelB, panelC, panelS, kc, groupK, sx + ic + ir, ct, ldc, mr);
                            else
                            {
                                // Right edge: run the full-width kernel on a staged copy of the tile, copy back nr columns.
                                for (int i = 0; i < mr; i++) new ReadOnlySpan<float>(ct + i * ldc, nr).CopyTo(new Span<float>(edge + i * VNR, VNR));
                                Kernel8x16Vnni(packA + (long)ir * kc / 4, panelB, panelC, panelS, kc, groupK, sx + ic + ir, edge, VNR, mr);
                                for (int i = 0; i < mr; i++) new ReadOnlySpan<float>(edge + i * VNR, nr).CopyTo(new Span<float>(ct + i * ldc, nr));
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>u8 activation rows [m0, m0+mc) (mc a multiple of 8), k [k0, k0+kc) → [kc/4][8] panels of 4-byte quads.</summary>
    private static unsafe void PackAVnni(byte* xq, int kq, int m0, int mc, int k0, int kc, int* dst)
    {
        int quads = kc / 4;
        for (int ip = 0; ip < mc; ip += VMR)
        {
            int* panel = dst + (long)ip * quads;
            byte* r = xq + (long)(m0 + ip) * kq + k0;
            int q = 0;
            for (; q + 8 <= quads; q += 8) // 8 rows × 8 quads, transposed in registers
                Transpose8x8(panel + q * VMR, VMR, r + 4 * q, kq);
            for (int i = 0; i < VMR; i++)
                for (int t = q; t < quads; t++) panel[t * VMR + i] = *(int*)(r + (long)i * kq + 4 * t);
        }
    }

    /// <summary>
    /// Weight rows [n0, n0+nc) × k [k0, k0+kc) (kc a multiple of 4) → 16-column panels of s8 quads [kc/4][16][4]
    /// (int4 unpacked, columns past nc and k past K zero); per panel and group: scales [groups][16] and the bias
    /// corrections −128·Σ_k w [groups][16].
    /// </summary>
    private static unsafe void PackBVnni(in QWeight w, int k0, int kc, int n0, int nc, int* dst, float* scales, int* corr, int groupK)
    {
        int quads = kc / 4;
        int groupsInBlock = (kc + groupK - 1) / groupK;
        for (int jp = 0; jp < nc; jp += VNR)
        {
            int nr = Math.Min(VNR, nc - jp);
            int* panel = dst + (long)jp * quads;
            float* panelScales = scales + (long)jp * groupsInBlock;
            // Full panels: quads in chunks of 8 through 8×8 transposes; the scalar loop below does the rest.
            int vectorQuads = nr == VNR ? (w.Int4 ? quads : Math.Min(kc, w.K - k0) / 4) / 8 * 8 : 0;
            if (vectorQuads > 0) PackBPanelVector(w, k0, n0 + jp, vectorQuads, panel);
            for (int j = 0; j < VNR; j++)
            {
                if (j >= nr)
                {
                    for (int q = 0; q < quads; q++) panel[q * VNR + j] = 0;
                    for (int g = 0; g < groupsInBlock; g++) panelScales[g * VNR + j] = 0f;
                    continue;
                }
                long row = n0 + jp + j;
                if (w.Int4)
                {
                    ushort* src = (ushort*)((byte*)w.Data + (row * w.K + k0) / 2); // K, k0 multiples of the group: whole quads
                    for (int q = vectorQuads; q < quads; q++)
                    {
                        // 4 nibbles → one per byte, then sign-extend each byte: 4-bit two's complement n ↦ ((n ^ 8) + 0x78) ^ 0x80.
                        uint spread = Bmi2.ParallelBitDeposit(src[q], 0x0F0F0F0Fu);
                        panel[q * VNR + j] = (int)(((spread ^ 0x08080808u) + 0x78787878u) ^ 0x80808080u);
                    }
                    for (int g = 0; g < groupsInBlock; g++)
                        panelScales[g * VNR + j] = w.Scales[row * w.Groups + k0 / w.GroupSize + g];
                }
                else
                {
                    sbyte* src = (sbyte*)w.Data + row * w.K + k0;
                    int valid = Math.Min(kc, w.K - k0), whole = valid / 4;
                    for (int q = vectorQuads; q < whole; q++) panel[q * VNR + j] = ((int*)src)[q];
                    if (whole < quads) // K % 4 != 0: the last quad is padded with zeros (never read past the row)
                    {
                        int tail = 0;
                        for (int b = 0; b < valid - 4 * whole; b++) tail |= (byte)src[4 * whole + b] << (8 * b);
                        panel[whole * VNR + j] = tail;
                    }
                    for (int g = 0; g < groupsInBlock; g++) panelScales[g * VNR + j] = w.Scales[row];
                }
            }
            // Column sums per group by vpdpbusd against all-ones bytes; the correction is −128 × the sum.
            int* panelCorr = corr + (long)jp * groupsInBlock;
            var ones = Vector256.Create((byte)1);
            int quadsPerGroup = groupK / 4;
            for (int g = 0; g < groupsInBlock; g++)
            {
                Vector256<int> s0 = Vector256<int>.Zero, s1 = Vector256<int>.Zero;
                for (int q = g * quadsPerGroup; q < Math.Min(quads, (g + 1) * quadsPerGroup); q++)
                {
                    s0 = AvxVnni.MultiplyWideningAndAdd(s0, ones, Vector256.Load((sbyte*)(panel + q * VNR)));
                    s1 = AvxVnni.MultiplyWideningAndAdd(s1, ones, Vector256.Load((sbyte*)(panel + q * VNR + 8)));
                }
                Vector256.Store(-Vector256.ShiftLeft(s0, 7), panelCorr + g * VNR);
                Vector256.Store(-Vector256.ShiftLeft(s1, 7), panelCorr + g * VNR + 8);
            }
        }
    }

    /// <summary>Quads [0, quads) (a multiple of 8) of weight rows [row0, row0+16) → panel [quads][16]: rows are read
    /// 8 quads (32 bytes of s8, or 16 bytes of int4 expanded to s8) at a time and transposed 8×8 per half panel.</summary>
    private static unsafe void PackBPanelVector(in QWeight w, int k0, long row0, int quads, int* panel)
    {
        var rows = stackalloc int[8 * 8]; // int4: one 8-row × 8-quad chunk expanded to s8
        for (int half = 0; half < VNR; half += 8)
            for (int q = 0; q < quads; q += 8)
            {
                if (w.Int4)
                {
                    for (int i = 0; i < 8; i++)
                    {
                        // 16 bytes = 32 nibbles, low first → 32 s8: interleave low and high nibbles, sign-extend (n ^ 8) − 8.
                        var v = Vector128.Load((byte*)w.Data + ((row0 + half + i) * w.K + k0) / 2 + q * 2);
                        var lo = v & Vector128.Create((byte)0x0F);
                        var hi = Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F);
                        var bytes = Vector256.Create(Sse2.UnpackLow(lo, hi), Sse2.UnpackHigh(lo, hi));
                        ((bytes ^ Vector256.Create((byte)8)) - Vector256.Create((byte)8)).Store((byte*)(rows + i * 8));
                    }
                    Transpose8x8(panel + q * VNR + half, VNR, (byte*)rows, 32);
                }
                else
                    Transpose8x8(panel + q * VNR + half, VNR, (byte*)w.Data + (row0 + half) * w.K + k0 + 4 * q, w.K);
            }
    }

    /// <summary>dst[q·dstStride + i] = (int) quad q of row i (row i at src + i·srcBytes) for i, q in [0, 8): an 8×8
    /// int32 transpose in ymm (unpack 32, unpack 64, swap 128-bit halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Transpose8x8(int* dst, int dstStride, byte* src, long srcBytes)
    {
        var r0 = Vector256.Load((int*)src); var r1 = Vector256.Load((int*)(src + srcBytes));
        var r2 = Vector256.Load((int*)(src + 2 * srcBytes)); var r3 = Vector256.Load((int*)(src + 3 * srcBytes));
        var r4 = Vector256.Load((int*)(src + 4 * srcBytes)); var r5 = Vector256.Load((int*)(src + 5 * srcBytes));
        var r6 = Vector256.Load((int*)(src + 6 * srcBytes)); var r7 = Vector256.Load((int*)(src + 7 * srcBytes));
        var t0 = Avx2.UnpackLow(r0, r1).AsInt64(); var t1 = Avx2.UnpackHigh(r0, r1).AsInt64();
        var t2 = Avx2.UnpackLow(r2, r3).AsInt64(); var t3 = Avx2.UnpackHigh(r2, r3).AsInt64();
        var t4 = Avx2.UnpackLow(r4, r5).AsInt64(); var t5 = Avx2.UnpackHigh(r4, r5).AsInt64();
        var t6 = Avx2.UnpackLow(r6, r7).AsInt64(); var t7 = Avx2.UnpackHigh(r6, r7).AsInt64();
        var u0 = Avx2.UnpackLow(t0, t2).AsInt32(); var u1 = Avx2.UnpackHigh(t0, t2).AsInt32();
        var u2 = Avx2.UnpackLow(t1, t3).AsInt32(); var u3 = Avx2.UnpackHigh(t1, t3).AsInt32();
        var u4 = Avx2.UnpackLow(t4, t6).AsInt32(); var u5 = Avx2.UnpackHigh(t4, t6).AsInt32();
        var u6 = Avx2.UnpackLow(t5, t7).AsInt32(); var u7 = Avx2.UnpackHigh(t5, t7).AsInt32();
        Avx2.Permute2x128(u0, u4, 0x20).Store(dst);
        Avx2.Permute2x128(u1, u5, 0x20).Store(dst + dstStride);
        Avx2.Permute2x128(u2, u6, 0x20).Store(dst + 2 * dstStride);
        Avx2.Permute2x128(u3, u7, 0x20).Store(dst + 3 * dstStride);
        Avx2.Permute2x128(u0, u4, 0x31).Store(dst + 4 * dstStride);
        Avx2.Permute2x128(u1, u5, 0x31).Store(dst + 5 * dstStride);
        Avx2.Permute2x128(u2, u6, 0x31).Store(dst + 6 * dstStride);
        Avx2.Permute2x128(u3, u7, 0x31).Store(dst + 7 * dstStride);
    }

    /// <summary>C row (16 columns) += (float)acc · weight scales · row scale — per element the same operations as the
    /// vpmaddwd kernel's AccumulateStore, fma(float(acc), sw·s, c), but in ymm: one 512-bit µop in flight switches
    /// off port 1's vector ALU on Intel, halving vpdpbusd throughput (a zmm epilogue measured 300 → 160–200 GOP/s at
    /// int4 group 64 in a loop test; all-ymm: 300).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddRow16(float* c, Vector256<int> acc0, Vector256<int> acc1, Vector256<float> sw0, Vector256<float> sw1, float rowScale)
    {
        var s = Vector256.Create(rowScale);
        Vector256.Store(Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(acc0), sw0 * s, Vector256.Load(c)), c);
        Vector256.Store(Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(acc1), sw1 * s, Vector256.Load(c + 8)), c + 8);
    }

    /// <summary>
    /// 8×16 int32 register tile over one packed K block; per group of <paramref name="groupK"/> k the accumulators
    /// start at the bias corrections, take vpdpbusd of u8 activation quads × s8 weight quads, and are rescaled into C.
    /// a: [kc/4][8] u8 quads; b: [kc/4][16] s8 quads; corr, scales: [kc/groupK][16]; rowScale: 8 activation scales;
    /// c: mr rows of 16 columns (the caller stages partial-width tiles). Nothing but the 16 accumulators, the two weight
    /// vectors and the broadcast is live in the quad loop: anything else (a column mask, say) pushes accumulators
    /// out of ymm0–15, and the JIT then moves each one in and out around every vpdpbusd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Kernel8x16Vnni(int* a, int* b, int* corr, float* scales, int kc, int groupK, float* rowScale, float* c, long ldc, int mr)
    {
        for (int g0 = 0; g0 < kc; g0 += groupK)
        {
            int quads = (Math.Min(kc, g0 + groupK) - g0) / 4;
            var i0 = Vector256.Load(corr);
            var i1 = Vector256.Load(corr + 8);
            corr += 16;
            Vector256<int> c00 = i0, c01 = i1, c10 = i0, c11 = i1, c20 = i0, c21 = i1, c30 = i0, c31 = i1, c40 = i0, c41 = i1, c50 = i0, c51 = i1, c60 = i0, c61 = i1, c70 = i0, c71 = i1;
            for (int q = 0; q < quads; q++)
            {
                var b0 = Vector256.Load((sbyte*)b);
                var b1 = Vector256.Load((sbyte*)(b + 8));
                var a0 = Vector256.Create(a[0]).AsByte(); c00 = AvxVnni.MultiplyWideningAndAdd(c00, a0, b0); c01 = AvxVnni.MultiplyWideningAndAdd(c01, a0, b1);
                var a1 = Vector256.Create(a[1]).AsByte(); c10 = AvxVnni.MultiplyWideningAndAdd(c10, a1, b0); c11 = AvxVnni.MultiplyWideningAndAdd(c11, a1, b1);
                var a2 = Vector256.Create(a[2]).AsByte(); c20 = AvxVnni.MultiplyWideningAndAdd(c20, a2, b0); c21 = AvxVnni.MultiplyWideningAndAdd(c21, a2, b1);
                var a3 = Vector256.Create(a[3]).AsByte(); c30 = AvxVnni.MultiplyWideningAndAdd(c30, a3, b0); c31 = AvxVnni.MultiplyWideningAndAdd(c31, a3, b1);
                var a4 = Vector256.Create(a[4]).AsByte(); c40 = AvxVnni.MultiplyWideningAndAdd(c40, a4, b0); c41 = AvxVnni.MultiplyWideningAndAdd(c41, a4, b1);
                var a5 = Vector256.Create(a[5]).AsByte(); c50 = AvxVnni.MultiplyWideningAndAdd(c50, a5, b0); c51 = AvxVnni.MultiplyWideningAndAdd(c51, a5, b1);
                var a6 = Vector256.Create(a[6]).AsByte(); c60 = AvxVnni.MultiplyWideningAndAdd(c60, a6, b0); c61 = AvxVnni.MultiplyWideningAndAdd(c61, a6, b1);
                var a7 = Vector256.Create(a[7]).AsByte(); c70 = AvxVnni.MultiplyWideningAndAdd(c70, a7, b0); c71 = AvxVnni.MultiplyWideningAndAdd(c71, a7, b1);
                a += 8;
                b += 16;
            }
            var sw0 = Vector256.Load(scales);
            var sw1 = Vector256.Load(scales + 8);
            scales += 16;
            AddRow16(c + 0 * ldc, c00, c01, sw0, sw1, rowScale[0]);
            if (mr > 1) AddRow16(c + 1 * ldc, c10, c11, sw0, sw1, rowScale[1]);
            if (mr > 2) AddRow16(c + 2 * ldc, c20, c21, sw0, sw1, rowScale[2]);
            if (mr > 3) AddRow16(c + 3 * ldc, c30, c31, sw0, sw1, rowScale[3]);
            if (mr > 4) AddRow16(c + 4 * ldc, c40, c41, sw0, sw1, rowScale[4]);
            if (mr > 5) AddRow16(c + 5 * ldc, c50, c51, sw0, sw1, rowScale[5]);
            if (mr > 6) AddRow16(c + 6 * ldc, c60, c61, sw0, sw1, rowScale[6]);
            if (mr > 7) AddRow16(c + 7 * ldc, c70, c71, sw0, sw1, rowScale[7]);
        }
    }
}
