using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// FlashAttentionMma (tensor-core attention, CUDA only) against a float64 reference computed from the BF16-rounded
/// q, k, v. The CUDA rows skip where no CUDA device exists (they have not run yet: written without a GPU; the index
/// logic is covered by CudaMmaFragmentTests and the code generation by CudaMmaPtxTests). Argument checks run everywhere.
/// </summary>
public class CudaMmaAttentionTests
{
    // Left after rounding q, k, v like the kernel: P rounded to BF16 before P·V (2⁻⁹ relative per weight, so up to
    // 2⁻⁹·max|v| in the output, ≈ 2e-3·max|v|), the row sum taken from unrounded P, ex2.approx (2 ulp) and FP32
    // accumulation. 6e-3·max|v| absolute (+1e-2 relative) covers that; a wrong key, column or row gives O(max|v|).
    private const float Rtol = 1e-2f, AtolOfMaxV = 6e-3f;

    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(70, 130, 4, 2)]     // ragged query block and key tile, grouped-query heads
    [InlineData(256, 333, 2, 2)]
    [InlineData(100, 64, 3, 1)]     // exactly one key tile, 3 q heads on one kv head
    public void Forward_matches_float64_reference_on_cuda(int sq, int sk, int hq, int hkv)
    {
        var dev = Backends.Get("cuda");
        const int d = FlashAttentionMma.HeadDim;
        var rng = new Random(sq * 7 + sk);
        float[] Rand(int n, double amp) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * amp); return a; }
        var qs = Rand(sq * hq * d, 2);
        var ks = Rand(sk * hkv * d, 2);
        var vs = Rand(sk * hkv * d, 1);
        using var q = Tensor.FromArray(dev, qs, sq, hq, d);
        using var k = Tensor.FromArray(dev, ks, sk, hkv, d);
        using var v = Tensor.FromArray(dev, vs, sk, hkv, d);
        using var o = new Guarded(dev, DType.F32, sq, hq, d);
        FlashAttentionMma.Forward(q, k, v, o);

        static double R(float x) => Bf16.ToFloat(Bf16.FromFloat(x));
        var expected = new float[sq * hq * d];
        double scale = 1 / Math.Sqrt(d);
        var logits = new double[sk];
        for (int h = 0; h < hq; h++)
        {
            int kvh = h / (hq / hkv);
            for (int i = 0; i < sq; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < sk; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += R(qs[(i * hq + h) * d + c]) * R(ks[(j * hkv + kvh) * d + c]);
                    logits[j] = dot * scale;
                    max = Math.Max(max, logits[j]);
                }
                double sum = 0;
                for (int j = 0; j < sk; j++) { logits[j] = Math.Exp(logits[j] - max); sum += logits[j]; }
                for (int c = 0; c < d; c++)
                {
                    double acc = 0;
                    for (int j = 0; j < sk; j++) acc += logits[j] * R(vs[(j * hkv + kvh) * d + c]);
                    expected[(i * hq + h) * d + c] = (float)(acc / sum);
                }
            }
        }
        string what = $"FlashAttentionMma Sq={sq} Sk={sk} Hq={hq} Hkv={hkv}";
        Compare.Close(expected, o.ToFloatArray(), Rtol, AtolOfMaxV * vs.Max(MathF.Abs), what);
        o.AssertIntact(what);
    }

    [Fact]
    public void Forward_rejects_non_cuda_devices_and_bad_shapes()
    {
        var cpu = Backends.Get("cpu");
        using var q = Tensor.Zeros(cpu, DType.F32, new Shape(4, 2, 128));
        using var kv = Tensor.Zeros(cpu, DType.F32, new Shape(8, 2, 128));
        using var o = Tensor.Zeros(cpu, DType.F32, new Shape(4, 2, 128));
        var e = Assert.Throws<ArgumentException>(() => FlashAttentionMma.Forward(q, kv, kv, o));
        Assert.Contains("CUDA", e.Message);
        using var q64 = Tensor.Zeros(cpu, DType.F32, new Shape(4, 2, 64));
        Assert.Throws<ArgumentException>(() => FlashAttentionMma.Forward(q64, kv, kv, o));
        using var kv3 = Tensor.Zeros(cpu, DType.F32, new Shape(8, 3, 128));
        Assert.Throws<ArgumentException>(() => FlashAttentionMma.Forward(q, kv3, kv3, o));
        using var oWrong = Tensor.Zeros(cpu, DType.F32, new Shape(5, 2, 128));
        Assert.Throws<ArgumentException>(() => FlashAttentionMma.Forward(q, kv, kv, oWrong));
        Assert.False(FlashAttentionMma.Supports(q, kv, kv, new AttentionOptions()));
    }
}
