using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class RowGroupsTests
{
    /// <summary>Groups of 1–4 rows (an odd D for the SIMD tails, members out of order, one row in two groups) against a float64 mean.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Mean_matches_float64_and_copies_single_rows_exactly(string backend)
    {
        var dev = Backends.Get(backend);
        const int rows = 9, d = 37;
        var x = HostData.Random(rows * d, 21);
        int[] offsets = [0, 1, 3, 7, 8, 10];
        int[] members = [4, 0, 8, 2, 3, 5, 6, 1, 7, 3];
        using var tx = Tensor.FromArray(dev, x, rows, d);
        using var groups = new RowGrouping(dev, rows, offsets, members);
        using var y = new Guarded(dev, DType.F32, groups.Groups, d);
        RowGroups.Mean(tx, groups, y);
        var got = y.ToFloatArray();
        y.AssertIntact($"RowGroups.Mean on {backend}");
        var want = new float[groups.Groups * d];
        for (int g = 0; g < groups.Groups; g++)
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                for (int m = offsets[g]; m < offsets[g + 1]; m++) s += x[members[m] * d + j];
                want[g * d + j] = (float)(s / (offsets[g + 1] - offsets[g]));
            }
        // Sums of ≤ 4 float32 values: a few ulps.
        Compare.Close(want, got, 1e-6f, 1e-6f, $"RowGroups.Mean on {backend}");
        // A group of one is a copy, bit for bit (the unmerge of token merging relies on it).
        for (int g = 0; g < groups.Groups; g++)
            if (offsets[g + 1] - offsets[g] == 1)
                for (int j = 0; j < d; j++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(x[members[offsets[g]] * d + j]), BitConverter.SingleToInt32Bits(got[g * d + j]));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Gather_large_copies_rows(string backend)
    {
        var dev = Backends.Get(backend);
        const int rows = 700, d = 200; // > 64K elements: the cpu path's parallel chunks
        var x = HostData.Random(rows * d, 22);
        var pick = Enumerable.Range(0, 900).Select(i => (i * 37 + 11) % rows).ToArray();
        using var tx = Tensor.FromArray(dev, x, rows, d);
        using var groups = RowGrouping.Gather(dev, rows, pick);
        using var y = Tensor.Empty(dev, DType.F32, pick.Length, d);
        RowGroups.Mean(tx, groups, y);
        var got = y.ToFloatArray();
        for (int i = 0; i < pick.Length; i++)
            Assert.True(x.AsSpan(pick[i] * d, d).SequenceEqual(got.AsSpan(i * d, d)), $"row {i} on {backend}");
    }

    [Fact]
    public void Bad_groupings_and_shapes_are_one_line()
    {
        var dev = Backends.Get("cpu");
        Assert.Contains("group 1 is empty", Assert.ThrowsAny<ArgumentException>(() => new RowGrouping(dev, 4, [0, 1, 1, 2], [0, 1])).Message);
        Assert.Contains("members[1] = 4 is out of range", Assert.ThrowsAny<ArgumentException>(() => new RowGrouping(dev, 4, [0, 2], [0, 4])).Message);
        Assert.Contains("offsets must be", Assert.ThrowsAny<ArgumentException>(() => new RowGrouping(dev, 4, [0, 3], [0, 1])).Message);
        using var groups = RowGrouping.Gather(dev, 4, [3, 2]);
        using var x = Tensor.Empty(dev, DType.F32, 5, 8);
        using var y = Tensor.Empty(dev, DType.F32, 2, 8);
        Assert.Contains("x", Assert.ThrowsAny<ArgumentException>(() => RowGroups.Mean(x, groups, y)).Message);
    }
}
