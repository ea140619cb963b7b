using System.Runtime.CompilerServices;

namespace PureFlux.Runtime;

/// <summary>The two OCP 8-bit float formats (PyTorch <c>float8_e4m3fn</c> and <c>float8_e5m2</c>).</summary>
public enum Fp8Format
{
    /// <summary>1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN; max 448, min subnormal 2^-9.</summary>
    E4M3,
    /// <summary>1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like (inf, NaN); max 57344, min subnormal 2^-16.
    /// The bit pattern is the upper byte of an IEEE half.</summary>
    E5M2,
}

/// <summary>
/// Scalar FP8 codec: exact decode of all 256 codes, round-to-nearest-even encode that saturates to ±max (what
/// <c>x.clamp(-max, max).to(torch.float8_*)</c> gives; ±inf saturates too, NaN stays NaN).
/// <see cref="PureFlux.Kernels.Quantize"/> has the AVX-512 form of the same encode, bit for bit.
/// </summary>
public static class Fp8
{
    public const float E4M3Max = 448f, E5M2Max = 57344f;

    public static float Max(Fp8Format format) => format == Fp8Format.E4M3 ? E4M3Max : E5M2Max;

    /// <summary>The tensor dtype that holds the format.</summary>
    public static DType DType(this Fp8Format format) => format == Fp8Format.E4M3 ? Runtime.DType.F8E4M3 : Runtime.DType.F8E5M2;

    /// <summary>The format of an F8 dtype (null for any other dtype).</summary>
    public static Fp8Format? FormatOf(DType dtype) => dtype switch
    {
        Runtime.DType.F8E4M3 => Fp8Format.E4M3,
        Runtime.DType.F8E5M2 => Fp8Format.E5M2,
        _ => null,
    };

    /// <summary>Exact value of a code. Subnormals included; E4M3 0x7F/0xFF and E5M2 exponent 31 with a mantissa are NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Decode(byte code, Fp8Format format)
    {
        uint sign = (uint)(code & 0x80) << 24;
        uint magnitude = code & 0x7Fu;
        float value;
        if (format == Fp8Format.E4M3)
        {
            if (magnitude == 0x7F) return float.NaN;
            // Magnitude bits placed under the float exponent field, then rebias by 2^(127−7): exact, subnormals too.
            value = BitConverter.UInt32BitsToSingle(magnitude << 20) * 1.329228e36f; // 2^120
        }
        else
        {
            if (magnitude >= 0x7C) return BitConverter.UInt32BitsToSingle(sign | 0x7F800000u | (magnitude & 3u) << 21);
            value = BitConverter.UInt32BitsToSingle(magnitude << 21) * 5.192296858534828e33f; // 2^112
        }
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) | sign);
    }

    /// <summary>Nearest code, ties to even; |x| beyond max (±inf included) gives ±max; NaN gives a NaN code.</summary>
    public static byte Encode(float x, Fp8Format format)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        uint sign = (u >> 24) & 0x80u;
        uint a = u & 0x7FFFFFFFu;
        bool e4 = format == Fp8Format.E4M3;
        if (a > 0x7F800000u) return (byte)(sign | (e4 ? 0x7Fu : 0x7Eu));
        return (byte)(sign | EncodeMagnitude(a, e4));
    }

    /// <summary>Code of a non-NaN magnitude (float bits). Normal range: round the float's mantissa to 3 (2) bits by adding
    /// half an ulp minus one plus the kept lsb (ties to even), then rebias the exponent. Subnormal range (below 2^-6 or
    /// 2^-14): adding 2^(23 + emin − M) lets the FPU round to a multiple of the subnormal step, whose count is the code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint EncodeMagnitude(uint a, bool e4)
    {
        int shift = e4 ? 20 : 21;                           // 23 − mantissa bits
        uint rebias = e4 ? (127u - 7u) << 3 : (127u - 15u) << 2;
        uint minNormal = e4 ? 0x3C800000u : 0x38800000u;    // 2^-6, 2^-14
        uint maxCode = e4 ? 0x7Eu : 0x7Bu;                  // 448, 57344
        if (a < minNormal)
        {
            float magic = e4 ? 16384f : 128f;               // 2^14 = 2^(23 − 6 − 3), 2^7 = 2^(23 − 14 − 2)
            return BitConverter.SingleToUInt32Bits(BitConverter.UInt32BitsToSingle(a) + magic) - BitConverter.SingleToUInt32Bits(magic);
        }
        uint rounded = (a + (1u << (shift - 1)) - 1u + ((a >> shift) & 1u)) >> shift;
        return Math.Min(rounded - rebias, maxCode);
    }
}
