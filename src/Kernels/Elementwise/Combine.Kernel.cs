using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Elementwise
{
    private static void CombineIlgpu(IlgpuDevice device, float a, Tensor x, float b, Tensor z, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, float, ArrayView<float>, float, ArrayView<float>, ArrayView<float>>(CombineKernel));
        k(LaunchCount(nameof(Combine), x.Count), a, x.AsView<float>(), b, z.AsView<float>(), y.AsView<float>());
    }

    private static void DivideIlgpu(IlgpuDevice device, Tensor x, float d, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(DivideKernel));
        k(LaunchCount(nameof(Divide), x.Count), x.AsView<float>(), d, y.AsView<float>());
    }

    /// <summary>y = a·x + b·z with both products rounded (the ILGPU CPU accelerator runs it as written; on CUDA, ptxas
    /// is free to contract an un-suffixed mul + add into an FMA, which can differ by an ulp).</summary>
    [IlgpuKernel]
    private static void CombineKernel(Index1D i, float a, ArrayView<float> x, float b, ArrayView<float> z, ArrayView<float> y)
    {
        float p = a * x[i];
        float q = b * z[i];
        y[i] = p + q;
    }

    [IlgpuKernel]
    private static void DivideKernel(Index1D i, ArrayView<float> x, float d, ArrayView<float> y) => y[i] = x[i] / d;
}
