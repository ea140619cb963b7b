using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Gelu
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor y, GeluApproximation approximation)
    {
        Check.That(x.Count <= int.MaxValue, nameof(Gelu), $"x has {x.Count} elements; at most {int.MaxValue} per launch");
        var k = approximation == GeluApproximation.Tanh
            ? device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(TanhKernel))
            : device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(ExactKernel));
        k((int)x.Count, x.AsView<float>(), y.AsView<float>());
    }

    /// <summary>tanh(u) written as 1 − 2/(e^{2u} + 1) through XMath.Exp, so no backend's approximate tanh is used;
    /// its absolute error (~1e-7) is what GELU's 1 + tanh needs.</summary>
    [IlgpuKernel]
    private static void TanhKernel(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[i];
        float u = SqrtTwoOverPi * v * (1f + Kappa * v * v);
        // Clamp: e^{2u} overflows past u ≈ 44; tanh is ±1 to float precision beyond |u| = 10.
        u = XMath.Clamp(u, -10f, 10f);
        float tanh = 1f - 2f / (XMath.Exp(2f * u) + 1f);
        y[i] = 0.5f * v * (1f + tanh);
    }

    [IlgpuKernel]
    private static void ExactKernel(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[i];
        float e = Erfc.OfNonNegative(XMath.Abs(v) * InvSqrt2);
        y[i] = 0.5f * v * (v >= 0f ? 2f - e : e);
    }
}
