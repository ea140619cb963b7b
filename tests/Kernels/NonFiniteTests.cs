using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// Elementwise.CountNonFinite: NaN (any sign and payload) and ±∞ counted apart, every finite value (the largest, the
/// subnormals, −0) left alone, in SIMD bodies and scalar tails, on one thread and across the parallel split, on every
/// backend. The generation loop's NaN/Inf guard rests on it.
/// </summary>
public class NonFiniteTests
{
    private static readonly float[] Specials =
    [
        float.NaN, -float.NaN, BitConverter.Int32BitsToSingle(0x7F800001), BitConverter.Int32BitsToSingle(0x7FFFFFFF),
        BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001)), float.PositiveInfinity, float.NegativeInfinity,
    ];

    private static readonly float[] EdgeFinite =
    [
        float.MaxValue, float.MinValue, float.Epsilon, -float.Epsilon, BitConverter.Int32BitsToSingle(0x007FFFFF), -0f, 0f,
        BitConverter.Int32BitsToSingle(0x7F7FFFFF),
    ];

    private static (long NaN, long Inf) Host(float[] x) => (x.LongCount(float.IsNaN), x.LongCount(float.IsInfinity));

    /// <summary>Random finite data with specials sprinkled at seeded positions (including the first and last element).</summary>
    private static float[] Data(int n, int seed, int specials)
    {
        var x = HostData.Random(n, seed, 1000f);
        var rng = new Random(seed);
        for (int i = 0; i < Math.Min(n, 64); i++) x[rng.Next(n)] = EdgeFinite[i % EdgeFinite.Length];
        for (int i = 0; i < specials; i++) x[i == 0 ? 0 : i == 1 ? n - 1 : rng.Next(n)] = Specials[i % Specials.Length];
        return x;
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Counts_nan_and_inf_apart(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var (n, specials) in new[] { (1, 0), (1, 1), (15, 3), (16, 2), (17, 5), (1000, 0), (1003, 40), (200_003, 97) })
        {
            var x = Data(n, n, specials);
            using var t = Tensor.FromArray(dev, x, n);
            var c = Elementwise.CountNonFinite(t);
            var (nan, inf) = Host(x);
            Assert.True(nan + inf > 0 || specials == 0, "test data has no specials");
            Assert.Equal((nan, inf), (c.NaN, c.Infinite));
            Assert.Equal(nan + inf, c.Total);
            Assert.Equal(nan + inf > 0, c.Any);
        }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Finite_extremes_are_not_counted(string backend)
    {
        var dev = Backends.Get(backend);
        var x = Enumerable.Range(0, 333).Select(i => EdgeFinite[i % EdgeFinite.Length]).ToArray();
        using var t = Tensor.FromArray(dev, x, 333);
        Assert.Equal(default, Elementwise.CountNonFinite(t));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Counts_a_view_only(string backend)
    {
        var dev = Backends.Get(backend);
        var x = new float[4 * 50];
        x[10] = float.NaN;            // row 0
        x[60] = float.PositiveInfinity; // row 1
        x[120] = float.NaN;           // row 2
        x[121] = float.NegativeInfinity;
        using var t = Tensor.FromArray(dev, x, 4, 50);
        Assert.Equal(new NonFiniteCount(2, 2), Elementwise.CountNonFinite(t));
        Assert.Equal(new NonFiniteCount(0, 1), Elementwise.CountNonFinite(t.Slice(1, 1)));
        Assert.Equal(new NonFiniteCount(1, 1), Elementwise.CountNonFinite(t.Slice(2, 2)));
        Assert.Equal(default, Elementwise.CountNonFinite(t.Slice(3, 1)));
    }

    [Fact]
    public void Describes_itself_and_rejects_other_dtypes()
    {
        Assert.Equal("3 NaN and 2 Inf", new NonFiniteCount(3, 2).ToString());
        Assert.Equal("3 NaN", new NonFiniteCount(3, 0).ToString());
        Assert.Equal("2 Inf", new NonFiniteCount(0, 2).ToString());
        var cpu = Backends.Get("cpu");
        using var bf = Tensor.Empty(cpu, DType.BF16, 4);
        var e = Assert.ThrowsAny<ArgumentException>(() => Elementwise.CountNonFinite(bf));
        Assert.Contains("CountNonFinite", e.Message);
    }

    [Fact]
    public void Parallel_split_counts_every_part()
    {
        // > RowParallel.MinParallelElements on a multi-thread device: the parts must all be added.
        using var dev = new CpuDevice(4);
        var x = Data(1 << 18, 7, 1001);
        using var t = Tensor.FromArray(dev, x, x.Length);
        var c = Elementwise.CountNonFinite(t);
        Assert.Equal(Host(x), (c.NaN, c.Infinite));
    }
}
