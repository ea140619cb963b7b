using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

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

    /// <summary>
    /// y = a·x + b·z with both products rounded. On CUDA through <c>mul.rn / add.rn</c>, which ptxas may not contract
    /// into an FMA (it may fuse the plain mul/add ILGPU emits); OpenCL C and ILGPU's CPU accelerator do not contract
    /// across separate statements.
    /// </summary>
    [IlgpuKernel]
    private static void CombineKernel(Index1D i, float a, ArrayView<float> x, float b, ArrayView<float> z, ArrayView<float> y)
    {
        float xi = x[i], zi = z[i];
        float result;
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float p, a, xi);
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float q, b, zi);
            CudaAsm.Emit("add.rn.f32 %0, %1, %2;", out result, p, q);
        }
        else
        {
            float p = a * xi;
            float q = b * zi;
            result = p + q;
        }
        y[i] = result;
    }

    /// <summary>y = x / d, IEEE round-to-nearest (<c>div.rn.f32</c> on CUDA, never an approximate or reciprocal form).</summary>
    [IlgpuKernel]
    private static void DivideKernel(Index1D i, ArrayView<float> x, float d, ArrayView<float> y)
    {
        float xi = x[i];
        float result;
        if (CudaAsm.IsSupported) CudaAsm.Emit("div.rn.f32 %0, %1, %2;", out result, xi, d);
        else result = xi / d;
        y[i] = result;
    }
}
