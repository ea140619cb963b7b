using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>
/// Weight quantization for <see cref="QuantizedGemm"/>. Symmetric (no zero point); values are rounded to nearest
/// (ties to even, as <see cref="MathF.Round(float)"/>), so every integer weight's error is at most half its scale:
/// |w − q·scale| ≤ scale / 2 (FP8: see <see cref="Fp8"/>).
/// <para>
/// Streaming: rows are quantized in parallel, each widened from F32/F16/BF16 in registers (the GEMM's
/// <see cref="GemmCpu.IWeightRow"/> readers), max-abs then quantize in AVX-512, written straight into the result
/// tensors — no FP32 copy of the weight. A CPU weight (including a memory-mapped one) is read in place; a weight on an ILGPU device is read back,
/// quantized on the host and the result uploaded. Results equal the scalar definition bit for bit:
/// q = (int)clamp(round(w · inv), ±qmax), inv = qmax / max|w| (0 for an all-zero row or group), scale = max|w| / qmax.
/// </para>
/// </summary>
public static unsafe class Quantize
{
    /// <summary>Int8, one scale per output channel: scale[n] = max_k |w[n, k]| / 127, q ∈ [−127, 127].
    /// weight: F32/F16/BF16 [N, K] on any device → data I8 [N, K], scales F32 [N].</summary>
    public static QuantizedTensor Int8(Tensor weight)
    {
        const string op = "Quantize.Int8";
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.Rank(op, "weight", weight, 2);
        int n = weight.Shape[0], k = weight.Shape[1];
        return Run(weight, n, k, k, DType.I8, new Shape(n));
    }

    /// <summary>Int4, one scale per group of <paramref name="groupSize"/> (32, 64 or 128) consecutive k of an output
    /// channel: scale = max |w| / 7 over the group, q ∈ [−7, 7], two per byte (element 2i in the low nibble).
    /// weight: F32/F16/BF16 [N, K] (K a multiple of groupSize) → data I4 [N, K], scales F32 [N, K / groupSize].</summary>
    public static QuantizedTensor Int4(Tensor weight, int groupSize)
    {
        const string op = "Quantize.Int4";
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.Rank(op, "weight", weight, 2);
        Check.That(groupSize is 32 or 64 or 128, op, $"groupSize must be 32, 64 or 128, got {groupSize}");
        int n = weight.Shape[0], k = weight.Shape[1];
        Check.That(k % groupSize == 0, op, $"weight ({weight.Name ?? "unnamed"}) has K = {k}, not a multiple of groupSize {groupSize}");
        return Run(weight, n, k, groupSize, DType.I4, new Shape(n, k / groupSize));
    }

    /// <summary>FP8 (E4M3 or E5M2), one scale per output channel: scale[n] = max_k |w[n, k]| / fmax (fmax 448 or 57344;
    /// 1 for an all-zero row), q = encode(w / scale) rounded to nearest even (<see cref="Runtime.Fp8.Encode"/>, bit for bit).
    /// Unlike int8 the step is relative: a weight in the normal range is off by at most 2^-(M+1)·|w| (M = 3 mantissa bits
    /// for E4M3: 1/16 of |w|; M = 2 for E5M2: 1/8), one below the smallest normal (|w| &lt; scale·2^-6, resp. 2^-14) by at
    /// most half the subnormal step, scale·2^-10 (E4M3) or scale·2^-17 (E5M2).
    /// weight: F32/F16/BF16 [N, K] on any device → data F8E4M3/F8E5M2 [N, K], scales F32 [N].</summary>
    public static QuantizedTensor Fp8(Tensor weight, Fp8Format format)
    {
        const string op = "Quantize.Fp8";
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.Rank(op, "weight", weight, 2);
        int n = weight.Shape[0], k = weight.Shape[1];
        return Run(weight, n, k, k, format.DType(), new Shape(n));
    }

    /// <summary>Allocates the result on the weight's device and fills it (in place on the CPU, via host arrays on ILGPU).</summary>
    private static QuantizedTensor Run(Tensor weight, int n, int k, int groupSize, DType dtype, Shape scaleShape)
    {
        var device = weight.Device;
        var data = Tensor.Empty(device, dtype, new Shape(n, k), weight.Name);
        var scales = Tensor.Empty(device, DType.F32, scaleShape, (weight.Name ?? "weight") + ".scales");
        try
        {
            if (device is CpuDevice cpu)
                Rows((void*)weight.Pointer, weight.DType, n, k, groupSize, dtype, (void*)data.Pointer, (float*)scales.Pointer, cpu.Threads);
            else
            {
                var src = weight.ToArray<byte>();
                var q = new byte[data.ByteCount];
                var s = new float[scales.Count];
                fixed (byte* ps = src, pq = q)
                fixed (float* pscale = s)
                    Rows(ps, weight.DType, n, k, groupSize, dtype, pq, pscale, Environment.ProcessorCount);
                data.CopyFrom<byte>(q);
                scales.CopyFrom<float>(s);
            }
            return new QuantizedTensor(data, scales, groupSize);
        }
        catch
        {
            data.Dispose();
            scales.Dispose();
            throw;
        }
    }

    /// <summary>Quantizes rows [0, n) of src (dtype F32/F16/BF16, [n, k]) into dst (I8/F8 [n, k] or I4 [n, k/2] bytes)
    /// and scales ([n, k / groupSize]), rows split across <paramref name="threads"/>.</summary>
    private static void Rows(void* src, DType dtype, int n, int k, int groupSize, DType target, void* dst, float* scales, int threads)
    {
        if (n == 0) return;
        threads = (int)Math.Clamp(Math.Min(threads, (long)n * k / 65536), 1, n);
        nint ps = (nint)src, pd = (nint)dst, pscale = (nint)scales;
        int elementBytes = dtype == DType.F32 ? 4 : 2, groups = k / groupSize;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var (start, len) = Partition.Range(n, t, threads);
            for (long row = start; row < start + len; row++)
            {
                byte* s = (byte*)ps + row * k * elementBytes;
                float* sc = (float*)pscale + row * groups;
                switch (dtype)
                {
                    case DType.BF16: QuantizeRow<GemmCpu.Bf16Row>(s, k, groupSize, target, (byte*)pd, row, sc); break;
                    case DType.F16: QuantizeRow<GemmCpu.F16Row>(s, k, groupSize, target, (byte*)pd, row, sc); break;
                    default: QuantizeRow<GemmCpu.F32Row>(s, k, groupSize, target, (byte*)pd, row, sc); break;
                }
            }
        });
    }

    private static void QuantizeRow<TRow>(void* src, int k, int groupSize, DType target, byte* dst, long row, float* scales) where TRow : struct, GemmCpu.IWeightRow
    {
        switch (target)
        {
            case DType.I4:
                for (int g = 0; g < k / groupSize; g++)
                    scales[g] = Int4Group<TRow>(src, g * groupSize, groupSize, dst + (row * k + g * groupSize) / 2);
                break;
            case DType.I8: scales[0] = Int8Run<TRow>(src, k, (sbyte*)dst + row * k); break;
            default: scales[0] = Fp8Run<TRow>(src, k, dst + row * k, target == DType.F8E4M3); break;
        }
    }

    /// <summary>Elements [0, k) → FP8 codes of w / scale and the scale max|w| / fmax (1 when that is not positive: a zero row).
    /// The vector encode is <see cref="Runtime.Fp8.EncodeMagnitude"/> in 16 lanes; w / scale is a true division in both.</summary>
    private static float Fp8Run<TRow>(void* src, int k, byte* dst, bool e4) where TRow : struct, GemmCpu.IWeightRow
    {
        var format = e4 ? Fp8Format.E4M3 : Fp8Format.E5M2;
        float scale = MaxAbs<TRow>(src, 0, k) / Runtime.Fp8.Max(format);
        if (!(scale > 0f)) scale = 1f;
        var vscale = Vector512.Create(scale);
        int shift = e4 ? 20 : 21;
        var half = Vector512.Create((1u << (shift - 1)) - 1u);
        var rebias = Vector512.Create(e4 ? (127u - 7u) << 3 : (127u - 15u) << 2);
        var minNormal = Vector512.Create(e4 ? 0x3C800000u : 0x38800000u);
        var maxCode = Vector512.Create(e4 ? 0x7Eu : 0x7Bu);
        var nanCode = Vector512.Create(e4 ? 0x7Fu : 0x7Eu);
        var magic = Vector512.Create(e4 ? 16384f : 128f);
        var one = Vector512<uint>.One;
        int i = 0;
        for (; i + 16 <= k; i += 16)
        {
            var u = (TRow.Load16(src, i) / vscale).AsUInt32();
            var a = u & Vector512.Create(0x7FFFFFFFu);
            var normal = Vector512.Min(Vector512.ShiftRightLogical(a + half + (Vector512.ShiftRightLogical(a, shift) & one), shift) - rebias, maxCode);
            var sub = (a.AsSingle() + magic).AsUInt32() - magic.AsUInt32();
            var code = Vector512.ConditionalSelect(Vector512.LessThan(a, minNormal), sub, normal);
            code = Vector512.ConditionalSelect(Vector512.GreaterThan(a, Vector512.Create(0x7F800000u)), nanCode, code);
            code |= Vector512.ShiftRightLogical(u, 24) & Vector512.Create(0x80u);
            // codes < 256: truncating narrows are exact (generic, so this also runs where AVX-512 is absent: F32 weights).
            Vector512.Narrow(Vector512.Narrow(code, code), Vector512<ushort>.Zero).GetLower().GetLower().Store(dst + i);
        }
        for (; i < k; i++) dst[i] = Runtime.Fp8.Encode(TRow.Load1(src, i) / scale, format);
        return scale;
    }

    /// <summary>Elements [0, k) → int8 values and their scale max|w| / 127.</summary>
    private static float Int8Run<TRow>(void* src, int k, sbyte* dst) where TRow : struct, GemmCpu.IWeightRow
    {
        float max = MaxAbs<TRow>(src, 0, k);
        float inv = max > 0f ? 127f / max : 0f;
        var vinv = Vector512.Create(inv);
        int i = 0;
        for (; i + 16 <= k; i += 16)
            Simd512.NarrowToSByteSaturate(QuantizeVector(TRow.Load16(src, i), vinv, 127f)).Store(dst + i);
        for (; i < k; i++) dst[i] = (sbyte)Math.Clamp(MathF.Round(TRow.Load1(src, i) * inv), -127f, 127f);
        return max / 127f;
    }

    /// <summary>Elements [k0, k0 + g) (g a multiple of 32) → g/2 bytes of int4 pairs, low nibble first; returns the scale.</summary>
    private static float Int4Group<TRow>(void* src, int k0, int g, byte* dst) where TRow : struct, GemmCpu.IWeightRow
    {
        float max = MaxAbs<TRow>(src, k0, g);
        float inv = max > 0f ? 7f / max : 0f;
        var vinv = Vector512.Create(inv);
        var nibble = Vector128.Create((ushort)0xF);
        for (int i = 0; i < g; i += 32)
        {
            // 16-bit lane = (element 2j) | (element 2j+1) << 8 → low byte (lo & 0xF) | (hi & 0xF) << 4.
            var u0 = Simd512.NarrowToSByteSaturate(QuantizeVector(TRow.Load16(src, k0 + i), vinv, 7f)).AsUInt16();
            var u1 = Simd512.NarrowToSByteSaturate(QuantizeVector(TRow.Load16(src, k0 + i + 16), vinv, 7f)).AsUInt16();
            var p0 = (u0 & nibble) | (Vector128.ShiftRightLogical(u0, 4) & Vector128.Create((ushort)0xF0));
            var p1 = (u1 & nibble) | (Vector128.ShiftRightLogical(u1, 4) & Vector128.Create((ushort)0xF0));
            Vector128.Narrow(p0, p1).Store(dst + i / 2);
        }
        return max / 7f;
    }

    /// <summary>clamp(round(v · inv), ±qmax) as int32: round ties to even; IEEE Clamp keeps NaN, which converts to 0
    /// exactly as the scalar (sbyte)MathF.Round(NaN) does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> QuantizeVector(Vector512<float> v, Vector512<float> inv, float qmax) =>
        Vector512.ConvertToInt32(Vector512.Clamp(Vector512.Round(v * inv), Vector512.Create(-qmax), Vector512.Create(qmax)));

    /// <summary>max |w| over [k0, k0 + len); NaN propagates (IEEE Max), as TensorPrimitives.MaxMagnitude does.</summary>
    private static float MaxAbs<TRow>(void* src, int k0, int len) where TRow : struct, GemmCpu.IWeightRow
    {
        var vmax = Vector512<float>.Zero;
        int i = 0;
        for (; i + 16 <= len; i += 16) vmax = Vector512.Max(vmax, Vector512.Abs(TRow.Load16(src, k0 + i)));
        float max = HorizontalMax(vmax);
        for (; i < len; i++) max = Math.Max(max, Math.Abs(TRow.Load1(src, k0 + i)));
        return max;
    }

    /// <summary>Largest lane; IEEE Max, so a NaN lane gives NaN.</summary>
    private static float HorizontalMax(Vector512<float> v)
    {
        var m = Vector256.Max(v.GetLower(), v.GetUpper());
        var m2 = Vector128.Max(m.GetLower(), m.GetUpper());
        return Math.Max(Math.Max(m2[0], m2[1]), Math.Max(m2[2], m2[3]));
    }

    /// <summary>The dequantized weight q·scale as F32 [N, K] on the host (for references and tests).</summary>
    public static float[] Dequantize(QuantizedTensor w)
    {
        int n = w.N, k = w.K, g = w.GroupSize, groups = k / g;
        var scales = w.Scales.ToArray<float>();
        var result = new float[(long)n * k];
        if (w.Data.DType == DType.I8)
        {
            var q = w.Data.ToArray<sbyte>();
            for (long i = 0; i < result.Length; i++) result[i] = q[i] * scales[i / k];
        }
        else if (w.Fp8 is { } format)
        {
            var q = w.Data.ToArray<byte>();
            for (long i = 0; i < result.Length; i++) result[i] = Runtime.Fp8.Decode(q[i], format) * scales[i / k];
        }
        else
        {
            var q = w.Data.ToArray<byte>();
            for (long i = 0; i < result.Length; i++)
            {
                long row = i / k, col = i % k;
                result[i] = Int4Value(q[i / 2], (int)(i & 1)) * scales[row * groups + col / g];
            }
        }
        return result;
    }

    /// <summary>The signed 4-bit value in nibble <paramref name="high"/> (0 = low) of a byte.</summary>
    internal static int Int4Value(byte b, int high) => ((b >> (4 * high)) & 0xF) is var v && v >= 8 ? v - 16 : v;
}
