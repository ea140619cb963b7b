using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class QuickGelu
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor y)
    {
        Check.That(x.Count <= int.MaxValue, nameof(QuickGelu), $"x has {x.Count} elements; at most {int.MaxValue} per launch");
        var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Kernel));
        kernel((int)x.Count, x.AsView<float>(), y.AsView<float>());
    }

    /// <summary>sigmoid(u) = 1 / (1 + e^{−u}); for u → −∞ the exponential is +∞ and the result 0 (no NaN).</summary>
    [IlgpuKernel]
    private static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[i];
        y[i] = v * (1f / (1f + XMath.Exp(-(Alpha * v))));
    }
}
