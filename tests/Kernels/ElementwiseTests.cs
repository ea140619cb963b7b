using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class ElementwiseTests
{
    // Add / scale / axpy are one or two float32 roundings (FMA or not): exact up to ~1 ulp.
    private const float Rtol = 1e-6f, Atol = 1e-6f;

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Add_Multiply_Axpy_Scale_match_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int r = 3, c = 37; // odd: exercises SIMD tails
        var a = HostData.Random(r * c, 10);
        var b = HostData.Random(r * c, 11);
        using var ta = Tensor.FromArray(dev, a, r, c);
        using var tb = Tensor.FromArray(dev, b, r, c);

        using (var y = new Guarded(dev, DType.F32, r, c))
        {
            Elementwise.Add(ta, tb, y);
            Compare.Close(a.Zip(b, (p, q) => p + q).ToArray(), y.ToFloatArray(), Rtol, Atol, $"add on {backend}");
            y.AssertIntact($"add on {backend}");
        }
        using (var y = new Guarded(dev, DType.F32, r, c))
        {
            Elementwise.Multiply(ta, tb, y);
            Compare.Close(a.Zip(b, (p, q) => p * q).ToArray(), y.ToFloatArray(), Rtol, Atol, $"multiply on {backend}");
            y.AssertIntact($"multiply on {backend}");
        }
        using (var y = HostData.GuardedWith(dev, b, r, c))
        {
            Elementwise.Axpy(-0.75f, ta, y);
            Compare.Close(a.Zip(b, (p, q) => q - 0.75f * p).ToArray(), y.ToFloatArray(), Rtol, Atol, $"axpy on {backend}");
            y.AssertIntact($"axpy on {backend}");
        }
        using (var y = HostData.GuardedWith(dev, a, r, c))
        {
            Elementwise.Scale(y, 3.5f, y); // in place
            Compare.Close(a.Select(p => 3.5f * p).ToArray(), y.ToFloatArray(), Rtol, Atol, $"scale in place on {backend}");
            y.AssertIntact($"scale on {backend}");
        }
        using (var y = HostData.GuardedWith(dev, a, r, c))
        {
            Elementwise.Add(y, tb, y); // y aliases a
            Compare.Close(a.Zip(b, (p, q) => p + q).ToArray(), y.ToFloatArray(), Rtol, Atol, $"add in place on {backend}");
        }
    }

    /// <summary>Large enough (300 × 300 > 64K) for the CPU's multithreaded chunks.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Axpy_large_matches_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int n = 300 * 300 + 3;
        var x = HostData.Random(n, 12);
        var y0 = HostData.Random(n, 13);
        using var tx = Tensor.FromArray(dev, x, n);
        using var y = HostData.GuardedWith(dev, y0, n);
        Elementwise.Axpy(2f, tx, y);
        Compare.Close(x.Zip(y0, (p, q) => q + 2f * p).ToArray(), y.ToFloatArray(), Rtol, Atol, $"axpy large on {backend}");
        y.AssertIntact($"axpy large on {backend}");
    }

    /// <summary>Splitting a fused [q | k | v] projection and concatenating along channels; odd widths.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void CopyColumns_WriteColumns_Transpose_match_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int r = 5, c = 23, start = 7, w = 11;
        var src = HostData.Random(r * c, 14);
        using var tsrc = Tensor.FromArray(dev, src, r, c);

        using var part = new Guarded(dev, DType.F32, r, w);
        Elementwise.CopyColumns(tsrc, start, part);
        var expectedPart = new float[r * w];
        for (int i = 0; i < r; i++) Array.Copy(src, i * c + start, expectedPart, i * w, w);
        Assert.Equal(expectedPart, part.ToFloatArray());
        part.AssertIntact($"copy columns on {backend}");

        var dst0 = HostData.Random(r * c, 15);
        using var dst = HostData.GuardedWith(dev, dst0, r, c);
        Elementwise.WriteColumns(part, dst, start + 2);
        var expectedDst = (float[])dst0.Clone();
        for (int i = 0; i < r; i++) Array.Copy(expectedPart, i * w, expectedDst, i * c + start + 2, w);
        Assert.Equal(expectedDst, dst.ToFloatArray());
        dst.AssertIntact($"write columns on {backend}");

        const int tr = 37, tc = 45; // not multiples of the 32×32 CPU tile
        var xs = HostData.Random(tr * tc, 16);
        using var tx = Tensor.FromArray(dev, xs, tr, tc);
        using var ty = new Guarded(dev, DType.F32, tc, tr);
        Elementwise.Transpose2d(tx, ty);
        var got = ty.ToFloatArray();
        for (int i = 0; i < tr; i++)
            for (int j = 0; j < tc; j++)
                Assert.True(got[j * tr + i] == xs[i * tc + j], $"transpose on {backend}: y[{j},{i}] = {got[j * tr + i]}, expected {xs[i * tc + j]}");
        ty.AssertIntact($"transpose on {backend}");
    }

    [Fact]
    public void Elementwise_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var a = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var b = Tensor.Zeros(dev, DType.F32, new Shape(4, 9));
        using var narrow = Tensor.Zeros(dev, DType.F32, new Shape(4, 3));
        using var tall = Tensor.Zeros(dev, DType.F32, new Shape(5, 3));
        Assert.Throws<ArgumentException>(() => Elementwise.Add(a, b, a));
        Assert.Throws<ArgumentException>(() => Elementwise.Axpy(1f, a, b));
        Assert.Throws<ArgumentException>(() => Elementwise.Scale(a, 1f, b));
        Assert.Contains("out of range", Assert.Throws<ArgumentException>(() => Elementwise.CopyColumns(a, 6, narrow)).Message);
        Assert.Contains("row", Assert.Throws<ArgumentException>(() => Elementwise.CopyColumns(a, 0, tall)).Message);
        Assert.Throws<ArgumentException>(() => Elementwise.WriteColumns(narrow, a, -1));
        Assert.Throws<ArgumentException>(() => Elementwise.Transpose2d(a, a));
        using var t84 = Tensor.Zeros(dev, DType.F32, new Shape(8, 4));
        Assert.Throws<ArgumentException>(() => Elementwise.Transpose2d(a, b));
        Assert.Throws<ArgumentException>(() => Elementwise.Transpose2d(a, a.Reshape(8, 4))); // in place
        Elementwise.Transpose2d(a, t84);
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void GatedResidual_matches_host(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var (s, d) in new[] { (5, 37), (40, 1700) }) // odd; and > 64K elements for the threaded CPU path
        {
            var x0 = HostData.Random(s * d, 20);
            var ys = HostData.Random(s * d, 21);
            var mod = HostData.Random(3 * d, 22);
            using var modT = Tensor.FromArray(dev, mod, 3, d);
            using var gate = modT.Slice(2, 1); // a [1, D] view at offset 2·D, as the blocks slice it
            using var ty = Tensor.FromArray(dev, ys, s, d);
            using var x = HostData.GuardedWith(dev, x0, s, d);
            GatedResidual.Forward(x, gate, ty);
            var expected = new float[x0.Length];
            for (int i = 0; i < x0.Length; i++) expected[i] = x0[i] + mod[2 * d + i % d] * ys[i];
            Compare.Close(expected, x.ToFloatArray(), Rtol, Atol, $"gated residual {s}x{d} on {backend}");
            x.AssertIntact($"gated residual on {backend}");
        }
    }

    [Fact]
    public void GatedResidual_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var gate = Tensor.Zeros(dev, DType.F32, new Shape(4));
        using var gate8 = Tensor.Zeros(dev, DType.F32, new Shape(8));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(3, 8));
        Assert.Contains("gate", Assert.Throws<ArgumentException>(() => GatedResidual.Forward(x, gate, x)).Message);
        Assert.Throws<ArgumentException>(() => GatedResidual.Forward(x, gate8, y));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Embedding_lookup_f32_and_bf16(string backend)
    {
        var dev = Backends.Get(backend);
        const int v = 50, d = 37;
        var table = HostData.Random(v * d, 30);
        var bits = Array.ConvertAll(table, Bf16.FromFloat);
        int[] ids = [3, 0, 49, 3, 17];
        using var tIds = Tensor.FromSpan<int>(dev, ids, new Shape(ids.Length));
        using var tF32 = Tensor.FromArray(dev, table, v, d);
        using var tBf16 = Tensor.FromSpan<ushort>(dev, bits, new Shape(v, d), DType.BF16);
        foreach (var (t, source) in new[] { (tF32, table), (tBf16, Array.ConvertAll(bits, Bf16.ToFloat)) })
        {
            using var y = new Guarded(dev, DType.F32, ids.Length, d);
            Embedding.Lookup(t, tIds, y);
            var expected = new float[ids.Length * d];
            for (int s = 0; s < ids.Length; s++) Array.Copy(source, ids[s] * d, expected, s * d, d);
            Assert.Equal(expected, y.ToFloatArray());
            y.AssertIntact($"embedding {t.DType} on {backend}");
        }
    }

    [Fact]
    public void Embedding_rejects_out_of_range_ids_and_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var table = Tensor.Zeros(dev, DType.F32, new Shape(10, 4));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(2, 4));
        using var bad = Tensor.FromSpan<int>(dev, [1, 10], new Shape(2));
        using var negative = Tensor.FromSpan<int>(dev, [-1, 0], new Shape(2));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Embedding.Lookup(table, bad, y));
        Assert.Contains("ids[1] = 10", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Embedding.Lookup(table, negative, y));
        using var ok = Tensor.FromSpan<int>(dev, [1, 2], new Shape(2));
        using var yBad = Tensor.Zeros(dev, DType.F32, new Shape(2, 5));
        Assert.Throws<ArgumentException>(() => Embedding.Lookup(table, ok, yBad));
    }

    /// <summary>
    /// Arguments reach 1000 rad, where one float32 ulp of a frequency (~3e-8 at 0.4) moves the argument by 3e-5.
    /// We form freq = exp((float)(−ln 10000)·i / half) and t·freq in float32 as PyTorch does and take cos/sin of
    /// that float32 argument; what remains is PyTorch's vectorised expf, which is not correctly rounded: for
    /// 10 of the 128 frequencies it is one ulp away from the correctly rounded value we use (measured: moving
    /// exactly those by ±1 ulp brings every element within 6e-8). Hence atol 1e-4: one ulp of freq times
    /// t ≤ 1000 (≤ 6e-5) plus the argument's own rounding. Measured max |diff|: 3.0e-5 (cpu and ilgpu-cpu).
    /// </summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void TimestepEmbedding_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var t = Golden.Load(dev, "timestep_embedding.t");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("timestep_embedding.out"));
        TimestepEmbedding.Forward(t, y);
        Compare.Close(Golden.F("timestep_embedding.out"), y.ToFloatArray(), 0f, TimestepAtol, $"timestep embedding on {backend}");
        y.AssertIntact($"timestep embedding on {backend}");
    }

    private const float TimestepAtol = 1e-4f;

    [Fact]
    public void TimestepEmbedding_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var t = Tensor.Zeros(dev, DType.F32, new Shape(3));
        using var odd = Tensor.Zeros(dev, DType.F32, new Shape(3, 5));
        using var rows = Tensor.Zeros(dev, DType.F32, new Shape(2, 8));
        Assert.Throws<ArgumentException>(() => TimestepEmbedding.Forward(t, odd));
        Assert.Throws<ArgumentException>(() => TimestepEmbedding.Forward(t, rows));
    }
}
