using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace PureFlux.Kernels;

/// <summary>
/// The AVX-512 instructions the CPU kernels use that have no cross-platform <see cref="Vector512"/> form (masked loads and
/// stores, lane shuffles, vpmaddwd, narrowing conversions), each with a fallback of the same result for CPUs without
/// AVX-512 (AVX2-only x64 such as Zen 2/3 or most desktop Intel parts). Without AVX-512 the JIT runs
/// <see cref="Vector512{T}"/> arithmetic as two <see cref="Vector256{T}"/> halves, so the kernels stay correct everywhere
/// and fast where AVX-512 exists; the fallbacks below are exact, not approximations (same lanes, same integer results).
/// </summary>
internal static unsafe class Simd512
{
    public static bool Native => Avx512F.IsSupported;

    /// <summary>Lanes where <paramref name="mask"/> has any bit set load from <paramref name="p"/>; the others are 0 and not read.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> MaskLoad(float* p, Vector512<float> mask)
    {
        if (Avx512F.IsSupported) return Avx512F.MaskLoad(p, mask, Vector512<float>.Zero);
        return MaskLoadSlow(p, mask);
    }

    private static Vector512<float> MaskLoadSlow(float* p, Vector512<float> mask)
    {
        var bits = mask.AsUInt32();
        float* tmp = stackalloc float[16];
        for (int i = 0; i < 16; i++) tmp[i] = bits.GetElement(i) != 0 ? p[i] : 0f;
        return Vector512.Load(tmp);
    }

    /// <summary>Stores the lanes of <paramref name="v"/> where <paramref name="mask"/> is set; memory under the others is not touched.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MaskStore(float* p, Vector512<float> mask, Vector512<float> v)
    {
        if (Avx512F.IsSupported) { Avx512F.MaskStore(p, mask, v); return; }
        MaskStoreSlow(p, mask, v);
    }

    private static void MaskStoreSlow(float* p, Vector512<float> mask, Vector512<float> v)
    {
        var bits = mask.AsUInt32();
        for (int i = 0; i < 16; i++) if (bits.GetElement(i) != 0) p[i] = v.GetElement(i);
    }

    /// <summary>The first <paramref name="count"/> (≤ 16) ushorts from <paramref name="p"/>, the rest 0 (not read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<ushort> LoadUShorts(ushort* p, int count)
    {
        if (Avx512BW.VL.IsSupported)
            return Avx512BW.VL.MaskLoad(p, Vector256.LessThan(Vector256<ushort>.Indices, Vector256.Create((ushort)count)), Vector256<ushort>.Zero);
        ushort* tmp = stackalloc ushort[16];
        for (int i = 0; i < 16; i++) tmp[i] = i < count ? p[i] : (ushort)0;
        return Vector256.Load(tmp);
    }

    /// <summary>16 ushorts zero-extended to 16 uints (vpmovzxwd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> WidenToUInt32(Vector256<ushort> bits) =>
        Avx512F.IsSupported ? Avx512F.ConvertToVector512UInt32(bits) : Vector512.Create(Vector256.WidenLower(bits), Vector256.WidenUpper(bits));

    /// <summary>16 bytes zero-extended to 16 uints (vpmovzxbd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> WidenToUInt32(Vector128<byte> codes) =>
        Avx512F.IsSupported ? Avx512F.ConvertToVector512UInt32(codes)
            : WidenToUInt32(Vector256.Create(Vector128.WidenLower(codes), Vector128.WidenUpper(codes)));

    /// <summary>vpmaddwd: adjacent int16 products summed into int32 lanes (exact; AVX2 does each 256-bit half).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MultiplyAddAdjacent(Vector512<short> a, Vector512<short> b)
    {
        if (Avx512BW.IsSupported) return Avx512BW.MultiplyAddAdjacent(a, b);
        if (Avx2.IsSupported)
            return Vector512.Create(Avx2.MultiplyAddAdjacent(a.GetLower(), b.GetLower()), Avx2.MultiplyAddAdjacent(a.GetUpper(), b.GetUpper()));
        var r = Vector512<int>.Zero;
        for (int i = 0; i < 16; i++)
            r = r.WithElement(i, a.GetElement(2 * i) * b.GetElement(2 * i) + a.GetElement(2 * i + 1) * b.GetElement(2 * i + 1));
        return r;
    }

    /// <summary>int32 → int16 by truncation (vpmovdw); callers pass values already in int16 range.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<short> NarrowToInt16(Vector512<int> v) =>
        Avx512F.IsSupported ? Avx512F.ConvertToVector256Int16(v) : Vector256.Narrow(v.GetLower(), v.GetUpper());

    /// <summary>int32 → int8 with signed saturation (vpmovsdb).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<sbyte> NarrowToSByteSaturate(Vector512<int> v)
    {
        if (Avx512F.IsSupported) return Avx512F.ConvertToVector128SByteWithSaturation(v);
        var clamped = Vector512.Min(Vector512.Max(v, Vector512.Create(-128)), Vector512.Create(127));
        var s16 = Vector256.Narrow(clamped.GetLower(), clamped.GetUpper());
        return Vector128.Narrow(s16.GetLower(), s16.GetUpper());
    }

    /// <summary>In-place 16×16 float transpose of r[0..16) (t is 16 vectors of scratch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose16x16(Vector512<float>* r, Vector512<float>* t)
    {
        if (!Avx512F.IsSupported)
        {
            float* src = (float*)r, dst = (float*)t;
            for (int i = 0; i < 16; i++)
                for (int j = 0; j < 16; j++) dst[j * 16 + i] = src[i * 16 + j];
            for (int i = 0; i < 16; i++) r[i] = t[i];
            return;
        }
        // Unpack pairs, 64-bit pairs, then two rounds of 128-bit lane shuffles.
        for (int i = 0; i < 16; i += 2)
        {
            t[i] = Avx512F.UnpackLow(r[i], r[i + 1]);
            t[i + 1] = Avx512F.UnpackHigh(r[i], r[i + 1]);
        }
        for (int i = 0; i < 16; i += 4)
        {
            r[i] = Avx512F.Shuffle(t[i], t[i + 2], 0x44);
            r[i + 1] = Avx512F.Shuffle(t[i], t[i + 2], 0xEE);
            r[i + 2] = Avx512F.Shuffle(t[i + 1], t[i + 3], 0x44);
            r[i + 3] = Avx512F.Shuffle(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 4; i++)
        {
            t[i] = Avx512F.Shuffle4x128(r[i], r[i + 4], 0x88);
            t[i + 4] = Avx512F.Shuffle4x128(r[i], r[i + 4], 0xDD);
            t[i + 8] = Avx512F.Shuffle4x128(r[i + 8], r[i + 12], 0x88);
            t[i + 12] = Avx512F.Shuffle4x128(r[i + 8], r[i + 12], 0xDD);
        }
        for (int i = 0; i < 8; i++)
        {
            r[i] = Avx512F.Shuffle4x128(t[i], t[i + 8], 0x88);
            r[i + 8] = Avx512F.Shuffle4x128(t[i], t[i + 8], 0xDD);
        }
    }
}
