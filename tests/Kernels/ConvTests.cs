using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class ConvTests
{
    // Conv outputs are dot products of K = C·kh·kw = 144 terms (16 channels × 3×3) of magnitude ~1;
    // PyTorch (oneDNN) and our kernels sum in different orders, so fp32 rounding differs by ~sqrt(K)·2^-24·Σ|terms|
    // ≈ 1e-6 typical; 2e-5 absolute (+1e-5 relative) leaves headroom without hiding an indexing bug (those are O(1)).
    private const float ConvRtol = 1e-5f, ConvAtol = 2e-5f;

    // ------------------------------------------------------------------ Conv2d goldens

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Conv2d_3x3_matches_golden(string backend) =>
        RunConvGolden(backend, "conv2d_3x3", 1, Conv2dPadding.Same(1));

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Conv2d_3x3_stride2_matches_golden(string backend) =>
        RunConvGolden(backend, "conv2d_3x3_s2", 2, new Conv2dPadding(0, 1, 0, 1));

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Conv2d_1x1_matches_golden(string backend) =>
        RunConvGolden(backend, "conv2d_1x1", 1, Conv2dPadding.None);

    private static void RunConvGolden(string backend, string name, int stride, Conv2dPadding pad)
    {
        var dev = Backends.Get(backend);
        // Every conv golden uses conv2d_3x3.x as its input (manifest notes).
        using var x = Golden.Load(dev, "conv2d_3x3.x");
        using var w = Golden.Load(dev, $"{name}.weight");
        using var b = Golden.Load(dev, $"{name}.bias");
        using var y = new Guarded(dev, DType.F32, Golden.Dims($"{name}.out"));
        Conv2d.Forward(x, w, b, y, stride, pad);
        Compare.Close(Golden.F($"{name}.out"), y.ToFloatArray(), ConvRtol, ConvAtol, $"{name} on {backend}");
        y.AssertIntact($"{name} on {backend}");
    }

    // ------------------------------------------------------------------ Conv2d against a float64 reference

    public static TheoryData<string, int, int, int, int, int, int, int, int, int, int, int> RandomCases()
    {
        var data = new TheoryData<string, int, int, int, int, int, int, int, int, int, int, int>();
        foreach (var backend in Backends.Ids)
        {
            // backend, C, O, H, W, kh, kw, stride, top, bottom, left, right
            data.Add(backend, 5, 7, 9, 13, 3, 3, 1, 1, 1, 1, 1);   // odd sizes, pad 1
            data.Add(backend, 5, 7, 9, 13, 3, 3, 2, 0, 1, 0, 1);   // the VAE downsampler's padding
            data.Add(backend, 5, 7, 9, 13, 1, 1, 1, 0, 0, 0, 0);   // 1×1
            data.Add(backend, 3, 9, 6, 40, 3, 3, 1, 1, 1, 1, 1);   // several vectors per row (+ a tail), O % 4 = 1
            data.Add(backend, 4, 5, 11, 10, 5, 3, 3, 2, 0, 1, 2);  // general kh ≠ kw, stride 3, asymmetric padding
        }
        return data;
    }

    [Theory, MemberData(nameof(RandomCases))]
    public void Conv2d_random_matches_float64_reference(string backend, int c, int o, int h, int w, int kh, int kw,
        int stride, int top, int bottom, int left, int right)
    {
        var dev = Backends.Get(backend);
        var pad = new Conv2dPadding(top, bottom, left, right);
        var rng = new Random(1234 + c * 31 + kh * 7 + stride);
        float[] xs = RandomValues(rng, c * h * w), ws = RandomValues(rng, o * c * kh * kw), bs = RandomValues(rng, o);
        int ho = (h + top + bottom - kh) / stride + 1, wo = (w + left + right - kw) / stride + 1;
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var wt = Tensor.FromArray(dev, ws, o, c, kh, kw);
        using var b = Tensor.FromArray(dev, bs, o);
        using var y = new Guarded(dev, DType.F32, o, ho, wo);
        Conv2d.Forward(x, wt, b, y, stride, pad);
        var (expected, bound) = ReferenceConv(xs, ws, bs, c, h, w, o, kh, kw, stride, pad);
        AssertWithinBound(expected, bound, y.ToFloatArray(), c * kh * kw, $"conv {c}->{o} {h}x{w} k{kh}x{kw} s{stride} {pad} on {backend}");
        y.AssertIntact($"conv random on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Conv2d_bf16_and_f16_weights_match_reference(string backend)
    {
        var dev = Backends.Get(backend);
        const int c = 5, o = 7, h = 9, w = 13;
        var rng = new Random(77);
        float[] xs = RandomValues(rng, c * h * w), ws = RandomValues(rng, o * c * 9);
        using var x = Tensor.FromArray(dev, xs, 1, c, h, w);   // NCHW with batch 1 is accepted too
        foreach (var dtype in new[] { DType.BF16, DType.F16 })
        {
            // The reference uses the weights as rounded to 16 bits, so only the fp32 accumulation error remains.
            float[] rounded;
            Tensor wt;
            if (dtype == DType.BF16)
            {
                var bits = Array.ConvertAll(ws, Bf16.FromFloat);
                rounded = Array.ConvertAll(bits, Bf16.ToFloat);
                wt = Tensor.FromSpan<ushort>(dev, bits, new Shape(o, c, 3, 3), DType.BF16);
            }
            else
            {
                var halves = Array.ConvertAll(ws, v => (Half)v);
                rounded = Array.ConvertAll(halves, v => (float)v);
                wt = Tensor.FromSpan<Half>(dev, halves, new Shape(o, c, 3, 3));
            }
            using (wt)
            {
                using var y = new Guarded(dev, DType.F32, 1, o, 4, 6);
                Conv2d.Forward(x, wt, null, y, 2, new Conv2dPadding(0, 1, 0, 1));
                var (expected, bound) = ReferenceConv(xs, rounded, null, c, h, w, o, 3, 3, 2, new Conv2dPadding(0, 1, 0, 1));
                AssertWithinBound(expected, bound, y.ToFloatArray(), c * 9, $"conv {dtype} weights on {backend}");
                y.AssertIntact($"conv {dtype} on {backend}");
            }
        }
    }

    [Fact]
    public void Conv2d_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(4, 8, 8));
        using var w = Tensor.Zeros(dev, DType.F32, new Shape(6, 4, 3, 3));
        using var wrongC = Tensor.Zeros(dev, DType.F32, new Shape(6, 5, 3, 3));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(6, 8, 8));
        using var yWrong = Tensor.Zeros(dev, DType.F32, new Shape(6, 7, 8));
        using var x2 = Tensor.Zeros(dev, DType.F32, new Shape(2, 4, 8, 8));
        using var bWrong = Tensor.Zeros(dev, DType.F32, new Shape(5));
        var pad = Conv2dPadding.Same(1);
        Assert.Contains("weight", Assert.Throws<ArgumentException>(() => Conv2d.Forward(x, wrongC, null, y, 1, pad)).Message);
        Assert.Contains("expected [6, 8, 8]", Assert.Throws<ArgumentException>(() => Conv2d.Forward(x, w, null, yWrong, 1, pad)).Message);
        Assert.Contains("batch 1", Assert.Throws<ArgumentException>(() => Conv2d.Forward(x2, w, null, y, 1, pad)).Message);
        Assert.Contains("bias", Assert.Throws<ArgumentException>(() => Conv2d.Forward(x, w, bWrong, y, 1, pad)).Message);
        Assert.Throws<ArgumentException>(() => Conv2d.Forward(x, w, null, y, 0, pad));
        Assert.Throws<ArgumentException>(() => Conv2d.Forward(x, w, null, y, 1, new Conv2dPadding(-1, 1, 1, 1)));
        using var wI8 = Tensor.Zeros(dev, DType.I8, new Shape(6, 4, 3, 3));
        Assert.Contains("dtype", Assert.Throws<ArgumentException>(() => Conv2d.Forward(x, wI8, null, y, 1, pad)).Message);
    }

    internal static float[] RandomValues(Random rng, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>Float64 direct convolution, and per output Σ|terms| (for the rounding-error bound).</summary>
    private static (double[] Out, double[] AbsSum) ReferenceConv(float[] x, float[] w, float[]? b, int c, int h, int wd, int o,
        int kh, int kw, int s, Conv2dPadding pad)
    {
        int ho = (h + pad.Top + pad.Bottom - kh) / s + 1, wo = (wd + pad.Left + pad.Right - kw) / s + 1;
        var y = new double[o * ho * wo];
        var abs = new double[y.Length];
        for (int oc = 0; oc < o; oc++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++)
                {
                    double acc = b?[oc] ?? 0, a = Math.Abs(b?[oc] ?? 0);
                    for (int ic = 0; ic < c; ic++)
                        for (int ky = 0; ky < kh; ky++)
                            for (int kx = 0; kx < kw; kx++)
                            {
                                int iy = oy * s + ky - pad.Top, ix = ox * s + kx - pad.Left;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                double t = (double)x[(ic * h + iy) * wd + ix] * w[((oc * c + ic) * kh + ky) * kw + kx];
                                acc += t;
                                a += Math.Abs(t);
                            }
                    int i = (oc * ho + oy) * wo + ox;
                    y[i] = acc;
                    abs[i] = a;
                }
        return (y, abs);
    }

    /// <summary>
    /// |actual − expected| ≤ (K+1)·2^-24·Σ|terms| + 1e-30: the standard worst-case bound of recursive fp32 summation
    /// of K products (γ_K), K = C·kh·kw. Any summation order satisfies it; a wrong index or tap gives O(1) errors.
    /// </summary>
    private static void AssertWithinBound(double[] expected, double[] absSum, float[] actual, int k, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        const double u = 1.0 / (1 << 24);
        int terms = k + 1; // + the bias
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = terms * u * absSum[i] + 1e-30;
            double d = Math.Abs(actual[i] - expected[i]);
            Assert.True(d <= tol && double.IsFinite(actual[i]),
                $"{what}: element {i} is {actual[i]}, expected {expected[i]:g9} (|diff| {d:g3} > bound {tol:g3})");
        }
    }
}
