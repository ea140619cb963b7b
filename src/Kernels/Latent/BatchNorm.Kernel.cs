using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class BatchNorm
{
    private static void RunIlgpu(IlgpuDevice device, Tensor x, Tensor mean, Tensor variance, Tensor y, float eps, bool denormalize, int hw)
    {
        var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, int, int>(Kernel));
        kernel((int)x.Count, x.AsView<float>(), mean.AsView<float>(), variance.AsView<float>(), y.AsView<float>(), eps, hw, denormalize ? 1 : 0);
    }

    [IlgpuKernel]
    private static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> y,
        float eps, int hw, int denormalize)
    {
        int ch = i / hw;
        float std = XMath.Sqrt(variance[ch] + eps);
        y[i] = denormalize != 0 ? x[i] * std + mean[ch] : (x[i] - mean[ch]) / std;
    }
}
