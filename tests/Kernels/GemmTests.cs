using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class GemmTests
{
    // FP32 sums of K products (K up to 2560 here) in a different order than PyTorch's (blocked K, FMA, register
    // tiles) differ by about sqrt(K)·2^-24·Σ|a_k·b_k| ≈ 3e-6 of the row's magnitude; elements near zero by
    // cancellation see that as absolute error, hence atol relative to the output's max magnitude.
    private const float Rtol = 1e-5f, AtolRel = 1e-5f;

    public static TheoryData<string, string> MatMulCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var c in new[] { "16x16x16", "5x7x3", "77x130x67", "333x72x45", "1x256x100", "8x2560x24" })
            foreach (var b in Backends.Ids) data.Add(c, b);
        return data;
    }

    public static TheoryData<string, string, bool> LinearCases()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var c in new[] { "77x130x67", "3x192x64" })
            foreach (var b in Backends.Ids)
            {
                data.Add(c, b, true);
                data.Add(c, b, false);
            }
        return data;
    }

    [Theory, MemberData(nameof(MatMulCases))]
    public void MatMul_matches_golden(string size, string backend)
    {
        var dev = Backends.Get(backend);
        using var a = Golden.Load(dev, $"matmul.{size}.a");
        using var b = Golden.Load(dev, $"matmul.{size}.b");
        using var c = new Guarded(dev, DType.F32, Golden.Dims($"matmul.{size}.out"));
        Gemm.MatMul(a, b, c);
        var expected = Golden.F($"matmul.{size}.out");
        Compare.Close(expected, c.ToFloatArray(), Rtol, AtolRel * MaxAbs(expected), $"matmul {size} on {backend}");
        c.AssertIntact($"matmul {size} on {backend}");
    }

    [Theory, MemberData(nameof(LinearCases))]
    public void Linear_matches_golden(string size, string backend, bool withBias)
    {
        var dev = Backends.Get(backend);
        string p = $"linear.{size}";
        using var x = Golden.Load(dev, $"{p}.x");
        using var w = Golden.Load(dev, $"{p}.weight");
        using var bias = withBias ? Golden.Load(dev, $"{p}.bias") : null;
        string outName = withBias ? $"{p}.out" : $"{p}.out_nobias";
        using var y = new Guarded(dev, DType.F32, Golden.Dims(outName));
        Gemm.Linear(x, w, bias, y);
        var expected = Golden.F(outName);
        Compare.Close(expected, y.ToFloatArray(), Rtol, AtolRel * MaxAbs(expected), $"linear {size} bias={withBias} on {backend}");
        y.AssertIntact($"linear {size} on {backend}");
    }

    public static TheoryData<string, string> HalfWeightCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var dt in new[] { "BF16", "F16" })
            foreach (var b in Backends.Ids) data.Add(dt, b);
        return data;
    }

    /// <summary>The golden weight rounded to BF16/F16 on the host; reference in float64 from the rounded weights,
    /// so only accumulation-order error remains (same tolerance as fp32).</summary>
    [Theory, MemberData(nameof(HalfWeightCases))]
    public void Linear_half_weights_match_float64_reference(string dtype, string backend)
    {
        var dev = Backends.Get(backend);
        const string p = "linear.77x130x67";
        var xs = Golden.F($"{p}.x");
        var ws = Golden.F($"{p}.weight");
        var bs = Golden.F($"{p}.bias");
        int[] wd = Golden.Dims($"{p}.weight");
        int n = wd[0], k = wd[1], m = xs.Length / k;
        var (weight, rounded) = HalfWeight(dev, ws, n, k, dtype);
        using var _ = weight;
        using var x = Tensor.FromArray(dev, xs, m, k);
        using var bias = Tensor.FromArray(dev, bs, n);
        using var y = new Guarded(dev, DType.F32, m, n);
        Gemm.Linear(x, weight, bias, y);
        var expected = Reference(xs, rounded, bs, m, n, k);
        Compare.Close(expected, y.ToFloatArray(), Rtol, AtolRel * MaxAbs(expected), $"linear {dtype} weights on {backend}");
        y.AssertIntact($"linear {dtype} on {backend}");
    }

    public static TheoryData<string, int, int, int, string> OddSizes()
    {
        var data = new TheoryData<string, int, int, int, string>();
        foreach (var b in Backends.Ids)
            foreach (int m in new[] { 1, 7, 33 })
                foreach (int n in new[] { 17, 100 })
                    foreach (int k in new[] { 5, 130 })
                        data.Add(b, m, n, k, m == 7 && n == 17 ? "BF16" : m == 33 && k == 5 ? "F16" : "F32");
        return data;
    }

    [Theory, MemberData(nameof(OddSizes))]
    public void Linear_odd_sizes(string backend, int m, int n, int k, string dtype)
    {
        var dev = Backends.Get(backend);
        CheckLinear(dev, m, n, k, dtype, withBias: n == 17, $"linear M={m} N={n} K={k} {dtype} on {backend}");
    }

    /// <summary>Sizes that cross every CPU blocking boundary: several K blocks (KC 384), M blocks (MC 280),
    /// M tiles (14) and N panels (32) with ragged edges, both thread splits, and 2 vs 1 threads.</summary>
    [Theory]
    [InlineData(300, 170, 800, 2)]  // N split, 3 K blocks, 2 M blocks (280 + 20)
    [InlineData(301, 20, 300, 2)]   // narrow N: M split across threads
    [InlineData(13, 999, 257, 1)]
    [InlineData(64, 3072, 64, 2)]
    [InlineData(29, 64, 401, 1)]    // vectorised A packing: 14 + 14 + 1 rows, K blocks 384 + 17 (16-k tail of 1)
    [InlineData(15, 40, 399, 2)]    // 14 + 1 rows, K tail of 15 (masked k loads in both packers)
    public void Linear_cpu_blocking_edges(int m, int n, int k, int threads)
    {
        using var cpu = new CpuDevice(threads);
        CheckLinear(cpu, m, n, k, "F32", withBias: true, $"linear cpu M={m} N={n} K={k} threads={threads}");
        CheckLinear(cpu, m, n, k, "BF16", withBias: false, $"linear cpu bf16 M={m} N={n} K={k} threads={threads}");
    }

    /// <summary>M ≤ 4 takes the CPU's streaming (GEMV) path: every row count, every weight dtype, K tails.</summary>
    [Theory]
    [InlineData(1, "F32", 2)]
    [InlineData(2, "BF16", 2)]
    [InlineData(3, "F16", 1)]
    [InlineData(4, "BF16", 2)]
    [InlineData(5, "F16", 2)] // first size on the packed path
    public void Linear_cpu_small_m(int m, string dtype, int threads)
    {
        using var cpu = new CpuDevice(threads);
        foreach (int k in new[] { 7, 16, 301 })
            CheckLinear(cpu, m, 257, k, dtype, withBias: k != 16, $"linear cpu M={m} K={k} {dtype}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Linear_flattens_leading_axes(string backend)
    {
        var dev = Backends.Get(backend);
        var rng = new Random(3);
        int k = 24, n = 10;
        var xs = RandomArray(rng, 2 * 5 * k);
        var ws = RandomArray(rng, n * k);
        using var x = Tensor.FromSpan<float>(dev, xs, new Shape(2, 5, k));
        using var w = Tensor.FromArray(dev, ws, n, k);
        using var y = new Guarded(dev, DType.F32, 2, 5, n);
        Gemm.Linear(x, w, null, y);
        var expected = Reference(xs, ws, null, 10, n, k);
        Compare.Close(expected, y.ToFloatArray(), Rtol, AtolRel * MaxAbs(expected), $"linear [2,5,K] on {backend}");
        y.AssertIntact($"linear [2,5,K] on {backend}");
    }

    /// <summary>Ladder step 0 (naive kernel / loops) against the same golden.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LinearNaive_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        const string p = "linear.77x130x67";
        using var x = Golden.Load(dev, $"{p}.x");
        using var w = Golden.Load(dev, $"{p}.weight");
        using var bias = Golden.Load(dev, $"{p}.bias");
        using var y = new Guarded(dev, DType.F32, Golden.Dims($"{p}.out"));
        Gemm.LinearNaive(x, w, bias, y);
        var expected = Golden.F($"{p}.out");
        Compare.Close(expected, y.ToFloatArray(), Rtol, AtolRel * MaxAbs(expected), $"linear naive on {backend}");
        y.AssertIntact($"linear naive on {backend}");
    }

    [Fact]
    public void Ladder_steps_agree()
    {
        var rng = new Random(5);
        int m = 37, n = 70, k = 300;
        var x = RandomArray(rng, m * k);
        var w = RandomArray(rng, n * k);
        var expected = Reference(x, w, null, m, n, k);
        float atol = AtolRel * MaxAbs(expected);
        var y = new float[m * n];
        GemmLadder.Naive(x, w, y, m, n, k);
        Compare.Close(expected, y, Rtol, atol, "ladder naive");
        Array.Clear(y);
        GemmLadder.Blocked(x, w, y, m, n, k);
        Compare.Close(expected, y, Rtol, atol, "ladder blocked");
        Array.Clear(y);
        GemmLadder.Packed(x, w, y, m, n, k);
        Compare.Close(expected, y, Rtol, atol, "ladder packed");
        Array.Clear(y);
        GemmLadder.PackedParallel(x, w, y, m, n, k, 2);
        Compare.Close(expected, y, Rtol, atol, "ladder packed parallel");
    }

    [Fact]
    public void Bad_shapes_throw()
    {
        using var cpu = new CpuDevice(1);
        using var x = Tensor.Zeros(cpu, DType.F32, new Shape(4, 8));
        using var w = Tensor.Zeros(cpu, DType.F32, new Shape(6, 8));
        using var wBadK = Tensor.Zeros(cpu, DType.F32, new Shape(6, 9));
        using var y = Tensor.Zeros(cpu, DType.F32, new Shape(4, 6));
        using var yBad = Tensor.Zeros(cpu, DType.F32, new Shape(4, 5));
        using var biasBad = Tensor.Zeros(cpu, DType.F32, new Shape(5));
        using var wI32 = Tensor.Zeros(cpu, DType.I32, new Shape(6, 8));
        Assert.Throws<ArgumentException>(() => Gemm.Linear(x, wBadK, null, y));
        Assert.Throws<ArgumentException>(() => Gemm.Linear(x, w, null, yBad));
        Assert.Throws<ArgumentException>(() => Gemm.Linear(x, w, biasBad, y));
        Assert.Throws<ArgumentException>(() => Gemm.Linear(x, wI32, null, y));
        using var b = Tensor.Zeros(cpu, DType.F32, new Shape(7, 6));
        Assert.Throws<ArgumentException>(() => Gemm.MatMul(x, b, y));
        using var bOk = Tensor.Zeros(cpu, DType.F32, new Shape(8, 6));
        Assert.Throws<ArgumentException>(() => Gemm.MatMul(x, bOk, yBad));
        using var square = Tensor.Zeros(cpu, DType.F32, new Shape(8, 8));
        using var wSquare = Tensor.Zeros(cpu, DType.F32, new Shape(8, 8));
        Assert.Throws<ArgumentException>(() => Gemm.Linear(square, wSquare, null, square)); // in place
        var ex = Assert.Throws<ArgumentException>(() => Gemm.Linear(x, wBadK, null, y));
        Assert.Contains("Gemm.Linear", ex.Message);
    }

    private static void CheckLinear(Device dev, int m, int n, int k, string dtype, bool withBias, string what)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        var xs = RandomArray(rng, m * k);
        var ws = RandomArray(rng, n * k);
        var bs = RandomArray(rng, n);
        var (weight, rounded) = HalfWeight(dev, ws, n, k, dtype);
        using var _ = weight;
        using var x = Tensor.FromArray(dev, xs, m, k);
        using var bias = withBias ? Tensor.FromArray(dev, bs, n) : null;
        using var y = new Guarded(dev, DType.F32, m, n);
        Gemm.Linear(x, weight, bias, y);
        var expected = Reference(xs, rounded, withBias ? bs : null, m, n, k);
        Compare.Close(expected, y.ToFloatArray(), Rtol, AtolRel * MaxAbs(expected), what);
        y.AssertIntact(what);
    }

    /// <summary>A weight tensor in <paramref name="dtype"/> and the float values it actually holds.</summary>
    internal static (Tensor Weight, float[] Rounded) HalfWeight(Device dev, float[] w, int n, int k, string dtype)
    {
        switch (dtype)
        {
            case "BF16":
            {
                var bits = Array.ConvertAll(w, Bf16.FromFloat);
                return (Tensor.FromSpan<ushort>(dev, bits, new Shape(n, k), DType.BF16), Array.ConvertAll(bits, Bf16.ToFloat));
            }
            case "F16":
            {
                var halves = Array.ConvertAll(w, v => (Half)v);
                return (Tensor.FromSpan<Half>(dev, halves, new Shape(n, k), DType.F16), Array.ConvertAll(halves, h => (float)h));
            }
            default:
                return (Tensor.FromArray(dev, w, n, k), w);
        }
    }

    /// <summary>y = x·wᵀ + b in float64, rounded to float.</summary>
    internal static float[] Reference(float[] x, float[] w, float[]? bias, int m, int n, int k)
    {
        var y = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = bias?[j] ?? 0.0;
                for (int p = 0; p < k; p++) acc += (double)x[i * k + p] * w[j * k + p];
                y[i * n + j] = (float)acc;
            }
        return y;
    }

    internal static float[] RandomArray(Random rng, int count)
    {
        var a = new float[count];
        for (int i = 0; i < count; i++) a[i] = rng.NextSingle() * 2f - 1f;
        return a;
    }

    internal static float MaxAbs(ReadOnlySpan<float> v)
    {
        float max = 0f;
        foreach (var e in v) max = Math.Max(max, Math.Abs(e));
        return max;
    }
}
