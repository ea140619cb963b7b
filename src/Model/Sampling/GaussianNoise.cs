namespace PureFlux.Model.Sampling;

/// <summary>
/// Seeded standard-normal noise, identical on every machine and backend: xoshiro256** feeding Box-Muller in
/// float64. (PyTorch's generator is not reproduced; the same seed gives the same image within PureFlux.)
/// </summary>
public sealed class GaussianNoise
{
    private ulong _s0, _s1, _s2, _s3;

    public GaussianNoise(ulong seed)
    {
        // SplitMix64 expands the seed into the 256-bit state.
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in (0, 1].</summary>
    public double NextUniform() => ((NextUInt64() >> 11) + 1) * (1.0 / (1UL << 53));

    /// <summary>Fills <paramref name="dst"/> with N(0, 1) samples.</summary>
    public void Fill(Span<float> dst)
    {
        for (int i = 0; i < dst.Length; i += 2)
        {
            double r = Math.Sqrt(-2.0 * Math.Log(NextUniform()));
            double theta = 2.0 * Math.PI * NextUniform();
            dst[i] = (float)(r * Math.Cos(theta));
            if (i + 1 < dst.Length) dst[i + 1] = (float)(r * Math.Sin(theta));
        }
    }
}
