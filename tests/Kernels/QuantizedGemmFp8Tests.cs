using PureFlux.Tests.Support;
using static PureFlux.Tests.Kernels.GemmTests;

namespace PureFlux.Tests.Kernels;

/// <summary>FP8 weights (<see cref="Quantize.Fp8"/>) through <see cref="QuantizedGemm.Linear(Tensor, QuantizedTensor, Tensor?, Tensor)"/>.</summary>
public class QuantizedGemmFp8Tests(ITestOutputHelper output)
{
    private static (int M, int Emin) Bits(Fp8Format f) => f == Fp8Format.E4M3 ? (3, -6) : (2, -14);

    public static TheoryData<string, Fp8Format, int, int, int, bool> Shapes()
    {
        var data = new TheoryData<string, Fp8Format, int, int, int, bool>();
        foreach (var b in Backends.Ids)
            foreach (var f in new[] { Fp8Format.E4M3, Fp8Format.E5M2 })
            {
                data.Add(b, f, 1, 17, 5, false);    // GEMV, N and K below a vector
                data.Add(b, f, 3, 33, 131, true);   // GEMV, K tail
                data.Add(b, f, 7, 100, 130, true);  // packed, odd M, N not a multiple of 32
                data.Add(b, f, 33, 70, 400, false); // two CPU K blocks (384), several M tiles
            }
        return data;
    }

    /// <summary>y against x·(q·s)ᵀ + b in float64 (the dequantized weight exactly): only FP32 summation error remains.</summary>
    [Theory, MemberData(nameof(Shapes))]
    public void Linear_equals_the_dequantized_product(string backend, Fp8Format format, int m, int n, int k, bool withBias)
    {
        var dev = Backends.Get(backend);
        var rng = new Random(m * 7 + n * 13 + k + (int)format);
        var xs = RandomArray(rng, m * k);
        var ws = RandomArray(rng, n * k);
        for (int j = 0; j < n; j++) for (int p = 0; p < k; p++) ws[j * k + p] *= MathF.Pow(2, j % 9 - 4); // rows of different scales
        var bs = RandomArray(rng, n);
        using var w = Tensor.FromArray(dev, ws, n, k);
        using var q = Quantize.Fp8(w, format);
        Assert.Equal(format.DType(), q.Data.DType);
        Assert.Equal([n], q.Scales.Shape.ToArray());
        Assert.Equal(k, q.GroupSize);
        var dq = Quantize.Dequantize(q);
        using var x = Tensor.FromArray(dev, xs, m, k);
        using var bias = withBias ? Tensor.FromArray(dev, bs, n) : null;
        using var y = new Guarded(dev, DType.F32, m, n);
        QuantizedGemm.Linear(x, q, bias, y);
        string what = $"{format} M={m} N={n} K={k} bias={withBias} on {backend}";
        y.AssertIntact(what);
        var actual = y.ToFloatArray();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double exact = withBias ? bs[j] : 0, magnitude = withBias ? Math.Abs(bs[j]) : 0;
                for (int p = 0; p < k; p++)
                {
                    exact += (double)xs[i * k + p] * dq[j * k + p];
                    magnitude += Math.Abs((double)xs[i * k + p] * dq[j * k + p]);
                }
                double err = Math.Abs(actual[i * n + j] - exact);
                Assert.True(err <= 1e-5 * magnitude + 1e-30, $"{what}: y[{i},{j}] = {actual[i * n + j]}, exact {exact}, |err| {err:g3}");
            }
    }

    /// <summary>Against the unquantized weights: within the bound documented on <see cref="QuantizedGemm"/>, per element
    /// Σ_k |x_k| · max(2^-(M+1)|w_k|, s·2^(emin−M−1)) + FP32 rounding; and each dequantized weight within its own term.</summary>
    [Theory]
    [InlineData("cpu", Fp8Format.E4M3)]
    [InlineData("cpu", Fp8Format.E5M2)]
    [InlineData("ilgpu-cpu", Fp8Format.E4M3)]
    [InlineData("ilgpu-cpu", Fp8Format.E5M2)]
    public void Linear_within_documented_bound(string backend, Fp8Format format)
    {
        var dev = Backends.Get(backend);
        int m = 9, n = 40, k = backend == "cpu" ? 1152 : 256;
        var rng = new Random(17 + (int)format);
        var xs = RandomArray(rng, m * k);
        var ws = RandomArray(rng, n * k);
        for (int i = 0; i < ws.Length; i++) ws[i] *= 0.05f * MathF.Pow(rng.NextSingle(), 6); // many small weights: subnormal codes too
        var (weight, wr) = HalfWeight(dev, ws, n, k, backend == "cpu" ? "BF16" : "F32"); // BF16 on the CPU: the model's weights
        using var _ = weight;
        using var q = Quantize.Fp8(weight, format);
        var scales = q.Scales.ToArray<float>();
        var dq = Quantize.Dequantize(q);
        var (mb, emin) = Bits(format);
        double rel = Math.Pow(2, -(mb + 1)), sub = Math.Pow(2, emin - mb - 1);
        int subnormal = 0;
        for (int i = 0; i < wr.Length; i++)
        {
            double s = scales[i / k], bound = Math.Max(rel * Math.Abs(wr[i]), s * sub) * (1 + 1e-6);
            Assert.True(Math.Abs(dq[i] - wr[i]) <= bound, $"{format} weight {i}: {dq[i]} vs {wr[i]}, bound {bound:g3}");
            if (Math.Abs(wr[i]) < s * Math.Pow(2, emin)) subnormal++;
        }
        Assert.True(subnormal > 0 || format == Fp8Format.E5M2, "the data should exercise subnormal codes");

        using var x = Tensor.FromArray(dev, xs, m, k);
        using var y = new Guarded(dev, DType.F32, m, n);
        QuantizedGemm.Linear(x, q, null, y);
        var actual = y.ToFloatArray();
        var exact = Reference(xs, wr, null, m, n, k);
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double bound = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double ax = Math.Abs(xs[i * k + p]), aw = Math.Abs(wr[j * k + p]);
                    bound += ax * Math.Max(rel * aw, scales[j] * sub);
                    magnitude += ax * aw;
                }
                bound += 1e-5 * magnitude;
                double err = Math.Abs((double)actual[i * n + j] - exact[i * n + j]);
                Assert.True(err <= bound, $"{format} on {backend}: y[{i},{j}] = {actual[i * n + j]}, exact {exact[i * n + j]}, |err| {err:g3} > bound {bound:g3}");
                worst = Math.Max(worst, err / bound);
            }
        output.WriteLine($"{format} on {backend}: max |y_q − y| / max |y| = {Compare.RelMaxError(exact, actual):P2}; worst error / bound = {worst:F2}");
    }

    /// <summary>The vectorised quantizer equals the scalar definition s = max|w| / fmax, q = Fp8.Encode(w / s) bit for bit
    /// (F32, F16, BF16 inputs; a K with a scalar tail; ties, subnormals, zero and −0 rows).</summary>
    [Theory]
    [InlineData("F32")]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void Quantize_matches_the_scalar_codec_bit_for_bit(string dtype)
    {
        var dev = Backends.Get("cpu");
        var rng = new Random(23);
        foreach (var format in new[] { Fp8Format.E4M3, Fp8Format.E5M2 })
            foreach (var (n, k) in new[] { (6, 1013), (5, 64) })
            {
                var ws = RandomArray(rng, n * k);
                float max = Fp8.Max(format);
                for (int p = 0; p < k; p++)
                {
                    ws[p] = p == 0 ? max : Fp8.Decode((byte)(p % 256), format) is var v && float.IsFinite(v) ? v * (p % 3 == 0 ? 1.0625f : 1f) : 0f; // row 0: scale 1, codes and ties
                    ws[k + p] = 0f;                                                                         // row 1: zero
                    ws[2 * k + p] = p % 3 == 0 ? -0f : ws[2 * k + p] * MathF.Pow(2, -30);                  // row 2: −0 and tiny
                }
                for (int i = 3 * k; i < ws.Length; i++) ws[i] *= MathF.Pow(rng.NextSingle(), 8) * 100f;   // wide range: subnormal codes
                var (weight, rounded) = HalfWeight(dev, ws, n, k, dtype);
                using var _ = weight;
                using var q = Quantize.Fp8(weight, format);
                var data = q.Data.ToArray<byte>();
                var scales = q.Scales.ToArray<float>();
                for (int row = 0; row < n; row++)
                {
                    float maxAbs = 0f;
                    for (int p = 0; p < k; p++) maxAbs = Math.Max(maxAbs, Math.Abs(rounded[row * k + p]));
                    float s = maxAbs / max;
                    if (!(s > 0f)) s = 1f;
                    Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(scales[row]));
                    for (int p = 0; p < k; p++)
                    {
                        byte expected = Fp8.Encode(rounded[row * k + p] / s, format);
                        Assert.True(expected == data[row * k + p], $"{format} {dtype} [{row},{p}] w={rounded[row * k + p]:R}: 0x{data[row * k + p]:X2}, scalar 0x{expected:X2}");
                    }
                }
            }
    }

    /// <summary>On the ILGPU CPU accelerator the weight is quantized on the host: the same bits as on the CPU device.</summary>
    [Fact]
    public void Quantize_on_an_ilgpu_device_equals_the_cpu()
    {
        var gpu = Backends.Get("ilgpu-cpu");
        var cpu = Backends.Get("cpu");
        var ws = RandomArray(new Random(4), 7 * 99);
        using var wg = Tensor.FromArray(gpu, ws, 7, 99);
        using var wc = Tensor.FromArray(cpu, ws, 7, 99);
        using var qg = Quantize.Fp8(wg, Fp8Format.E4M3);
        using var qc = Quantize.Fp8(wc, Fp8Format.E4M3);
        Assert.Same(gpu, qg.Device);
        Assert.Equal(qc.Data.ToArray<byte>(), qg.Data.ToArray<byte>());
        Assert.Equal(qc.Scales.ToArray<float>(), qg.Scales.ToArray<float>());
    }

    [Fact]
    public void Bad_inputs_are_one_line_errors()
    {
        using var cpu = new CpuDevice(1);
        using var i8 = Tensor.Zeros(cpu, DType.I8, new Shape(4, 8));
        var e = Assert.Throws<ArgumentException>(() => Quantize.Fp8(i8, Fp8Format.E4M3));
        Assert.Contains("Quantize.Fp8", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        var data = Tensor.Zeros(cpu, DType.F8E4M3, new Shape(4, 8), "l.weight");
        using var scales3 = Tensor.Zeros(cpu, DType.F32, new Shape(3));
        e = Assert.Throws<ArgumentException>(() => new QuantizedTensor(data, scales3, 8));
        Assert.Contains("'l.weight'", e.Message);
        Assert.Contains("scales [3] do not match [N=4", e.Message);
        using var scales8 = Tensor.Zeros(cpu, DType.F32, new Shape(4, 2));
        e = Assert.Throws<ArgumentException>(() => new QuantizedTensor(data, scales8, 4)); // groups: FP8 is per row only
        Assert.Contains("one scale per output row", e.Message);
        using var i32 = Tensor.Zeros(cpu, DType.I32, new Shape(4));
        e = Assert.Throws<ArgumentException>(() => new QuantizedTensor(data, i32, 8));
        Assert.Contains("scales must be F32", e.Message);
        data.Dispose();

        using var w = Tensor.Zeros(cpu, DType.F32, new Shape(6, 64));
        using var q = Quantize.Fp8(w, Fp8Format.E5M2);
        Assert.Equal(Enumerable.Repeat(1f, 6), q.Scales.ToArray<float>()); // all-zero rows: scale 1
        using var x = Tensor.Zeros(cpu, DType.F32, new Shape(3, 63));
        using var y = Tensor.Zeros(cpu, DType.F32, new Shape(3, 6));
        e = Assert.Throws<ArgumentException>(() => QuantizedGemm.Linear(x, q, null, y));
        Assert.DoesNotContain('\n', e.Message);
    }
}
