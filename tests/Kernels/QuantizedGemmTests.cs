using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Kernels.GemmTests;

namespace PureFlux.Tests.Kernels;

public class QuantizedGemmTests(ITestOutputHelper output)
{
    public static TheoryData<string, int> Schemes()
    {
        var data = new TheoryData<string, int>();
        foreach (var b in Backends.Ids)
            foreach (int g in new[] { 0, 32, 64, 128 }) // 0 = int8 per channel
                data.Add(b, g);
        return data;
    }

    /// <summary>
    /// y_q against the exact product of the unquantized operands (float64): every element within the bound
    /// documented on <see cref="QuantizedGemm"/>, computed here from the actual scales.
    /// </summary>
    [Theory, MemberData(nameof(Schemes))]
    public void Linear_within_documented_bound(string backend, int groupSize)
    {
        var dev = Backends.Get(backend);
        // K spans two CPU K blocks (512) at groups of 128 on the CPU; the ILGPU CPU accelerator gets a smaller case.
        int m = 33, n = 100, k = backend == "cpu" ? 640 : 256;
        CheckBound(dev, m, n, k, groupSize, "F32", withBias: true, $"{Scheme(groupSize)} M={m} N={n} K={k} on {backend}");
    }

    public static TheoryData<string, int, int, int> OddSizes()
    {
        var data = new TheoryData<string, int, int, int>();
        foreach (var b in Backends.Ids)
        {
            data.Add(b, 1, 17, 5);
            data.Add(b, 7, 100, 130);
            data.Add(b, 33, 17, 131); // odd K: a half-filled int16 pair at the end
        }
        return data;
    }

    [Theory, MemberData(nameof(OddSizes))]
    public void Int8_odd_sizes(string backend, int m, int n, int k) =>
        CheckBound(Backends.Get(backend), m, n, k, 0, "F32", withBias: m == 7, $"int8 M={m} N={n} K={k} on {backend}");

    public static TheoryData<int, int, int, int, int, QuantizedCpuKernel> BlockingEdges()
    {
        var data = new TheoryData<int, int, int, int, int, QuantizedCpuKernel>();
        foreach (var kernel in new[] { QuantizedCpuKernel.MaddWd, QuantizedCpuKernel.Vnni })
        {
            data.Add(1, 17, 64, 32, 1, kernel);
            data.Add(150, 170, 1152, 128, 2, kernel); // several K and M blocks, N split
            data.Add(301, 20, 256, 64, 2, kernel);    // narrow N: M split
            data.Add(150, 170, 1030, 0, 2, kernel);   // int8, 3 K blocks, last one ragged
        }
        return data;
    }

    [Theory, MemberData(nameof(BlockingEdges))]
    public void Cpu_blocking_edges(int m, int n, int k, int groupSize, int threads, QuantizedCpuKernel kernel)
    {
        SkipUnlessRunnable(kernel);
        using var cpu = new CpuDevice(threads);
        CheckBound(cpu, m, n, k, groupSize, "BF16", withBias: true, $"{Scheme(groupSize)} {kernel} cpu M={m} N={n} K={k} threads={threads}", kernel);
    }

    public static TheoryData<int, int, int, int, int> IntegerReferenceCases()
    {
        var data = new TheoryData<int, int, int, int, int>();
        foreach (var (m, n, k, g) in new[]
        {
            (1, 1, 1, 0), (1, 17, 5, 0), (3, 15, 6, 0), (7, 33, 131, 0), // K % 4 = 1, 2, 3; N < 16; M < tile
            (8, 16, 128, 0), (13, 47, 516, 0), (9, 40, 1030, 0),         // whole tiles; a 4-wide last K block; ragged K blocks
            (5, 100, 64, 32), (12, 31, 192, 64), (17, 48, 640, 128),    // int4 groups, 2 K blocks at 640
            (40, 20, 256, 64), (150, 170, 1152, 128),                   // narrow N (M split at 2 threads); several blocks
            (5, 40, 4100, 0), (9, 33, 4224, 128),                       // several 2048-wide VNNI K blocks (balanced)
        })
        {
            data.Add(m, n, k, g, 1);
            data.Add(m, n, k, g, 2);
        }
        return data;
    }

    /// <summary>
    /// Both CPU integer kernels against a scalar model of what they compute: x rows quantized per token
    /// (qx = round(x·127/max|x|)), Σ qx·qw in exact integers per group (int8: per 512-wide K block), then
    /// y = fma(float(Σ), s_w·s_x, y) group by group from the bias. Equal bit for bit: the int32 sums are exact
    /// (VNNI: u8 = qx + 128 with the −128·Σw correction) and the FP32 rescale is the same operation sequence.
    /// </summary>
    [Theory, MemberData(nameof(IntegerReferenceCases))]
    public void Cpu_kernels_equal_the_integer_reference_bit_for_bit(int m, int n, int k, int groupSize, int threads)
    {
        using var cpu = new CpuDevice(threads);
        var rng = new Random(m * 131 + n * 17 + k + groupSize);
        var xs = RandomArray(rng, m * k);
        var ws = RandomArray(rng, n * k);
        var bs = RandomArray(rng, n);
        if (m > 2) Array.Clear(xs, k, k); // an all-zero row: scale 0
        using var w = Tensor.FromArray(cpu, ws, n, k);
        using var q = groupSize == 0 ? Quantize.Int8(w) : Quantize.Int4(w, groupSize);
        using var x = Tensor.FromArray(cpu, xs, m, k);
        using var bias = Tensor.FromArray(cpu, bs, n);
        var expected = IntegerReference(xs, q, bs, m, n, k);
        foreach (var kernel in new[] { QuantizedCpuKernel.MaddWd, QuantizedCpuKernel.Vnni })
        {
            if (kernel == QuantizedCpuKernel.Vnni && !QuantizedGemm.VnniSupported) continue;
            using var y = new Guarded(cpu, DType.F32, m, n);
            QuantizedGemm.Linear(x, q, bias, y, kernel);
            y.AssertIntact($"{kernel} M={m} N={n} K={k}");
            var actual = y.ToFloatArray();
            for (int i = 0; i < actual.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(actual[i]) == BitConverter.SingleToInt32Bits(expected[i]),
                    $"{kernel} {Scheme(groupSize)} M={m} N={n} K={k} threads={threads}: y[{i / n},{i % n}] = {actual[i]:R}, reference {expected[i]:R}");
        }
        if (!QuantizedGemm.VnniSupported) Assert.Skip("VNNI kernel not supported here: only the vpmaddwd kernel was checked");
    }

    private static float[] IntegerReference(float[] xs, QuantizedTensor q, float[] bs, int m, int n, int k)
    {
        const int kBlock = 512; // the CPU kernels' K block: int8 rescales once per block
        var scales = q.Scales.ToArray<float>();
        int g = q.Data.DType == DType.I8 ? kBlock : q.GroupSize, groups = k / q.GroupSize;
        var qw = new int[(long)n * k];
        if (q.Data.DType == DType.I8) { var d = q.Data.ToArray<sbyte>(); for (int i = 0; i < qw.Length; i++) qw[i] = d[i]; }
        else { var d = q.Data.ToArray<byte>(); for (int i = 0; i < qw.Length; i++) qw[i] = ((d[i / 2] >> (4 * (i & 1))) & 0xF) is var v && v >= 8 ? v - 16 : v; }
        var y = new float[m * n];
        var qx = new int[k];
        for (int i = 0; i < m; i++)
        {
            float max = 0f;
            for (int p = 0; p < k; p++) max = Math.Max(max, Math.Abs(xs[i * k + p]));
            float sx = max / 127f, inv = max > 0f ? 127f / max : 0f;
            for (int p = 0; p < k; p++) qx[p] = (int)MathF.Round(xs[i * k + p] * inv);
            for (int j = 0; j < n; j++)
            {
                float acc = bs[j];
                for (int g0 = 0; g0 < k; g0 += g)
                {
                    long dot = 0;
                    for (int p = g0; p < Math.Min(k, g0 + g); p++) dot += (long)qx[p] * qw[(long)j * k + p];
                    float sw = q.Data.DType == DType.I8 ? scales[j] : scales[(long)j * groups + g0 / q.GroupSize];
                    acc = MathF.FusedMultiplyAdd((float)dot, sw * sx, acc);
                }
                y[i * n + j] = acc;
            }
        }
        return y;
    }

    public static TheoryData<string, string> QuantizeBitExactCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var dt in new[] { "F32", "F16", "BF16" })
            foreach (var b in new[] { "cpu", "ilgpu-cpu" })
                data.Add(dt, b);
        return data;
    }

    /// <summary>The streaming vectorised quantizer equals the scalar definition (widen, max |w|, round half to even,
    /// clamp, low nibble first) bit for bit: odd K for int8 (a scalar tail), exact ties, zero and −0 rows.</summary>
    [Theory, MemberData(nameof(QuantizeBitExactCases))]
    public void Quantize_matches_scalar_reference_bit_for_bit(string dtype, string backend)
    {
        var dev = Backends.Get(backend);
        var rng = new Random(5);
        foreach (var (n, k) in new[] { (9, 1013), (6, 384), (3, 17) })
        {
            var ws = RandomArray(rng, n * k);
            for (int p = 0; p < k; p++)
            {
                ws[p] = (p % 255 - 127) + (p % 255 == 254 ? 0f : 0.5f) * (p % 7 == 0 ? -1 : 1); // row 0: ties at scale 1
                ws[k + p] = (p % 15 - 7) * (p % 15 == 14 ? 1f : 0.5f);                        // row 1: int4 ties (max 7)
                ws[2 * k + p] = 0f;                                                                 // row 2: zero
                if (n > 3) ws[3 * k + p] = p % 3 == 0 ? -0f : ws[3 * k + p] * 1e-30f;              // row 3: −0 and tiny
            }
            for (int i = 4 * k; i < ws.Length; i++) ws[i] *= MathF.Pow(10f, i / k - 6); // rows of different magnitudes
            var (weight, rounded) = dtype == "F32" ? (Tensor.FromArray(dev, ws, n, k), ws) : HalfWeight(dev, ws, n, k, dtype);
            using var _ = weight;
            using (var q8 = Quantize.Int8(weight))
            {
                var (data, scales) = ScalarInt8(rounded, n, k);
                Assert.Equal(data, q8.Data.ToArray<sbyte>());
                Assert.Equal(scales.Select(BitConverter.SingleToInt32Bits), q8.Scales.ToArray<float>().Select(BitConverter.SingleToInt32Bits));
            }
            if (k % 32 != 0) continue;
            foreach (int g in new[] { 32, 64, 128 })
            {
                using var q4 = Quantize.Int4(weight, g);
                var (data, scales) = ScalarInt4(rounded, n, k, g);
                Assert.Equal(data, q4.Data.ToArray<byte>());
                Assert.Equal(scales.Select(BitConverter.SingleToInt32Bits), q4.Scales.ToArray<float>().Select(BitConverter.SingleToInt32Bits));
            }
        }
    }

    /// <summary>The scalar definition of <see cref="Quantize.Int8"/> (the implementation before it was vectorised).</summary>
    private static (sbyte[] Data, float[] Scales) ScalarInt8(float[] w, int n, int k)
    {
        var q = new sbyte[n * k];
        var scales = new float[n];
        for (int row = 0; row < n; row++)
        {
            var src = w.AsSpan(row * k, k);
            float max = Math.Abs(TensorPrimitives.MaxMagnitude(src));
            scales[row] = max / 127f;
            float inv = max > 0f ? 127f / max : 0f;
            for (int i = 0; i < k; i++) q[row * k + i] = (sbyte)Math.Clamp(MathF.Round(src[i] * inv), -127f, 127f);
        }
        return (q, scales);
    }

    /// <summary>The scalar definition of <see cref="Quantize.Int4"/>.</summary>
    private static (byte[] Data, float[] Scales) ScalarInt4(float[] w, int n, int k, int groupSize)
    {
        int groups = k / groupSize;
        var packed = new byte[n * k / 2];
        var scales = new float[n * groups];
        for (int row = 0; row < n; row++)
            for (int g = 0; g < groups; g++)
            {
                var src = w.AsSpan(row * k + g * groupSize, groupSize);
                float max = Math.Abs(TensorPrimitives.MaxMagnitude(src));
                scales[row * groups + g] = max / 7f;
                float inv = max > 0f ? 7f / max : 0f;
                for (int i = 0; i < groupSize; i += 2)
                {
                    int lo = (int)Math.Clamp(MathF.Round(src[i] * inv), -7f, 7f);
                    int hi = (int)Math.Clamp(MathF.Round(src[i + 1] * inv), -7f, 7f);
                    packed[(row * k + g * groupSize + i) / 2] = (byte)((lo & 0xF) | ((hi & 0xF) << 4));
                }
            }
        return (packed, scales);
    }

    private static void SkipUnlessRunnable(QuantizedCpuKernel kernel)
    {
        if (kernel == QuantizedCpuKernel.Vnni && !QuantizedGemm.VnniSupported)
            Assert.Skip("skipped: the VNNI kernel needs AVX-VNNI (QuantizedGemm.VnniSupported is false here)");
    }

    [Theory]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void Quantize_accepts_half_weights(string dtype)
    {
        using var cpu = new CpuDevice(1);
        CheckBound(cpu, 5, 40, 128, 0, dtype, withBias: false, $"int8 from {dtype}");
        CheckBound(cpu, 5, 40, 128, 64, dtype, withBias: false, $"int4 from {dtype}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Quantize_round_trip_error_is_half_a_step(string backend)
    {
        var dev = Backends.Get(backend);
        var rng = new Random(11);
        int n = 9, k = 128;
        var ws = RandomArray(rng, n * k);
        ws[5] = 0f; // exact zero stays zero
        using var w = Tensor.FromArray(dev, ws, n, k);
        using var q8 = Quantize.Int8(w);
        using var q4 = Quantize.Int4(w, 32);
        Assert.Same(dev, q8.Device);
        Assert.Equal(DType.I8, q8.Data.DType);
        Assert.Equal(DType.I4, q4.Data.DType);
        Assert.Equal([n, k / 32], q4.Scales.Shape.ToArray());
        var s8 = q8.Scales.ToArray<float>();
        var s4 = q4.Scales.ToArray<float>();
        var d8 = Quantize.Dequantize(q8);
        var d4 = Quantize.Dequantize(q4);
        for (int i = 0; i < ws.Length; i++)
        {
            Assert.True(Math.Abs(d8[i] - ws[i]) <= s8[i / k] * 0.5001f, $"int8 element {i}: {d8[i]} vs {ws[i]}");
            Assert.True(Math.Abs(d4[i] - ws[i]) <= s4[i / k * (k / 32) + i % k / 32] * 0.5001f, $"int4 element {i}: {d4[i]} vs {ws[i]}");
        }
        Assert.Equal(0f, d8[5]);
        Assert.Equal(0f, d4[5]);
        Assert.All(q8.Data.ToArray<sbyte>(), v => Assert.InRange(v, (sbyte)-127, (sbyte)127));
    }

    [Fact]
    public void Int4_packs_low_nibble_first()
    {
        using var cpu = new CpuDevice(1);
        var ws = new float[32];
        ws[0] = 7f; ws[1] = -7f; ws[2] = -1f; ws[3] = 3f; // max |w| = 7 → scale 1
        using var w = Tensor.FromArray(cpu, ws, 1, 32);
        using var q = Quantize.Int4(w, 32);
        var bytes = q.Data.ToArray<byte>();
        Assert.Equal(16, bytes.Length);
        Assert.Equal((byte)(0x7 | (0x9 << 4)), bytes[0]); // 7, then -7 = 0b1001
        Assert.Equal((byte)(0xF | (0x3 << 4)), bytes[1]); // -1 = 0b1111, then 3
        Assert.Equal(1f, q.Scales.ToArray<float>()[0]);
    }

    [Fact]
    public void Bad_arguments_throw()
    {
        using var cpu = new CpuDevice(1);
        using var w = Tensor.Zeros(cpu, DType.F32, new Shape(6, 64));
        Assert.Throws<ArgumentException>(() => Quantize.Int4(w, 48));
        using var wOdd = Tensor.Zeros(cpu, DType.F32, new Shape(6, 40));
        Assert.Throws<ArgumentException>(() => Quantize.Int4(wOdd, 32));
        using var q = Quantize.Int8(w);
        using var x = Tensor.Zeros(cpu, DType.F32, new Shape(3, 63));
        using var y = Tensor.Zeros(cpu, DType.F32, new Shape(3, 6));
        Assert.Throws<ArgumentException>(() => QuantizedGemm.Linear(x, q, null, y));
        using var xOk = Tensor.Zeros(cpu, DType.F32, new Shape(3, 64));
        using var yBad = Tensor.Zeros(cpu, DType.F32, new Shape(3, 7));
        Assert.Throws<ArgumentException>(() => QuantizedGemm.Linear(xOk, q, null, yBad));
        using var biasBad = Tensor.Zeros(cpu, DType.F32, new Shape(7));
        Assert.Throws<ArgumentException>(() => QuantizedGemm.Linear(xOk, q, biasBad, y));
    }

    private static string Scheme(int groupSize) => groupSize == 0 ? "int8" : $"int4/g{groupSize}";

    private void CheckBound(Device dev, int m, int n, int k, int groupSize, string dtype, bool withBias, string what,
        QuantizedCpuKernel kernel = QuantizedCpuKernel.Auto)
    {
        var rng = new Random(m * 7919 + n * 31 + k + groupSize);
        var xs = RandomArray(rng, m * k);
        var ws = RandomArray(rng, n * k);
        for (int i = 0; i < ws.Length; i++) ws[i] *= 0.1f;
        var bs = RandomArray(rng, n);
        var (weight, wr) = HalfWeight(dev, ws, n, k, dtype);
        using var _ = weight;
        using var q = groupSize == 0 ? Quantize.Int8(weight) : Quantize.Int4(weight, groupSize);
        using var x = Tensor.FromArray(dev, xs, m, k);
        using var bias = withBias ? Tensor.FromArray(dev, bs, n) : null;
        using var y = new Guarded(dev, DType.F32, m, n);
        QuantizedGemm.Linear(x, q, bias, y, kernel);
        var actual = y.ToFloatArray();
        y.AssertIntact(what);

        var exact = Reference(xs, wr, withBias ? bs : null, m, n, k);
        var scales = q.Scales.ToArray<float>();
        int g = q.GroupSize, groups = k / g;
        double worstRatio = 0;
        for (int i = 0; i < m; i++)
        {
            double maxX = 0;
            for (int p = 0; p < k; p++) maxX = Math.Max(maxX, Math.Abs(xs[i * k + p]));
            double sx = maxX / 127; // the CPU path's per-token activation scale (ILGPU: 0, covered by this bound)
            for (int j = 0; j < n; j++)
            {
                // |y_q − y| ≤ Σ_k (|x_k| + sx/2)·s_g/2 + |w_k|·sx/2, plus FP32 rounding of the rescaled sums.
                double bound = 0, magnitude = 0;
                for (int p = 0; p < k; p++)
                {
                    double ax = Math.Abs(xs[i * k + p]), aw = Math.Abs(wr[j * k + p]);
                    double sw = scales[(long)j * groups + p / g];
                    bound += (ax + sx / 2) * sw / 2 + aw * sx / 2;
                    magnitude += (ax + sx) * (aw + sw);
                }
                bound += 1e-5 * magnitude + 1e-6 * Math.Abs(exact[i * n + j]);
                double err = Math.Abs((double)actual[i * n + j] - exact[i * n + j]);
                Assert.True(err <= bound, $"{what}: y[{i},{j}] = {actual[i * n + j]}, exact {exact[i * n + j]}, |err| {err:g3} > bound {bound:g3}");
                worstRatio = Math.Max(worstRatio, err / bound);
            }
        }
        double rel = Compare.RelMaxError(exact, actual);
        output.WriteLine($"{what}: max |y_q − y| / max |y| = {rel:P2}; worst error / bound = {worstRatio:F2}");
        // The bound must not be vacuous and the result must be a real product: relative error stays small.
        Assert.True(rel < (groupSize == 0 ? 0.02 : 0.15), $"{what}: relative error {rel:P2} too large");
    }
}
