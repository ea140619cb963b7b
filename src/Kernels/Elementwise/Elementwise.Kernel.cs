using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Elementwise
{
    private static int LaunchCount(string what, long count)
    {
        Check.That(count <= int.MaxValue, nameof(Elementwise) + "." + what, $"{count} elements; at most {int.MaxValue} per launch");
        return (int)count;
    }

    private static void AddIlgpu(IlgpuDevice device, Tensor a, Tensor b, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel));
        k(LaunchCount(nameof(Add), a.Count), a.AsView<float>(), b.AsView<float>(), y.AsView<float>());
    }

    private static void MultiplyIlgpu(IlgpuDevice device, Tensor a, Tensor b, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(MultiplyKernel));
        k(LaunchCount(nameof(Multiply), a.Count), a.AsView<float>(), b.AsView<float>(), y.AsView<float>());
    }

    private static void AxpyIlgpu(IlgpuDevice device, float alpha, Tensor x, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, float, ArrayView<float>, ArrayView<float>>(AxpyKernel));
        k(LaunchCount(nameof(Axpy), x.Count), alpha, x.AsView<float>(), y.AsView<float>());
    }

    private static void ScaleIlgpu(IlgpuDevice device, Tensor x, float s, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(ScaleKernel));
        k(LaunchCount(nameof(Scale), x.Count), x.AsView<float>(), s, y.AsView<float>());
    }

    private static void AddScalarIlgpu(IlgpuDevice device, Tensor x, float c, Tensor y)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(AddScalarKernel));
        k(LaunchCount(nameof(AddScalar), x.Count), x.AsView<float>(), c, y.AsView<float>());
    }

    private static void CopyColumnsIlgpu(IlgpuDevice device, Tensor src, int c, int colStart, Tensor dst, int w, long rows)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, ArrayView<float>, int>(CopyColumnsKernel));
        k(LaunchCount(nameof(CopyColumns), rows * w), src.AsView<float>(), c, colStart, dst.AsView<float>(), w);
    }

    private static void WriteColumnsIlgpu(IlgpuDevice device, Tensor src, int w, Tensor dst, int c, int colStart, long rows)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, ArrayView<float>, int, int>(WriteColumnsKernel));
        k(LaunchCount(nameof(WriteColumns), rows * w), src.AsView<float>(), w, dst.AsView<float>(), c, colStart);
    }

    private static void TransposeIlgpu(IlgpuDevice device, Tensor x, Tensor y, int r, int c)
    {
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(TransposeKernel));
        k(LaunchCount(nameof(Transpose2d), x.Count), x.AsView<float>(), y.AsView<float>(), r, c);
    }

    [IlgpuKernel]
    private static void AddKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] + b[i];

    [IlgpuKernel]
    private static void MultiplyKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] * b[i];

    [IlgpuKernel]
    private static void AxpyKernel(Index1D i, float alpha, ArrayView<float> x, ArrayView<float> y) => y[i] += alpha * x[i];

    [IlgpuKernel]
    private static void ScaleKernel(Index1D i, ArrayView<float> x, float s, ArrayView<float> y) => y[i] = s * x[i];

    [IlgpuKernel]
    private static void AddScalarKernel(Index1D i, ArrayView<float> x, float c, ArrayView<float> y) => y[i] = x[i] + c;

    /// <summary>One thread per dst element: dst[r, j] = src[r, colStart + j].</summary>
    [IlgpuKernel]
    private static void CopyColumnsKernel(Index1D i, ArrayView<float> src, int c, int colStart, ArrayView<float> dst, int w)
    {
        long r = i / w;
        int j = i - (int)(r * w);
        dst[i] = src[r * c + colStart + j];
    }

    /// <summary>One thread per src element: dst[r, colStart + j] = src[r, j].</summary>
    [IlgpuKernel]
    private static void WriteColumnsKernel(Index1D i, ArrayView<float> src, int w, ArrayView<float> dst, int c, int colStart)
    {
        long r = i / w;
        int j = i - (int)(r * w);
        dst[r * c + colStart + j] = src[i];
    }

    /// <summary>One thread per output element (coalesced writes): y[j, i] = x[i, j], output index = j·R + i.</summary>
    [IlgpuKernel]
    private static void TransposeKernel(Index1D o, ArrayView<float> x, ArrayView<float> y, int r, int c)
    {
        int j = o / r;
        int i = o - j * r;
        y[o] = x[(long)i * c + j];
    }
}
