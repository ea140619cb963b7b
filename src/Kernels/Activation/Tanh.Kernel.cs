using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Tanh
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor y)
    {
        var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(Kernel));
        kernel((int)x.Count, x.AsView<float>(), y.AsView<float>());
    }

    [IlgpuKernel]
    private static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = XMath.Tanh(x[i]);
}
