using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// GemmMma (tensor-core GEMM, CUDA only) against a float64 reference. The CUDA rows skip where no CUDA device
/// exists (so far they have never run: the kernel was written on a machine without a GPU; see CudaMmaPtxTests
/// for what is checked there). The argument checks run everywhere.
/// </summary>
public class CudaMmaGemmTests
{
    // The kernel rounds x to the weight's 16-bit type (RNE) and accumulates FP32 products on tensor cores. The
    // reference applies the same rounding to x and w on the host and sums in float64, so what remains is FP32
    // accumulation error in a different order (≈ √K·2⁻²⁴ of Σ|x·w|) plus the tensor cores' internal addition, which
    // is not IEEE round-to-nearest (products are aligned to the largest exponent with truncation, ≈ 2⁻²³ per k16
    // step): 1e-4 of the output's magnitude covers K up to a few thousand with margin, and an indexing error
    // (wrong row, column or k) produces errors of order 1.
    private const float Rtol = 1e-4f, AtolRel = 1e-4f;

    public static TheoryData<int, int, int, string, bool> Sizes()
    {
        var data = new TheoryData<int, int, int, string, bool>();
        data.Add(1, 1, 1, "BF16", false);         // one element: everything else is padding
        data.Add(130, 67, 77, "BF16", true);      // K % 8 != 0: element loads; ragged M and N tiles
        data.Add(129, 257, 96, "F16", true);      // vector loads, one row / column past a tile
        data.Add(300, 200, 520, "BF16", false);   // K tail of 8 (520 = 16·32 + 8), several blocks
        data.Add(256, 384, 1024, "BF16", true);   // full tiles only
        data.Add(33, 130, 1000, "F16", false);
        return data;
    }

    [Theory, MemberData(nameof(Sizes))]
    public void Linear_matches_float64_reference_on_cuda(int m, int n, int k, string dtype, bool withBias)
    {
        var dev = Backends.Get("cuda");
        Run(dev, m, n, k, dtype, withBias, misaligned: false);
    }

    /// <summary>x and weight start 4 / 2 bytes past a 16-byte boundary: the kernel must fall back to element loads.</summary>
    [Theory]
    [InlineData("BF16")]
    [InlineData("F16")]
    public void Linear_handles_misaligned_views_on_cuda(string dtype)
    {
        var dev = Backends.Get("cuda");
        Run(dev, 70, 140, 64, dtype, withBias: true, misaligned: true);
    }

    private static void Run(Device dev, int m, int n, int k, string dtype, bool withBias, bool misaligned)
    {
        var rng = new Random(m * 131 + n * 17 + k);
        var xs = new float[m * k];
        var ws = new float[n * k];
        var bs = new float[n];
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < ws.Length; i++) ws[i] = (float)(rng.NextDouble() * 0.2 - 0.1);
        for (int i = 0; i < bs.Length; i++) bs[i] = (float)rng.NextDouble();
        bool bf16 = dtype == "BF16";
        var wBits = new ushort[ws.Length + 1];
        for (int i = 0; i < ws.Length; i++) wBits[i + (misaligned ? 1 : 0)] = bf16 ? Bf16.FromFloat(ws[i]) : BitConverter.HalfToUInt16Bits((Half)ws[i]);
        var xPadded = new float[xs.Length + 1];
        xs.CopyTo(xPadded, misaligned ? 1 : 0);

        using var xAll = Tensor.FromArray(dev, xPadded, xPadded.Length);
        using var wAll = Tensor.FromSpan<ushort>(dev, wBits, new Shape(wBits.Length), bf16 ? DType.BF16 : DType.F16);
        using var x = xAll.Slice(misaligned ? 1 : 0, xs.Length).Reshape(m, k);
        using var w = wAll.Slice(misaligned ? 1 : 0, ws.Length).Reshape(n, k);
        using var bias = withBias ? Tensor.FromArray(dev, bs, n) : null;
        using var y = new Guarded(dev, DType.F32, m, n);
        GemmMma.Linear(x, w, bias, y);

        var expected = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = withBias ? bs[j] : 0;
                for (int kk = 0; kk < k; kk++)
                {
                    float xr = bf16 ? Bf16.ToFloat(Bf16.FromFloat(xs[i * k + kk])) : (float)(Half)xs[i * k + kk];
                    float wr = bf16 ? Bf16.ToFloat(wBits[j * k + kk + (misaligned ? 1 : 0)]) : (float)BitConverter.UInt16BitsToHalf(wBits[j * k + kk + (misaligned ? 1 : 0)]);
                    sum += (double)xr * wr;
                }
                expected[i * n + j] = (float)sum;
            }
        float maxAbs = expected.Max(MathF.Abs);
        string what = $"GemmMma M={m} N={n} K={k} {dtype} bias={withBias} misaligned={misaligned}";
        Compare.Close(expected, y.ToFloatArray(), Rtol, AtolRel * maxAbs, what);
        y.AssertIntact(what);
    }

    [Fact]
    public void Linear_rejects_non_cuda_devices_and_bad_shapes()
    {
        var cpu = Backends.Get("cpu");
        using var x = Tensor.Zeros(cpu, DType.F32, new Shape(4, 8));
        using var w = Tensor.Zeros(cpu, DType.BF16, new Shape(16, 8));
        using var y = Tensor.Zeros(cpu, DType.F32, new Shape(4, 16));
        var e = Assert.Throws<ArgumentException>(() => GemmMma.Linear(x, w, null, y));
        Assert.Contains("CUDA", e.Message);
        using var wrongK = Tensor.Zeros(cpu, DType.BF16, new Shape(16, 9));
        Assert.Throws<ArgumentException>(() => GemmMma.Linear(x, wrongK, null, y));
        using var f32Weight = Tensor.Zeros(cpu, DType.F32, new Shape(16, 8));
        Assert.Throws<ArgumentException>(() => GemmMma.Linear(x, f32Weight, null, y));
        using var wrongY = Tensor.Zeros(cpu, DType.F32, new Shape(4, 15));
        Assert.Throws<ArgumentException>(() => GemmMma.Linear(x, w, null, wrongY));
        Assert.False(GemmMma.Supports(w));
    }
}
