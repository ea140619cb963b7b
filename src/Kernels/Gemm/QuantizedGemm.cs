using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>
/// y = x · dequant(w)ᵀ (+ bias) for int8 (per output channel), int4 (group-wise) and FP8 (per output channel) weights
/// from <see cref="Quantize"/>. x F32 [..., K], w [N, K], bias F32 [N] or null, y F32 [..., N].
/// <para>
/// FP8 (E4M3 / E5M2, scales s [N]): y = (x · qᵀ) · diag(s) + bias in FP32, x unquantized. CPU: the FP32 GEMM of
/// <see cref="Gemm"/> (GemmCpu) with the codes widened to F32 while packing B panels (or streamed by its GEMV for M ≤ 4),
/// exactly as BF16 is, and s applied per column where a tile is stored; the integer kernel choice is ignored.
/// ILGPU: this file's tile kernel decodes the codes while staging them and scales per column at the store.
/// Error bound (per output element, against y = Σ_k x_k w_k exact): ŵ_k = s·q_k with
/// |w_k − ŵ_k| ≤ max(2^-(M+1)·|w_k|, s·2^(emin−M−1)) (M = 3, emin = −6 for E4M3: |w|/16 or s/1024; M = 2, emin = −14 for
/// E5M2: |w|/8 or s·2^-17), so
/// <code>
/// |y_q − y| ≤ Σ_k |x_k| · max(2^-(M+1)·|w_k|, s·2^(emin−M−1)) + ε
/// </code>
/// with ε the FP32 rounding of the sums (≈ K · 2^-24 · Σ_k |x_k ŵ_k|). Typical relative error not yet recorded here:
/// QuantizedGemmFp8Tests.Linear_within_documented_bound prints max |y_q − y| / max |y| and error / bound per format.
/// </para>
/// <para>
/// CPU: each row of x is quantized on the fly to int8 (symmetric, per token: sx = max|x_row| / 127), dot products
/// run exactly in int32 and are rescaled in FP32 once per weight group (int8: per 512-wide K block, int4: per group).
/// Two integer kernels, kept side by side as a ladder (<see cref="QuantizedCpuKernel"/>):
/// <list type="bullet">
/// <item><b>VNNI</b> (default where <see cref="VnniSupported"/>: Intel with AVX-VNNI, e.g. Sapphire/Emerald Rapids):
/// vpdpbusd ymm on u8 activations (qx + 128) × s8 weights, 8×16 tile, bias removed exactly through per-group
/// column sums — see QuantizedGemm.Vnni.cs. .NET 10 exposes only the 256-bit form here (Avx10v1, the 512-bit
/// one, reports unsupported), which still does 64 MACs per cycle against 32 for fp32 FMA zmm.</item>
/// <item><b>vpmaddwd</b> (fallback, e.g. Zen 4 where .NET reports no usable VNNI): AVX-512BW on int16-widened
/// operands, 12×32 tile, 32 MACs per instruction (about the fp32 GEMM's rate). int4 is unpacked while packing.</item>
/// </list>
/// Both compute the same int32 sums with the same FP32 rescale, so their y are bit-identical.
/// ILGPU: the weight is dequantized in the kernel and the product accumulates in FP32 with unquantized x.
/// </para>
/// <para>
/// Error bound (per output element, against y = Σ_k x_k w_k in exact arithmetic): with x̂_k = sx·qx_k
/// (|x_k − x̂_k| ≤ sx/2) and ŵ_k = s_g(k)·qw_k (|w_k − ŵ_k| ≤ s_g(k)/2, s_g the scale of k's group),
/// <code>
/// |y_q − y| ≤ Σ_k ( |x̂_k| · s_g(k)/2 + |w_k| · sx/2 ) + ε
/// </code>
/// where ε is FP32 rounding of the rescale and group sums (≈ 1e-6 · Σ_k |x̂_k ŵ_k|). On ILGPU the Δx term is 0.
/// Typical relative error (max |y_q − y| / max |y|) on uniform random data, K 130–1152: 0.3–0.6% for int8×int8,
/// 5–7% for int4 (groups 32–128); the measured error is about 0.1 of this worst-case bound.
/// </para>
/// </summary>
public static partial class QuantizedGemm
{
    public static void Linear(Tensor x, QuantizedTensor w, Tensor? bias, Tensor y) => Linear(x, w, bias, y, QuantizedCpuKernel.Auto);

    /// <summary>As <see cref="Linear(Tensor, QuantizedTensor, Tensor?, Tensor)"/> with a chosen CPU kernel (ignored on
    /// ILGPU devices): for benchmarks and tests of the kernel ladder. <see cref="QuantizedCpuKernel.Vnni"/> throws
    /// <see cref="NotSupportedException"/> where <see cref="VnniSupported"/> is false.</summary>
    public static unsafe void Linear(Tensor x, QuantizedTensor w, Tensor? bias, Tensor y, QuantizedCpuKernel cpuKernel)
    {
        const string op = "QuantizedGemm.Linear";
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1, op, $"x ({x.Name ?? "unnamed"}) must have rank >= 1, got {x.Shape}");
        int n = w.N, k = w.K;
        Check.LastDim(op, "x", x, k);
        long rows = x.Shape.Rows;
        Check.That(rows <= int.MaxValue, op, $"x has {rows} rows; at most {int.MaxValue} supported");
        int m = (int)rows;
        Check.LastDim(op, "y", y, n);
        Check.Count(op, "y", y, (long)m * n);
        Check.That(w.Data.DType is DType.I8 or DType.F8E4M3 or DType.F8E5M2 ? w.GroupSize == k : w.GroupSize % 2 == 0, op,
            $"weight ({w.Name ?? "unnamed"}): {w.Data.DType} with group size {w.GroupSize} is not a layout from Quantize");
        if (bias is not null)
        {
            Check.DType(op, "bias", bias, DType.F32);
            Check.Shape(op, "bias", bias, n);
        }
        Gemm.CheckNoOverlap(op, "y", y, "x", x);
        using var profile = OpProfile.Start(ProfileName(w), x.Device, 2.0 * m * n * k, (m, k, n), static s => $"{s.m}x{s.k}x{s.n}");
        switch (Check.SameDevice(op, x, w.Data, w.Scales, bias, y))
        {
            case CpuDevice cpu when w.Fp8 is not null:
                // Widened to F32 in the FP32 kernel (no integer dot products: FP8 codes are not integers).
                var b = new BOperand((void*)w.Data.Pointer, w.Data.DType, BLayout.NK, k) { Scale = (float*)w.Scales.Pointer };
                GemmCpu.Run((float*)x.Pointer, k, b, bias is null ? null : (float*)bias.Pointer, (float*)y.Pointer, n, m, n, k, cpu.Threads);
                break;
            case CpuDevice cpu:
                // VNNI needs groups of whole quads that tile the 512-wide K block (every Quantize.Int4 group does).
                bool vnniLayout = w.Data.DType == DType.I8 || (w.GroupSize % 4 == 0 && KC % w.GroupSize == 0);
                if (cpuKernel == QuantizedCpuKernel.Vnni && !(VnniSupported && vnniLayout))
                    throw new NotSupportedException($"{op}: the VNNI kernel needs AVX-VNNI (supported here: {VnniSupported}) and int4 groups dividing {KC} (group {w.GroupSize})");
                if (cpuKernel == QuantizedCpuKernel.Vnni || (cpuKernel == QuantizedCpuKernel.Auto && VnniSupported && vnniLayout))
                    LinearCpuVnni(cpu, x, w, bias, y, m, n, k);
                else
                    LinearCpu(cpu, x, w, bias, y, m, n, k);
                break;
            case IlgpuDevice gpu: LinearIlgpu(gpu, x, w, bias, y, m, n, k); break;
        }
    }

    /// <summary>The profiler's name for a weight's scheme (literals: nothing is allocated when profiling is off).</summary>
    private static string ProfileName(QuantizedTensor w) => w.Data.DType switch
    {
        DType.I8 => "QuantizedGemm.Linear int8",
        DType.F8E4M3 => "QuantizedGemm.Linear fp8-e4m3",
        DType.F8E5M2 => "QuantizedGemm.Linear fp8-e5m2",
        _ => Int4ProfileName(w),
    };

    private static string Int4ProfileName(QuantizedTensor w) => w.GroupSize switch
    {
        32 => "QuantizedGemm.Linear int4/g32",
        64 => "QuantizedGemm.Linear int4/g64",
        128 => "QuantizedGemm.Linear int4/g128",
        _ => $"QuantizedGemm.Linear int4/g{w.GroupSize}",
    };

    private const int MR = 12, NR = 32;
    /// <summary>K block: a multiple of every int4 group size; the KC×32 int16 weight panel is 32 KiB (L1).</summary>
    private const int KC = 512;
    private const int MC = 144, NC = 3072;

    [ThreadStatic] private static ThreadScratch? _packA, _packB, _packScales;

    private static unsafe void LinearCpu(CpuDevice device, Tensor x, QuantizedTensor w, Tensor? bias, Tensor y, int m, int n, int k)
    {
        if (m == 0 || n == 0) return;
        int kp = (k + 1) & ~1;            // K padded to whole int16 pairs
        int mp = (m + MR - 1) / MR * MR;  // rows padded to whole tiles (zero rows, never stored)
        short* xq = (short*)NativeMemory.AlignedAlloc((nuint)((long)mp * kp * sizeof(short)), 64);
        float* sx = (float*)NativeMemory.AlignedAlloc((nuint)(mp * sizeof(float)), 64);
        try
        {
            nint px = x.Pointer, pq = (nint)xq, ps = (nint)sx;
            var weight = new QWeight((void*)w.Data.Pointer, (float*)w.Scales.Pointer, w.Data.DType == DType.I4, k, w.GroupSize);
            nint pbias = bias is null ? 0 : bias.Pointer, py = y.Pointer;
            RunShares(device, m, mp, n, k, MR, NR,
                r => QuantizeRow(r < m ? (float*)px + r * k : null, k, (short*)pq + r * kp, kp, (float*)ps + r),
                (m0, mLen, n0, nLen) => Block((short*)pq, kp, (float*)ps, weight, (float*)pbias, (float*)py, n, m0, mLen, n0, nLen, k));
        }
        finally
        {
            NativeMemory.AlignedFree(xq);
            NativeMemory.AlignedFree(sx);
        }
    }

    /// <summary>The quantized weight as the CPU kernel reads it.</summary>
    private readonly unsafe struct QWeight(void* data, float* scales, bool int4, int k, int groupSize)
    {
        public readonly void* Data = data;
        public readonly float* Scales = scales;
        public readonly bool Int4 = int4;
        public readonly int K = k;
        public readonly int GroupSize = groupSize;
        public int Groups => K / GroupSize;
    }

    /// <summary>
    /// The two phases of a CPU call, shared by both integer kernels: quantize the activation rows [0, mp) (rows past m
    /// are padding), then run <paramref name="block"/>(m0, mLen, n0, nLen) on each thread's share of C — split across
    /// N (no duplicated weight packing) when N is wide enough, else across M — with tiles of mr × nr.
    /// </summary>
    private static void RunShares(CpuDevice device, int m, int mp, int n, int k, int mr, int nr, Action<long> quantizeRow, Action<int, int, int, int> block)
    {
        int threads = (int)Math.Clamp(Math.Min(device.Threads, 2L * m * n * k / (1 << 21)), 1, 64);
        var options = new ParallelOptions { MaxDegreeOfParallelism = threads };
        Parallel.For(0, threads, options, t =>
        {
            var (start, len) = Partition.Range(mp, t, threads);
            for (long r = start; r < start + len; r++) quantizeRow(r);
        });
        bool splitN = n >= threads * nr * 2 || n >= m;
        Parallel.For(0, threads, options, t =>
        {
            var (start, len) = Partition.Range(splitN ? n : m, t, threads, splitN ? nr : mr);
            if (len == 0) return;
            if (splitN) block(0, m, (int)start, (int)len);
            else block((int)start, (int)len, 0, n);
        });
    }

    /// <summary>Per-token activation scale: sx = max|x| / 127 over the row; <paramref name="inv"/> = 127 / max (0 for a zero row).</summary>
    private static unsafe float RowScale(float* src, int k, out float inv)
    {
        float max = Math.Abs(TensorPrimitives.MaxMagnitude(new ReadOnlySpan<float>(src, k))); // MaxMagnitude keeps the sign
        inv = max > 0f ? 127f / max : 0f;
        return max / 127f;
    }

    /// <summary>C[m0.., n0..] of one share starts as the bias rows (or zero); the K blocks then accumulate into it.</summary>
    private static unsafe void InitRows(float* c, long ldc, float* bias, int m0, int mLen, int n0, int nLen)
    {
        for (int i = m0; i < m0 + mLen; i++)
        {
            var row = new Span<float>(c + i * ldc + n0, nLen);
            if (bias == null) row.Clear(); else new ReadOnlySpan<float>(bias + n0, nLen).CopyTo(row);
        }
    }

    /// <summary>One row of x → int16 values of round(x / sx), sx = max|x| / 127, padded with zeros to kp; a null row is all zero.</summary>
    private static unsafe void QuantizeRow(float* src, int k, short* dst, int kp, float* scale)
    {
        new Span<short>(dst, kp).Clear();
        if (src == null) { *scale = 0f; return; }
        *scale = RowScale(src, k, out float inv);
        var vinv = Vector512.Create(inv);
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var q = Vector512.ConvertToInt32(Vector512.Round(Vector512.Load(src + i) * vinv));
            Simd512.NarrowToInt16(q).Store(dst + i);
        }
        for (; i < k; i++) dst[i] = (short)MathF.Round(src[i] * inv);
    }

    /// <summary>One thread's share C[m0.., n0..]: initialise with bias, then the blocked loop nest (as in GemmCpu).</summary>
    private static unsafe void Block(short* xq, int kp, float* sx, in QWeight w, float* bias, float* c, long ldc, int m0, int mLen, int n0, int nLen, int k)
    {
        InitRows(c, ldc, bias, m0, mLen, n0, nLen);
        int kcMax = Math.Min(KC, kp);
        int groupK = w.Int4 ? w.GroupSize : kcMax;
        int ncMax = Math.Min(NC, (nLen + NR - 1) / NR * NR);
        int mcMax = Math.Min(MC, (mLen + MR - 1) / MR * MR);
        int* packA = (int*)Buffer(ref _packA, (long)mcMax * kcMax / 2 * sizeof(int));
        int* packB = (int*)Buffer(ref _packB, (long)ncMax * kcMax / 2 * sizeof(int));
        float* packS = (float*)Buffer(ref _packScales,
            (long)ncMax * (kcMax / groupK + 1) * sizeof(float));
        for (int jc = n0; jc < n0 + nLen; jc += ncMax)
        {
            int nc = Math.Min(ncMax, n0 + nLen - jc);
            for (int pc = 0; pc < kp; pc += kcMax)
            {
                int kc = Math.Min(kcMax, kp - pc);
                int groupsInBlock = (kc + groupK - 1) / groupK;
                PackB(w, pc, kc, jc, nc, packB, packS, groupK);
                for (int ic = m0; ic < m0 + mLen; ic += mcMax)
                {
                    int mc = Math.Min(mcMax, m0 + mLen - ic);
                    int mcPad = (mc + MR - 1) / MR * MR;
                    PackA(xq, kp, ic, mcPad, pc, kc, packA);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        int* panelB = packB + (long)jr * kc / 2;
                        float* panelS = packS + (long)jr * groupsInBlock;
                        for (int ir = 0; ir < mc; ir += MR)
                            Kernel12x32(packA + (long)ir * kc / 2, panelB, panelS, kc, groupK, sx + ic + ir,
                                c + (ic + ir) * ldc + jc + jr, ldc, Math.Min(MR, mc - ir), nr);
                    }
                }
            }
        }
    }

    /// <summary>Quantized x rows [m0, m0+mc) (mc a multiple of MR; rows exist up to the padded M), k pairs → [kc/2][MR] panels.</summary>
    private static unsafe void PackA(short* xq, int kp, int m0, int mc, int k0, int kc, int* dst)
    {
        int pairs = kc / 2;
        for (int ip = 0; ip < mc; ip += MR)
        {
            int* panel = dst + (long)ip * pairs;
            for (int i = 0; i < MR; i++)
            {
                int* src = (int*)(xq + (long)(m0 + ip + i) * kp + k0);
                for (int p = 0; p < pairs; p++) panel[p * MR + i] = src[p];
            }
        }
    }

    /// <summary>
    /// Weight rows [n0, n0+nc) × k [k0, k0+kc) → 32-column panels of int16 pairs [kc/2][32] (int4 unpacked, int8
    /// sign-extended), columns past nc and k past K zero; the panel's scales → [groups in block][32].
    /// </summary>
    private static unsafe void PackB(in QWeight w, int k0, int kc, int n0, int nc, int* dst, float* scales, int groupK)
    {
        int pairs = kc / 2;
        int groupsInBlock = (kc + groupK - 1) / groupK;
        for (int jp = 0; jp < nc; jp += NR)
        {
            int nr = Math.Min(NR, nc - jp);
            int* panel = dst + (long)jp * pairs;
            float* panelScales = scales + (long)jp * groupsInBlock;
            for (int j = 0; j < NR; j++)
            {
                if (j >= nr)
                {
                    for (int p = 0; p < pairs; p++) panel[p * NR + j] = 0;
                    for (int g = 0; g < groupsInBlock; g++) panelScales[g * NR + j] = 0f;
                    continue;
                }
                long row = n0 + jp + j;
                if (w.Int4)
                {
                    byte* src = (byte*)w.Data + (row * w.K + k0) / 2; // K, k0 even: whole bytes
                    for (int p = 0; p < pairs; p++)
                    {
                        int b = src[p];
                        int lo = (b << 28) >> 28, hi = (b << 24) >> 28; // sign-extend both nibbles
                        panel[p * NR + j] = (ushort)lo | (hi << 16);
                    }
                    for (int g = 0; g < groupsInBlock; g++)
                        panelScales[g * NR + j] = w.Scales[row * w.Groups + k0 / w.GroupSize + g];
                }
                else
                {
                    sbyte* src = (sbyte*)w.Data + row * w.K + k0;
                    int valid = Math.Min(kc, w.K - k0); // odd K: the last pair's high half is padding
                    for (int p = 0; p < pairs; p++)
                    {
                        int lo = src[2 * p];
                        int hi = 2 * p + 1 < valid ? src[2 * p + 1] : 0;
                        panel[p * NR + j] = (ushort)lo | (hi << 16);
                    }
                    panelScales[j] = w.Scales[row];
                }
            }
        }
    }

    /// <summary>This thread's scratch block of at least <paramref name="bytes"/> bytes (see <see cref="ThreadScratch"/>).</summary>
    private static unsafe void* Buffer(ref ThreadScratch? scratch, long bytes) => (scratch ??= new()).Get(bytes);

    /// <summary>C row += (float)acc · weight scales · row scale, full or masked to nr columns.</summary>
    private readonly unsafe ref struct AccumulateStore
    {
        private readonly Vector512<float> _mask0, _mask1;
        private readonly bool _full;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public AccumulateStore(int nr)
        {
            _full = nr == NR;
            (_mask0, _mask1) = GemmCpu.ColumnMasks(nr);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(float* c, Vector512<int> acc0, Vector512<int> acc1, Vector512<float> sw0, Vector512<float> sw1, float rowScale)
        {
            var s = Vector512.Create(rowScale);
            var v0 = Vector512.ConvertToSingle(acc0);
            var v1 = Vector512.ConvertToSingle(acc1);
            if (_full)
            {
                Vector512.Store(Vector512.FusedMultiplyAdd(v0, sw0 * s, Vector512.Load(c)), c);
                Vector512.Store(Vector512.FusedMultiplyAdd(v1, sw1 * s, Vector512.Load(c + 16)), c + 16);
            }
            else
            {
                Simd512.MaskStore(c, _mask0, Vector512.FusedMultiplyAdd(v0, sw0 * s, Simd512.MaskLoad(c, _mask0)));
                Simd512.MaskStore(c + 16, _mask1, Vector512.FusedMultiplyAdd(v1, sw1 * s, Simd512.MaskLoad(c + 16, _mask1)));
            }
        }
    }

    /// <summary>
    /// 12×32 integer register tile over one packed K block: per group of <paramref name="groupK"/> k values the int32
    /// dot products (pairs of int16 products summed by vpmaddwd — exact, no saturation) are converted to float,
    /// scaled by weight scale × activation scale and added into C.
    /// a: packed activation panel [kc/2][12] int16 pairs; b: packed weight panel [kc/2][32] int16 pairs;
    /// scales: [kc/groupK][32] weight scales; rowScale: 12 activation scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Kernel12x32(int* a, int* b, float* scales, int kc, int groupK, float* rowScale, float* c, long ldc, int mr, int nr)
    {
        var tile = new AccumulateStore(nr);
        for (int g0 = 0; g0 < kc; g0 += groupK)
        {
            int pairs = (Math.Min(kc, g0 + groupK) - g0 + 1) / 2;
            Vector512<int> c00 = Vector512<int>.Zero, c01 = Vector512<int>.Zero, c10 = Vector512<int>.Zero, c11 = Vector512<int>.Zero, c20 = Vector512<int>.Zero, c21 = Vector512<int>.Zero, c30 = Vector512<int>.Zero, c31 = Vector512<int>.Zero, c40 = Vector512<int>.Zero, c41 = Vector512<int>.Zero, c50 = Vector512<int>.Zero, c51 = Vector512<int>.Zero, c60 = Vector512<int>.Zero, c61 = Vector512<int>.Zero, c70 = Vector512<int>.Zero, c71 = Vector512<int>.Zero, c80 = Vector512<int>.Zero, c81 = Vector512<int>.Zero, c90 = Vector512<int>.Zero, c91 = Vector512<int>.Zero, c100 = Vector512<int>.Zero, c101 = Vector512<int>.Zero, c110 = Vector512<int>.Zero, c111 = Vector512<int>.Zero;
            for (int p = 0; p < pairs; p++)
            {
                var b0 = Vector512.Load((short*)b);
                var b1 = Vector512.Load((short*)(b + 16));
                var a0 = Vector512.Create(a[0]).AsInt16(); c00 += Simd512.MultiplyAddAdjacent(a0, b0); c01 += Simd512.MultiplyAddAdjacent(a0, b1);
                var a1 = Vector512.Create(a[1]).AsInt16(); c10 += Simd512.MultiplyAddAdjacent(a1, b0); c11 += Simd512.MultiplyAddAdjacent(a1, b1);
                var a2 = Vector512.Create(a[2]).AsInt16(); c20 += Simd512.MultiplyAddAdjacent(a2, b0); c21 += Simd512.MultiplyAddAdjacent(a2, b1);
                var a3 = Vector512.Create(a[3]).AsInt16(); c30 += Simd512.MultiplyAddAdjacent(a3, b0); c31 += Simd512.MultiplyAddAdjacent(a3, b1);
                var a4 = Vector512.Create(a[4]).AsInt16(); c40 += Simd512.MultiplyAddAdjacent(a4, b0); c41 += Simd512.MultiplyAddAdjacent(a4, b1);
                var a5 = Vector512.Create(a[5]).AsInt16(); c50 += Simd512.MultiplyAddAdjacent(a5, b0); c51 += Simd512.MultiplyAddAdjacent(a5, b1);
                var a6 = Vector512.Create(a[6]).AsInt16(); c60 += Simd512.MultiplyAddAdjacent(a6, b0); c61 += Simd512.MultiplyAddAdjacent(a6, b1);
                var a7 = Vector512.Create(a[7]).AsInt16(); c70 += Simd512.MultiplyAddAdjacent(a7, b0); c71 += Simd512.MultiplyAddAdjacent(a7, b1);
                var a8 = Vector512.Create(a[8]).AsInt16(); c80 += Simd512.MultiplyAddAdjacent(a8, b0); c81 += Simd512.MultiplyAddAdjacent(a8, b1);
                var a9 = Vector512.Create(a[9]).AsInt16(); c90 += Simd512.MultiplyAddAdjacent(a9, b0); c91 += Simd512.MultiplyAddAdjacent(a9, b1);
                var a10 = Vector512.Create(a[10]).AsInt16(); c100 += Simd512.MultiplyAddAdjacent(a10, b0); c101 += Simd512.MultiplyAddAdjacent(a10, b1);
                var a11 = Vector512.Create(a[11]).AsInt16(); c110 += Simd512.MultiplyAddAdjacent(a11, b0); c111 += Simd512.MultiplyAddAdjacent(a11, b1);
                a += 12;
                b += 32;
            }
            var sw0 = Vector512.Load(scales);
            var sw1 = Vector512.Load(scales + 16);
            scales += 32;
            tile.Add(c + 0 * ldc, c00, c01, sw0, sw1, rowScale[0]);
            if (mr > 1) tile.Add(c + 1 * ldc, c10, c11, sw0, sw1, rowScale[1]);
            if (mr > 2) tile.Add(c + 2 * ldc, c20, c21, sw0, sw1, rowScale[2]);
            if (mr > 3) tile.Add(c + 3 * ldc, c30, c31, sw0, sw1, rowScale[3]);
            if (mr > 4) tile.Add(c + 4 * ldc, c40, c41, sw0, sw1, rowScale[4]);
            if (mr > 5) tile.Add(c + 5 * ldc, c50, c51, sw0, sw1, rowScale[5]);
            if (mr > 6) tile.Add(c + 6 * ldc, c60, c61, sw0, sw1, rowScale[6]);
            if (mr > 7) tile.Add(c + 7 * ldc, c70, c71, sw0, sw1, rowScale[7]);
            if (mr > 8) tile.Add(c + 8 * ldc, c80, c81, sw0, sw1, rowScale[8]);
            if (mr > 9) tile.Add(c + 9 * ldc, c90, c91, sw0, sw1, rowScale[9]);
            if (mr > 10) tile.Add(c + 10 * ldc, c100, c101, sw0, sw1, rowScale[10]);
            if (mr > 11) tile.Add(c + 11 * ldc, c110, c111, sw0, sw1, rowScale[11]);
        }
    }
}

/// <summary>The CPU integer kernels of <see cref="QuantizedGemm"/> (a ladder: each kept runnable for comparison).</summary>
public enum QuantizedCpuKernel
{
    /// <summary>VNNI where supported, else vpmaddwd.</summary>
    Auto,
    /// <summary>AVX-512BW vpmaddwd on int16-widened operands, 12×32 tile.</summary>
    MaddWd,
    /// <summary>AVX-VNNI vpdpbusd on u8 × s8, 8×16 tile.</summary>
    Vnni,
}
