using System.Runtime.InteropServices;

namespace PureFlux.Tests.Runtime;

/// <summary>The scalar FP8 codec against independent definitions: every code decoded, encode as a nearest-value search.</summary>
public sealed class Fp8Tests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-fp8-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<Fp8Format> Formats => new(Fp8Format.E4M3, Fp8Format.E5M2);

    private static (int Exponent, int Mantissa, int Bias) Layout(Fp8Format f) => f == Fp8Format.E4M3 ? (4, 3, 7) : (5, 2, 15);

    /// <summary>The textbook value of a code in float64: (−1)^s · 2^(e − bias) · (1 + m / 2^M), subnormal 2^(1 − bias) · m / 2^M;
    /// E4M3 has no infinities (only S.1111.111 is NaN), E5M2 is IEEE (exponent 31: inf, or NaN with a mantissa).</summary>
    private static double Independent(int code, Fp8Format f)
    {
        var (eb, mb, bias) = Layout(f);
        int s = code >> 7, e = (code >> mb) & ((1 << eb) - 1), m = code & ((1 << mb) - 1);
        double sign = s == 1 ? -1 : 1;
        if (f == Fp8Format.E4M3 && e == 15 && m == 7) return double.NaN;
        if (f == Fp8Format.E5M2 && e == 31) return m == 0 ? sign * double.PositiveInfinity : double.NaN;
        return e == 0 ? sign * Math.Pow(2, 1 - bias) * m / (1 << mb) : sign * Math.Pow(2, e - bias) * (1 + (double)m / (1 << mb));
    }

    [Theory, MemberData(nameof(Formats))]
    public void Decode_all_256_codes_exactly(Fp8Format f)
    {
        int nans = 0;
        for (int c = 0; c < 256; c++)
        {
            double expected = Independent(c, f);
            float actual = Fp8.Decode((byte)c, f);
            if (double.IsNaN(expected)) { Assert.True(float.IsNaN(actual), $"{f} 0x{c:X2}: {actual}, expected NaN"); nans++; continue; }
            Assert.True((double)actual == expected && float.IsNegative(actual) == (c >= 128), $"{f} 0x{c:X2}: {actual:R}, expected {expected:R}");
        }
        Assert.Equal(f == Fp8Format.E4M3 ? 2 : 6, nans);
        Assert.Equal(Fp8.Max(f), Fp8.Decode(f == Fp8Format.E4M3 ? (byte)0x7E : (byte)0x7B, f));
        Assert.Equal(f == Fp8Format.E4M3 ? Math.Pow(2, -9) : Math.Pow(2, -16), Fp8.Decode(1, f));
    }

    [Theory, MemberData(nameof(Formats))]
    public void Encode_round_trips_every_finite_code(Fp8Format f)
    {
        for (int c = 0; c < 256; c++)
        {
            float v = Fp8.Decode((byte)c, f);
            if (!float.IsFinite(v)) continue;
            Assert.Equal((byte)c, Fp8.Encode(v, f));
        }
    }

    /// <summary>The nearest finite code by search (ties: the even code, i.e. mantissa lsb 0), |x| ≥ max → ±max.</summary>
    private static byte Nearest(float x, Fp8Format f)
    {
        double max = Fp8.Max(f);
        double a = Math.Min(Math.Abs((double)x), max);
        int best = 0;
        double bestErr = double.PositiveInfinity;
        for (int c = 0; c < 128; c++)
        {
            double v = Independent(c, f);
            if (!double.IsFinite(v)) continue;
            double err = Math.Abs(v - a);
            if (err < bestErr || (err == bestErr && (c & 1) == 0)) { best = c; bestErr = err; }
        }
        return (byte)(best | (float.IsNegative(x) ? 0x80 : 0));
    }

    [Theory, MemberData(nameof(Formats))]
    public void Encode_is_the_nearest_code_ties_to_even_with_saturation(Fp8Format f)
    {
        var values = new List<float>();
        // Every midpoint between neighbouring finite codes (exact ties), and points just either side of it.
        for (int c = 0; c < 127; c++)
        {
            double lo = Independent(c, f), hi = Independent(c + 1, f);
            if (!double.IsFinite(hi)) continue;
            float mid = (float)((lo + hi) / 2);
            values.AddRange([mid, MathF.BitIncrement(mid), MathF.BitDecrement(mid), (float)lo, -mid]);
        }
        var rng = new Random(8);
        for (int i = 0; i < 20000; i++)
            values.Add((rng.NextSingle() * 2 - 1) * MathF.Pow(2, rng.Next(-22, 20)));
        values.AddRange([0f, -0f, float.Epsilon, 1e-30f, Fp8.Max(f) * 1.03f, Fp8.Max(f) * 1.1f, 1e30f, float.MaxValue,
            float.PositiveInfinity, float.NegativeInfinity]);
        foreach (var x in values)
            Assert.True(Nearest(x, f) == Fp8.Encode(x, f), $"{f} encode {x:R}: 0x{Fp8.Encode(x, f):X2}, nearest 0x{Nearest(x, f):X2}");
    }

    [Fact]
    public void Encode_examples_ties_subnormals_saturation_nan()
    {
        // E4M3 around 1: step 1/8. 1 + 1/16 is a tie → 1 (even); 1 + 3/16 → 1.25 (even code 0x3A).
        Assert.Equal(0x38, Fp8.Encode(1.0625f, Fp8Format.E4M3));
        Assert.Equal(0x3A, Fp8.Encode(1.1875f, Fp8Format.E4M3));
        // Subnormals: 2^-9 is the least; half of it ties to 0, three halves tie to 2 · 2^-9 (even).
        Assert.Equal(0x00, Fp8.Encode(MathF.Pow(2, -10), Fp8Format.E4M3));
        Assert.Equal(0x02, Fp8.Encode(3 * MathF.Pow(2, -10), Fp8Format.E4M3));
        Assert.Equal(0x81, Fp8.Encode(-0.7f * MathF.Pow(2, -9), Fp8Format.E4M3));
        // Largest subnormal rounds up into the least normal (0x08 = 2^-6).
        Assert.Equal(0x08, Fp8.Encode(MathF.Pow(2, -6) * 0.97f, Fp8Format.E4M3));
        // Saturation: 464 would round to 480 (does not exist in e4m3fn) → 448; inf → max; NaN stays NaN.
        Assert.Equal(0x7E, Fp8.Encode(470f, Fp8Format.E4M3));
        Assert.Equal(0xFE, Fp8.Encode(float.NegativeInfinity, Fp8Format.E4M3));
        Assert.Equal(0x7B, Fp8.Encode(1e9f, Fp8Format.E5M2));
        Assert.True(float.IsNaN(Fp8.Decode(Fp8.Encode(float.NaN, Fp8Format.E4M3), Fp8Format.E4M3)));
        Assert.True(float.IsNaN(Fp8.Decode(Fp8.Encode(float.NaN, Fp8Format.E5M2), Fp8Format.E5M2)));
        Assert.Equal(0x80, Fp8.Encode(-0f, Fp8Format.E5M2));
    }

    [Fact]
    public void Safetensors_reads_and_writes_the_F8_dtype_names()
    {
        Assert.Equal("F8_E4M3", DType.F8E4M3.SafetensorsName());
        Assert.Equal("F8_E5M2", DType.F8E5M2.SafetensorsName());
        Assert.Equal(1, DType.F8E4M3.ByteCount(1));
        byte[] codes = [0x38, 0xC0, 0x7E, 0x01];
        string path = Path.Combine(_dir, "f8.safetensors");
        SafetensorsWriter.Write(path,
        [
            SafetensorsWriteEntry.FromBytes("a", DType.F8E4M3, Shape.Of(2, 2), codes),
            SafetensorsWriteEntry.FromBytes("b", DType.F8E5M2, Shape.Of(4), [0x3C, 0xC0, 0x7B, 0x01]),
        ], new Dictionary<string, string>());
        Assert.Contains("\"F8_E4M3\"", File.ReadAllText(path));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(DType.F8E4M3, f.Entry("a").DType);
        Assert.Equal(DType.F8E5M2, f.Entry("b").DType);
        Assert.Equal(codes, f.Bytes("a").ToArray());
        Assert.Equal([1f, -2f, 448f, MathF.Pow(2, -9)], f.ReadFloats("a"));
        Assert.Equal([1f, -2f, 57344f, MathF.Pow(2, -16)], f.ReadFloats("b"));
    }
}
