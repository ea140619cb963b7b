using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class RopeTests
{
    // Two products and a sum per element, tables given: ~1 ulp.
    private const float Rtol = 1e-5f, Atol = 1e-6f;

    private static readonly int[] Flux2Axes128 = [32, 32, 32, 32], Flux2Axes32 = [8, 8, 8, 8];

    /// <summary>Tables are cos/sin of float64 angles rounded once; positions ≤ ~20 here, so 1 ulp of the result
    /// (≤ 6e-8) is all that may differ from diffusers' float64 path.</summary>
    [Theory]
    [InlineData("d128")]
    [InlineData("d32")]
    public void Flux2_tables_match_golden(string @case)
    {
        string p = $"rope_flux2.{@case}";
        var ids = Golden.Ops.ReadInt64(p + ".ids");
        var (cos, sin) = RopeTables.Flux2(ids, @case == "d128" ? Flux2Axes128 : Flux2Axes32, 2000);
        Compare.Close(Golden.F(p + ".cos"), cos, 0f, 1e-7f, $"{p} cos");
        Compare.Close(Golden.F(p + ".sin"), sin, 0f, 1e-7f, $"{p} sin");
    }

    /// <summary>transformers builds Qwen3's inv_freq and angles in float32; RotateHalf follows the same steps,
    /// leaving only cos/sin's last-ulp differences.</summary>
    [Fact]
    public void RotateHalf_tables_match_golden()
    {
        var (cos, sin) = RopeTables.RotateHalf(21, 32, 1e6);
        Compare.Close(Golden.F("rope_qwen3.cos"), cos, 0f, 1e-7f, "rope_qwen3 cos");
        Compare.Close(Golden.F("rope_qwen3.sin"), sin, 0f, 1e-7f, "rope_qwen3 sin");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void ApplyInterleaved_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var c in new[] { "d128", "d32" })
        {
            string p = $"rope_flux2.{c}";
            var dims = Golden.Dims(p + ".x"); // [1, S, H, D]
            int s = dims[1], h = dims[2], d = dims[3];
            using var x = Golden.Load(dev, p + ".x");
            using var xs = x.Reshape(s, h, d);
            using var cos = Golden.Load(dev, p + ".cos");
            using var sin = Golden.Load(dev, p + ".sin");
            using var y = new Guarded(dev, DType.F32, s, h, d);
            Rope.ApplyInterleaved(xs, cos, sin, y);
            Compare.Close(Golden.F(p + ".out"), y.ToFloatArray(), Rtol, Atol, $"{p} on {backend}");
            y.AssertIntact($"{p} on {backend}");

            // In place (y = x), tables from RopeTables rather than the file.
            var (tc, ts) = RopeTables.Flux2(Golden.Ops.ReadInt64(p + ".ids"), c == "d128" ? Flux2Axes128 : Flux2Axes32, 2000);
            using var tcos = Tensor.FromArray(dev, tc, s, d);
            using var tsin = Tensor.FromArray(dev, ts, s, d);
            using var inPlace = HostData.GuardedWith(dev, Golden.F(p + ".x"), s, h, d);
            Rope.ApplyInterleaved(inPlace, tcos, tsin, inPlace);
            Compare.Close(Golden.F(p + ".out"), inPlace.ToFloatArray(), Rtol, Atol, $"{p} in place, own tables, on {backend}");
            inPlace.AssertIntact($"{p} in place on {backend}");
        }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void ApplyRotateHalf_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var cos = Golden.Load(dev, "rope_qwen3.cos");
        using var sin = Golden.Load(dev, "rope_qwen3.sin");
        foreach (var role in new[] { "q", "k" })
        {
            var dims = Golden.Dims($"rope_qwen3.{role}"); // [1, H, S, D]
            int h = dims[1], s = dims[2], d = dims[3];
            var x = HostData.HeadsFirstToSequenceFirst(Golden.F($"rope_qwen3.{role}"), h, s, d);
            var expected = HostData.HeadsFirstToSequenceFirst(Golden.F($"rope_qwen3.{role}_out"), h, s, d);
            using var tx = Tensor.FromArray(dev, x, s, h, d);
            using var y = new Guarded(dev, DType.F32, s, h, d);
            Rope.ApplyRotateHalf(tx, cos, sin, y);
            Compare.Close(expected, y.ToFloatArray(), Rtol, Atol, $"rope_qwen3.{role} on {backend}");
            y.AssertIntact($"rope_qwen3.{role} on {backend}");

            using var inPlace = HostData.GuardedWith(dev, x, s, h, d);
            Rope.ApplyRotateHalf(inPlace, cos, sin, inPlace);
            Compare.Close(expected, inPlace.ToFloatArray(), Rtol, Atol, $"rope_qwen3.{role} in place on {backend}");
        }
    }

    /// <summary>Head dims that are not multiples of 16 (36: 2 vectors + tail for interleaved; 40: half = 20, one
    /// vector + tail for rotate-half) against a float64 host reference, in place.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Rope_odd_head_dims_match_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int s = 5, h = 3;
        foreach (var (d, interleaved) in new[] { (36, true), (40, false), (6, true), (6, false) })
        {
            var xs = HostData.Random(s * h * d, 50 + d);
            var cos = HostData.Random(s * d, 60 + d);
            var sin = HostData.Random(s * d, 70 + d);
            var expected = new float[xs.Length];
            for (int r = 0; r < s * h; r++)
            {
                int t = (r / h) * d, o = r * d;
                for (int j = 0; j < d; j++)
                {
                    int partner = interleaved ? (j ^ 1) : (j < d / 2 ? j + d / 2 : j - d / 2);
                    double sign = interleaved ? (j % 2 == 0 ? -1 : 1) : (j < d / 2 ? -1 : 1);
                    expected[o + j] = (float)((double)xs[o + j] * cos[t + j] + sign * xs[o + partner] * sin[t + j]);
                }
            }
            using var tc = Tensor.FromArray(dev, cos, s, d);
            using var ts = Tensor.FromArray(dev, sin, s, d);
            using var y = HostData.GuardedWith(dev, xs, s, h, d);
            if (interleaved) Rope.ApplyInterleaved(y, tc, ts, y);
            else Rope.ApplyRotateHalf(y, tc, ts, y);
            Compare.Close(expected, y.ToFloatArray(), Rtol, Atol, $"rope d={d} interleaved={interleaved} on {backend}");
            y.AssertIntact($"rope d={d} on {backend}");
        }
    }

    [Fact]
    public void Rope_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(4, 2, 8));
        using var table = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var shortTable = Tensor.Zeros(dev, DType.F32, new Shape(3, 8));
        using var odd = Tensor.Zeros(dev, DType.F32, new Shape(4, 2, 7));
        using var odtTable = Tensor.Zeros(dev, DType.F32, new Shape(4, 7));
        using var flat = Tensor.Zeros(dev, DType.F32, new Shape(8, 8));
        Assert.Contains("cos", Assert.Throws<ArgumentException>(() => Rope.ApplyInterleaved(x, shortTable, table, x)).Message);
        Assert.Contains("sin", Assert.Throws<ArgumentException>(() => Rope.ApplyRotateHalf(x, table, shortTable, x)).Message);
        Assert.Throws<ArgumentException>(() => Rope.ApplyInterleaved(odd, odtTable, odtTable, odd));
        Assert.Throws<ArgumentException>(() => Rope.ApplyRotateHalf(flat, table, table, flat));
        Assert.Throws<ArgumentException>(() => RopeTables.Flux2(new long[7], Flux2Axes32, 2000));
        Assert.Throws<ArgumentException>(() => RopeTables.RotateHalf(4, 7, 1e6));
    }
}
