using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Rope
{
    private static void ApplyIlgpu(IlgpuDevice device, Tensor x, Tensor cos, Tensor sin, Tensor y, int h, int d, bool interleaved)
    {
        long pairs = x.Count / 2;
        Check.That(pairs <= int.MaxValue, nameof(Rope), $"x has {x.Count} elements; at most 2·{int.MaxValue} per launch");
        var k = interleaved
            ? device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(InterleavedKernel))
            : device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(RotateHalfKernel));
        k((int)pairs, x.AsView<float>(), cos.AsView<float>(), sin.AsView<float>(), y.AsView<float>(), h, d);
    }

    /// <summary>One thread per pair (2j, 2j+1) of one head row: both are read before either is written (y may alias x).</summary>
    [IlgpuKernel]
    private static void InterleavedKernel(Index1D i, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<float> y, int h, int d)
    {
        int half = d / 2;
        int row = i / half;
        int pair = i - row * half;
        long at = (long)row * d + 2 * pair;
        long table = (long)(row / h) * d + 2 * pair;
        float a = x[at], b = x[at + 1];
        y[at] = a * cos[table] - b * sin[table];
        y[at + 1] = b * cos[table + 1] + a * sin[table + 1];
    }

    /// <summary>One thread per pair (j, j + D/2) of one head row.</summary>
    [IlgpuKernel]
    private static void RotateHalfKernel(Index1D i, ArrayView<float> x, ArrayView<float> cos, ArrayView<float> sin, ArrayView<float> y, int h, int d)
    {
        int half = d / 2;
        int row = i / half;
        int j = i - row * half;
        long at = (long)row * d + j;
        long table = (long)(row / h) * d + j;
        float a = x[at], b = x[at + half];
        y[at] = a * cos[table] - b * sin[table];
        y[at + half] = b * cos[table + half] + a * sin[table + half];
    }
}
