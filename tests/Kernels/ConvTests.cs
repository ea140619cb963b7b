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

    /// <summary>
    /// The CPU path switches to row-major tasks with weights packed once per call when its padded input copy
    /// passes 8 MiB; the small cases above never get there. CPU only (the float64 reference takes ~0.3 s).
    /// </summary>
    /// <remarks>The row-major path pads one slab of input rows per task into that worker's scratch (4 MiB at most): with
    /// 2 threads it runs 8 chunks of 32 rows; with 1 thread 3 chunks (slab rows from the budget), the scratch reused by
    /// chunks of different heights; O = 3 (a single channel block) takes it too.</remarks>
    [Theory]
    [InlineData(1, 256, 1, 1, 1, 1, 6, 0)]
    [InlineData(2, 512, 0, 1, 0, 1, 6, 0)]
    [InlineData(1, 256, 1, 1, 1, 1, 3, 0)]
    [InlineData(1, 256, 1, 1, 1, 1, 6, 1)]
    [InlineData(2, 512, 0, 1, 0, 1, 5, 1)]
    public void Conv2d_cpu_large_input_row_major_path_matches_reference(int stride, int size, int top, int bottom, int left, int right, int o, int threads)
    {
        Backends.Get("cpu");
        using var dev = new CpuDevice(threads);
        const int c = 32; // o % 4 = 2: a partial channel block
        int h = size, w = size - 3; // width not a multiple of 16
        var pad = new Conv2dPadding(top, bottom, left, right);
        var rng = new Random(stride);
        float[] xs = RandomValues(rng, c * h * w), ws = RandomValues(rng, o * c * 9), bs = RandomValues(rng, o);
        int ho = (h + top + bottom - 3) / stride + 1, wo = (w + left + right - 3) / stride + 1;
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var wt = Tensor.FromArray(dev, ws, o, c, 3, 3);
        using var b = Tensor.FromArray(dev, bs, o);
        using var y = new Guarded(dev, DType.F32, o, ho, wo);
        Conv2d.Forward(x, wt, b, y, stride, pad);
        var (expected, bound) = ReferenceConv(xs, ws, bs, c, h, w, o, 3, 3, stride, pad);
        AssertWithinBound(expected, bound, y.ToFloatArray(), c * 9, $"large conv s{stride} on cpu");
        y.AssertIntact("large conv on cpu");
    }

    public static TheoryData<string, int, int, int, int, bool, string> OneByOneCases()
    {
        var data = new TheoryData<string, int, int, int, int, bool, string>();
        foreach (var backend in Backends.Ids)
        {
            // backend, C, O, H, W, bias, weight dtype
            data.Add(backend, 37, 29, 7, 23, true, "F32");    // odd sizes: O not a multiple of the GEMM's 14 rows, H·W of its 32 columns
            data.Add(backend, 400, 19, 5, 9, true, "F32");    // C > 384: the CPU GEMM's second K block accumulates onto the bias
            data.Add(backend, 21, 17, 6, 11, false, "BF16");  // 16-bit weights widened once, no bias
            data.Add(backend, 13, 5, 9, 3, true, "F16");
            data.Add(backend, 3, 2, 1, 1, true, "F32");       // a single pixel
        }
        return data;
    }

    /// <summary>1×1 stride-1 unpadded convs: the CPU runs them as the packed GEMM Y[O, HW] = W[O, C] · X[C, HW] with the
    /// bias per row; checked against the float64 reference on every backend (input given as [1, C, H, W]).</summary>
    [Theory, MemberData(nameof(OneByOneCases))]
    public void Conv2d_1x1_gemm_path_matches_float64_reference(string backend, int c, int o, int h, int w, bool withBias, string dtype)
    {
        var dev = Backends.Get(backend);
        var rng = new Random(c * 1000 + o);
        float[] xs = RandomValues(rng, c * h * w), ws = RandomValues(rng, o * c), bs = RandomValues(rng, o);
        Tensor wt;
        float[] rounded = ws;
        if (dtype == "BF16")
        {
            var bits = Array.ConvertAll(ws, Bf16.FromFloat);
            rounded = Array.ConvertAll(bits, Bf16.ToFloat);
            wt = Tensor.FromSpan<ushort>(dev, bits, new Shape(o, c, 1, 1), DType.BF16);
        }
        else if (dtype == "F16")
        {
            var halves = Array.ConvertAll(ws, v => (Half)v);
            rounded = Array.ConvertAll(halves, v => (float)v);
            wt = Tensor.FromSpan<Half>(dev, halves, new Shape(o, c, 1, 1));
        }
        else wt = Tensor.FromArray(dev, ws, o, c, 1, 1);
        using (wt)
        {
            using var x = Tensor.FromArray(dev, xs, 1, c, h, w);
            using var b = Tensor.FromArray(dev, bs, o);
            using var y = new Guarded(dev, DType.F32, 1, o, h, w);
            Conv2d.Forward(x, wt, withBias ? b : null, y, 1, Conv2dPadding.None);
            var (expected, bound) = ReferenceConv(xs, rounded, withBias ? bs : null, c, h, w, o, 1, 1, 1, Conv2dPadding.None);
            AssertWithinBound(expected, bound, y.ToFloatArray(), c, $"conv 1x1 {c}->{o} {h}x{w} {dtype} bias={withBias} on {backend}");
            y.AssertIntact($"conv 1x1 on {backend}");
        }
    }

    /// <summary>The CPU's 1×1 GEMM path against its general direct path (the <c>Direct1x1</c> experiment switch, set by
    /// reflection as the bench does) at a VAE-like shape with a ragged H·W: same sums, different order.</summary>
    [Fact]
    public void Conv2d_cpu_1x1_gemm_path_matches_direct_path()
    {
        var dev = Backends.Get("cpu");
        const int c = 70, o = 45, h = 33, w = 35;
        var rng = new Random(5);
        float[] xs = RandomValues(rng, c * h * w), ws = RandomValues(rng, o * c), bs = RandomValues(rng, o);
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var wt = Tensor.FromArray(dev, ws, o, c, 1, 1);
        using var b = Tensor.FromArray(dev, bs, o);
        using var yGemm = Tensor.Empty(dev, DType.F32, o, h, w);
        using var yDirect = Tensor.Empty(dev, DType.F32, o, h, w);
        var field = typeof(Conv2d).GetField("Direct1x1", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic)!;
        Conv2d.Forward(x, wt, b, yGemm, 1, Conv2dPadding.None);
        try
        {
            field.SetValue(null, true);
            Conv2d.Forward(x, wt, b, yDirect, 1, Conv2dPadding.None);
        }
        finally
        {
            field.SetValue(null, false);
        }
        // Both sum 70 products of magnitude ≤ 1 in fp32: orders differ, so allow ~sqrt(70)·2^-24·70 ≈ 4e-5.
        Compare.Close(yDirect.ToFloatArray(), yGemm.ToFloatArray(), 1e-5f, 5e-5f, "1x1 gemm vs direct on cpu");
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

    // ------------------------------------------------------------------ GroupNorm

    // Normalised outputs are O(1..4); mean and variance are reductions over up to 396 values whose fp32 summation
    // order differs from PyTorch's, which moves results by a few 1e-7. 1e-5 abs + 1e-5 rel is ~20× that.
    private const float NormRtol = 1e-5f, NormAtol = 1e-5f;

    public static TheoryData<string, string, int, bool> GroupNormCases()
    {
        var data = new TheoryData<string, string, int, bool>();
        foreach (var backend in Backends.Ids)
            foreach (var (name, groups) in new[] { ("c32g8", 8), ("c64g32", 32), ("c16g1", 1) })
                foreach (var silu in new[] { false, true })
                    data.Add(backend, name, groups, silu);
        return data;
    }

    [Theory, MemberData(nameof(GroupNormCases))]
    public void GroupNorm_matches_golden(string backend, string name, int groups, bool silu)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, $"group_norm.{name}.x");
        using var w = Golden.Load(dev, $"group_norm.{name}.weight");
        using var b = Golden.Load(dev, $"group_norm.{name}.bias");
        using var y = new Guarded(dev, DType.F32, Golden.Dims($"group_norm.{name}.out"));
        GroupNorm.Forward(x, w, b, y, groups, 1e-6f, silu);
        var expected = Golden.F($"group_norm.{name}.out");
        if (silu) // the golden has no SiLU: apply it on the host, in double
            expected = Array.ConvertAll(expected, v => (float)(v / (1 + Math.Exp(-(double)v))));
        Compare.Close(expected, y.ToFloatArray(), NormRtol, NormAtol, $"group_norm {name} silu={silu} on {backend}");
        y.AssertIntact($"group_norm {name} on {backend}");
    }

    public static TheoryData<string, int, int, int, int, float, bool> GroupNormRandomCases()
    {
        var data = new TheoryData<string, int, int, int, int, float, bool>();
        foreach (var backend in Backends.Ids)
        {
            // backend, C, groups, H, W, offset added to x, in place
            data.Add(backend, 6, 3, 7, 5, 0f, false);       // odd sizes
            data.Add(backend, 4, 2, 45, 50, 100f, false);   // planes longer than the CPU chunks; a large mean (two-pass variance)
            data.Add(backend, 6, 2, 3, 11, -3f, true);      // y aliases x
        }
        return data;
    }

    [Theory, MemberData(nameof(GroupNormRandomCases))]
    public void GroupNorm_random_matches_float64_reference(string backend, int c, int groups, int h, int w, float offset, bool inPlace)
    {
        var dev = Backends.Get(backend);
        var rng = new Random(c * 100 + h);
        var xs = Array.ConvertAll(RandomValues(rng, c * h * w), v => v + offset);
        var ws = RandomValues(rng, c);
        var bs = RandomValues(rng, c);
        // float64 reference: two-pass mean and biased variance per group, then the affine and SiLU.
        int cpg = c / groups, n = cpg * h * w;
        var expected = new float[xs.Length];
        for (int g = 0; g < groups; g++)
        {
            double mean = 0, m2 = 0;
            for (int i = 0; i < n; i++) mean += xs[g * n + i];
            mean /= n;
            for (int i = 0; i < n; i++) m2 += (xs[g * n + i] - mean) * (xs[g * n + i] - mean);
            double rstd = 1 / Math.Sqrt(m2 / n + 1e-6);
            for (int i = 0; i < n; i++)
            {
                int ch = g * cpg + i / (h * w);
                double v = (xs[g * n + i] - mean) * rstd * ws[ch] + bs[ch];
                expected[g * n + i] = (float)(v / (1 + Math.Exp(-v)));
            }
        }
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var wt = Tensor.FromArray(dev, ws, c);
        using var bt = Tensor.FromArray(dev, bs, c);
        using var guarded = new Guarded(dev, DType.F32, c, h, w);
        var y = inPlace ? x : guarded.Tensor;
        GroupNorm.Forward(x, wt, bt, y, groups, 1e-6f, silu: true);
        // With |mean| = 100 and unit spread, x itself carries fp32 rounding of 100·2^-24 ≈ 6e-6 relative to the
        // spread, and the GPU path sums in fp32: allow 5e-5 there (an indexing or formula bug is O(1)).
        float atol = offset == 0f ? NormAtol : 5e-5f;
        Compare.Close(expected, y.ToFloatArray(), NormRtol, atol, $"group_norm random c{c} g{groups} {h}x{w} on {backend}");
        guarded.AssertIntact($"group_norm random on {backend}");
    }

    [Fact]
    public void GroupNorm_rejects_bad_arguments()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(6, 4, 4));
        using var w = Tensor.Zeros(dev, DType.F32, new Shape(6));
        using var w5 = Tensor.Zeros(dev, DType.F32, new Shape(5));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(6, 4, 4));
        using var yBad = Tensor.Zeros(dev, DType.F32, new Shape(6, 4, 5));
        Assert.Contains("groups", Assert.Throws<ArgumentException>(() => GroupNorm.Forward(x, w, w, y, 4, 1e-6f)).Message);
        Assert.Contains("weight", Assert.Throws<ArgumentException>(() => GroupNorm.Forward(x, w5, w, y, 2, 1e-6f)).Message);
        Assert.Contains("y", Assert.Throws<ArgumentException>(() => GroupNorm.Forward(x, w, w, yBad, 2, 1e-6f)).Message);
    }

    // ------------------------------------------------------------------ Upsample

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Upsample_nearest2x_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "upsample_nearest2x.x");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("upsample_nearest2x.out"));
        Upsample.Nearest2x(x, y);
        // Pure copies: exact.
        Compare.Close(Golden.F("upsample_nearest2x.out"), y.ToFloatArray(), 0f, 0f, $"upsample on {backend}");
        y.AssertIntact($"upsample on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Upsample_nearest2x_odd_width_is_exact(string backend)
    {
        var dev = Backends.Get(backend);
        const int c = 3, h = 5, w = 21; // 21 = two 8-wide vectors + a 5-wide tail on the CPU path
        var xs = RandomValues(new Random(5), c * h * w);
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var y = new Guarded(dev, DType.F32, 1, c, 2 * h, 2 * w);
        Upsample.Nearest2x(x, y);
        var expected = new float[c * 4 * h * w];
        for (int ch = 0; ch < c; ch++)
            for (int oy = 0; oy < 2 * h; oy++)
                for (int ox = 0; ox < 2 * w; ox++)
                    expected[(ch * 2 * h + oy) * 2 * w + ox] = xs[(ch * h + oy / 2) * w + ox / 2];
        Compare.Close(expected, y.ToFloatArray(), 0f, 0f, $"upsample odd on {backend}");
        y.AssertIntact($"upsample odd on {backend}");
    }

    [Fact]
    public void Upsample_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(2, 3, 4));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(2, 6, 7));
        Assert.Contains("expected [2, 6, 8]", Assert.Throws<ArgumentException>(() => Upsample.Nearest2x(x, y)).Message);
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
