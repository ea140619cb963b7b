using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>How many elements of a tensor are NaN and how many ±∞.</summary>
public readonly record struct NonFiniteCount(long NaN, long Infinite)
{
    public long Total => NaN + Infinite;
    public bool Any => Total != 0;
    /// <summary>"3 NaN and 2 Inf", "3 NaN", "2 Inf" or "none".</summary>
    public override string ToString() =>
        NaN > 0 && Infinite > 0 ? $"{NaN} NaN and {Infinite} Inf" : NaN > 0 ? $"{NaN} NaN" : Infinite > 0 ? $"{Infinite} Inf" : "none";
}

public static partial class Elementwise
{
    /// <summary>
    /// Counts the NaN and ±∞ elements of x (F32, any shape) — a cheap health check for activations and latents: one
    /// read of x, and on a GPU one 8-byte read back. Tells NaN (exponent all ones, mantissa ≠ 0) from ∞ (mantissa 0).
    /// </summary>
    public static NonFiniteCount CountNonFinite(Tensor x)
    {
        const string op = nameof(Elementwise) + "." + nameof(CountNonFinite);
        Check.DType(op, "x", x, DType.F32);
        if (x.Count == 0) return default;
        using var profile = OpProfile.Start(op, x);
        switch (x.Device)
        {
            case CpuDevice cpu:
            {
                long nan = 0, inf = 0;
                Chunked(cpu, x.Count, (s, n) =>
                {
                    var (a, b) = CountNonFiniteCpu(Span(x, s, n));
                    if (a != 0) Interlocked.Add(ref nan, a);
                    if (b != 0) Interlocked.Add(ref inf, b);
                });
                return new NonFiniteCount(nan, inf);
            }
            case IlgpuDevice gpu: return CountNonFiniteIlgpu(gpu, x);
            default: throw new NotSupportedException($"{op}: device {x.Device.Id} is not supported");
        }
    }

    private const int AbsMask = 0x7FFFFFFF, ExponentBits = 0x7F800000;

    /// <summary>
    /// |bits| ≥ 0x7F800000 is non-finite, &gt; is NaN. Vector compares give −1 per true lane, so subtracting the masks
    /// counts per lane; a lane sees at most n / 8 elements, far below int.MaxValue.
    /// </summary>
    private static (long NaN, long Inf) CountNonFiniteCpu(ReadOnlySpan<float> x)
    {
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(x);
        long nan = 0, nonFinite = 0;
        int i = 0;
        if (Vector512.IsHardwareAccelerated && bits.Length >= Vector512<int>.Count)
        {
            var abs = Vector512.Create(AbsMask);
            var exp = Vector512.Create(ExponentBits);
            Vector512<int> nanAcc = default, nfAcc = default;
            for (; i <= bits.Length - Vector512<int>.Count; i += Vector512<int>.Count)
            {
                var v = Vector512.Create(bits.Slice(i, Vector512<int>.Count)) & abs;
                nanAcc -= Vector512.GreaterThan(v, exp);
                nfAcc -= Vector512.GreaterThanOrEqual(v, exp);
            }
            nan += Vector512.Sum(nanAcc);
            nonFinite += Vector512.Sum(nfAcc);
        }
        else if (Vector256.IsHardwareAccelerated && bits.Length >= Vector256<int>.Count)
        {
            var abs = Vector256.Create(AbsMask);
            var exp = Vector256.Create(ExponentBits);
            Vector256<int> nanAcc = default, nfAcc = default;
            for (; i <= bits.Length - Vector256<int>.Count; i += Vector256<int>.Count)
            {
                var v = Vector256.Create(bits.Slice(i, Vector256<int>.Count)) & abs;
                nanAcc -= Vector256.GreaterThan(v, exp);
                nfAcc -= Vector256.GreaterThanOrEqual(v, exp);
            }
            nan += Vector256.Sum(nanAcc);
            nonFinite += Vector256.Sum(nfAcc);
        }
        for (; i < bits.Length; i++)
        {
            int v = bits[i] & AbsMask;
            if (v > ExponentBits) nan++;
            if (v >= ExponentBits) nonFinite++;
        }
        return (nan, nonFinite - nan);
    }
}
