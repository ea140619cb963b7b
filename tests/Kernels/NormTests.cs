using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class NormTests
{
    // One reduction over ≤ 2560 floats plus a few roundings: PyTorch and we sum in different orders, so the
    // inverse RMS / std differ by a few float32 ulps (~1e-6 relative); 1e-5 leaves 10x margin.
    private const float Rtol = 1e-5f, Atol = 1e-5f;
    private const float Eps = 1e-6f;

    public static TheoryData<string, string> RmsCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var b in Backends.Ids)
            foreach (var c in new[] { "77x128", "2x5x3x32", "1x4x2560" })
                data.Add(b, c);
        return data;
    }

    [Theory, MemberData(nameof(RmsCases))]
    public void RmsNorm_matches_golden(string backend, string @case)
    {
        var dev = Backends.Get(backend);
        string p = $"rmsnorm.{@case}";
        using var x = Golden.Load(dev, p + ".x");
        using var w = Golden.Load(dev, p + ".weight");
        using var y = new Guarded(dev, DType.F32, Golden.Dims(p + ".x"));
        RmsNorm.Forward(x, w, y, Eps);
        var got = y.ToFloatArray();
        Compare.Close(Golden.F(p + ".out_torch"), got, Rtol, Atol, $"{p} vs torch on {backend}");
        Compare.Close(Golden.F(p + ".out_qwen3"), got, Rtol, Atol, $"{p} vs qwen3 on {backend}");
        y.AssertIntact($"{p} on {backend}");
    }

    /// <summary>Odd row length (37: not a multiple of 16 lanes or of any group size), per-head layout, BF16 weight,
    /// in place, against a float64 host reference.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RmsNorm_odd_sizes_bf16_weight_in_place(string backend)
    {
        var dev = Backends.Get(backend);
        const int s = 7, h = 3, d = 37;
        var xs = HostData.Random(s * h * d, 1, 2f, 0.3f);
        var wBits = Array.ConvertAll(HostData.Random(d, 2, 1f, 1f), Bf16.FromFloat);
        var wf = Array.ConvertAll(wBits, Bf16.ToFloat);
        var expected = new float[xs.Length];
        for (int r = 0; r < s * h; r++)
        {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double)xs[r * d + j] * xs[r * d + j];
            double inv = 1 / Math.Sqrt(ss / d + Eps);
            for (int j = 0; j < d; j++) expected[r * d + j] = (float)(xs[r * d + j] * inv * wf[j]);
        }
        using var w = Tensor.FromSpan<ushort>(dev, wBits, new Shape(d), DType.BF16, "w");
        using var y = HostData.GuardedWith(dev, xs, s, h, d);
        RmsNorm.Forward(y, w, y, Eps);
        Compare.Close(expected, y.ToFloatArray(), Rtol, Atol, $"rmsnorm bf16 in place on {backend}");
        y.AssertIntact($"rmsnorm bf16 on {backend}");
    }

    /// <summary>Rows long enough for a full 256-thread group and the CPU's multithreaded path (1500 × 70 > 64K).</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RmsNorm_many_rows_matches_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int rows = 70, d = 1500;
        var xs = HostData.Random(rows * d, 3);
        var ws = HostData.Random(d, 4);
        var expected = new float[xs.Length];
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double)xs[r * d + j] * xs[r * d + j];
            double inv = 1 / Math.Sqrt(ss / d + Eps);
            for (int j = 0; j < d; j++) expected[r * d + j] = (float)(xs[r * d + j] * inv * ws[j]);
        }
        using var x = Tensor.FromArray(dev, xs, rows, d);
        using var w = Tensor.FromArray(dev, ws, d);
        using var y = new Guarded(dev, DType.F32, rows, d);
        RmsNorm.Forward(x, w, y, Eps);
        Compare.Close(expected, y.ToFloatArray(), Rtol, Atol, $"rmsnorm 70x1500 on {backend}");
        y.AssertIntact($"rmsnorm 70x1500 on {backend}");
    }

    [Fact]
    public void RmsNorm_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var w = Tensor.Zeros(dev, DType.F32, new Shape(7));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var y2 = Tensor.Zeros(dev, DType.F32, new Shape(4, 9));
        using var w8 = Tensor.Zeros(dev, DType.F32, new Shape(8));
        Assert.Contains("weight", Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, w, y, Eps)).Message);
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, w8, y2, Eps));
        using var xi = Tensor.Zeros(dev, DType.I32, new Shape(4, 8));
        Assert.Throws<ArgumentException>(() => RmsNorm.Forward(xi, w8, y, Eps));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LayerNormModulate_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var c in new[] { "1x64x96", "1x3x3072" })
        {
            string p = $"layernorm_modulate.{c}";
            var dims = Golden.Dims(p + ".x");
            int s = dims[1], d = dims[2];
            using var x = Golden.Load(dev, p + ".x");
            using var shift = Golden.Load(dev, p + ".shift");
            using var scale = Golden.Load(dev, p + ".scale");
            using var xs = x.Reshape(s, d);
            using var y = new Guarded(dev, DType.F32, s, d);
            LayerNormModulate.Forward(xs, shift, scale, y, Eps);
            Compare.Close(Golden.F(p + ".out"), y.ToFloatArray(), Rtol, Atol, $"{p} on {backend}");
            y.AssertIntact($"{p} on {backend}");

            using var ln = new Guarded(dev, DType.F32, s, d);
            LayerNormModulate.LayerNorm(xs, ln, Eps);
            Compare.Close(Golden.F(p + ".ln"), ln.ToFloatArray(), Rtol, Atol, $"{p} plain LN on {backend}");
            ln.AssertIntact($"{p} plain LN on {backend}");
        }
    }

    /// <summary>shift/scale as views into one modulation vector [3·D] (as the blocks slice it), y aliasing x,
    /// odd D, large mean (|mean| ≫ std, where E[x²] − mean² would cancel).</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LayerNormModulate_views_in_place_odd_size(string backend)
    {
        var dev = Backends.Get(backend);
        const int s = 5, d = 45;
        var xs = HostData.Random(s * d, 5, 1f, 300f);
        var mod = HostData.Random(3 * d, 6);
        var expected = new float[xs.Length];
        for (int r = 0; r < s; r++)
        {
            double mean = 0, var = 0;
            for (int j = 0; j < d; j++) mean += xs[r * d + j];
            mean /= d;
            for (int j = 0; j < d; j++) var += (xs[r * d + j] - mean) * (xs[r * d + j] - mean);
            double rstd = 1 / Math.Sqrt(var / d + Eps);
            for (int j = 0; j < d; j++)
                expected[r * d + j] = (float)((1 + (double)mod[2 * d + j]) * (xs[r * d + j] - mean) * rstd + mod[d + j]);
        }
        using var modT = Tensor.FromArray(dev, mod, 3 * d);
        using var shift = modT.Slice(d, d);
        using var scale = modT.Slice(2 * d, d);
        using var y = HostData.GuardedWith(dev, xs, s, d);
        LayerNormModulate.Forward(y, shift, scale, y, Eps);
        // Inputs near 300 carry float32 rounding of 300·6e-8 = 2e-5 absolute into x − mean (std ≈ 0.6): 1e-4 relative.
        Compare.Close(expected, y.ToFloatArray(), 1e-4f, 1e-4f, $"layernorm_modulate views in place on {backend}");
        y.AssertIntact($"layernorm_modulate views on {backend}");
    }

    [Fact]
    public void LayerNormModulate_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var ok = Tensor.Zeros(dev, DType.F32, new Shape(8));
        using var bad = Tensor.Zeros(dev, DType.F32, new Shape(9));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var yBad = Tensor.Zeros(dev, DType.F32, new Shape(8, 4));
        Assert.Contains("shift", Assert.Throws<ArgumentException>(() => LayerNormModulate.Forward(x, bad, ok, y, Eps)).Message);
        Assert.Contains("scale", Assert.Throws<ArgumentException>(() => LayerNormModulate.Forward(x, ok, bad, y, Eps)).Message);
        Assert.Throws<ArgumentException>(() => LayerNormModulate.Forward(x, ok, ok, yBad, Eps));
        Assert.Throws<ArgumentException>(() => LayerNormModulate.LayerNorm(x, yBad, Eps));
    }
}
