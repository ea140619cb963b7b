using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// The CPU device's kernel choices behind the experiment switches <c>gemm=naive|packed|parallel</c> and
/// <c>attention=flash|materialized</c>: every choice computes the same function (the GEMM levels bit-for-bit up to
/// summation order, within 1e-5 relative; attention within the fp32 tolerance of the golden tests), on every weight type.
/// </summary>
public class KernelSwitchTests
{
    [Theory]
    [InlineData("F32")]
    [InlineData("BF16")]
    [InlineData("F16")]
    public void Every_gemm_level_computes_the_same_linear(string weightType)
    {
        const int M = 37, N = 70, K = 129;
        var xd = HostData.Random(M * K, 1);
        var wd = HostData.Random(N * K, 2, 0.5f);
        var bd = HostData.Random(N, 3);
        float[]? expected = null;
        foreach (var level in new[] { CpuGemmLevel.Parallel, CpuGemmLevel.Packed, CpuGemmLevel.Naive })
        {
            using var dev = new CpuDevice(2) { GemmLevel = level };
            using var x = Tensor.FromArray(dev, xd, M, K);
            var (w, _) = GemmTests.HalfWeight(dev, wd, N, K, weightType);
            using var _w = w;
            using var b = Tensor.FromArray(dev, bd, N);
            using var y = Tensor.Empty(dev, DType.F32, M, N);
            Gemm.Linear(x, w, b, y);
            var got = y.ToFloatArray();
            if (expected is null) expected = got;
            else Compare.Close(expected, got, 1e-5f, 1e-5f, $"Gemm.Linear {weightType} at level {level}");
        }
    }

    [Fact]
    public void Materialized_attention_matches_flash_through_the_device_switch_in_place_too()
    {
        const int S = 150, H = 4, Hkv = 2, D = 40;
        var qd = HostData.Random(S * H * D, 4, 2f);
        var kd = HostData.Random(S * Hkv * D, 5, 2f);
        var vd = HostData.Random(S * Hkv * D, 6);
        float[] Run(CpuAttentionKernel kernel, bool inPlace)
        {
            using var dev = new CpuDevice(2) { AttentionKernel = kernel };
            using var q = Tensor.FromArray(dev, qd, S, H, D);
            using var k = Tensor.FromArray(dev, kd, S, Hkv, D);
            using var v = Tensor.FromArray(dev, vd, S, Hkv, D);
            using var o = inPlace ? null : Tensor.Empty(dev, DType.F32, S, H, D);
            Attention.Forward(q, k, v, o ?? q, new AttentionOptions { Causal = true });
            return (o ?? q).ToFloatArray();
        }
        var flash = Run(CpuAttentionKernel.Flash, false);
        Compare.Close(flash, Run(CpuAttentionKernel.Materialized, false), 2e-5f, 1e-6f, "materialized vs flash");
        Compare.Close(flash, Run(CpuAttentionKernel.Materialized, true), 2e-5f, 1e-6f, "materialized vs flash, o = q");
    }
}
