using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Elementwise
{
    private static NonFiniteCount CountNonFiniteIlgpu(IlgpuDevice device, Tensor x)
    {
        using var counts = Tensor.Zeros(device, DType.I32, new Shape(2));
        var k = device.Kernel(static acc => acc.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>>(CountNonFiniteKernel));
        k(LaunchCount(nameof(CountNonFinite), x.Count), x.AsView<float>(), counts.AsView<int>());
        var host = counts.ToArray<int>();
        return new NonFiniteCount(host[0], host[1]);
    }

    /// <summary>
    /// counts[0] += 1 for a NaN, counts[1] += 1 for ±∞. Only non-finite elements touch the counters, so a healthy
    /// tensor costs one read per element and no atomics. A launch covers at most int.MaxValue elements, so the I32
    /// counters cannot overflow.
    /// </summary>
    [IlgpuKernel]
    private static void CountNonFiniteKernel(Index1D i, ArrayView<float> x, ArrayView<int> counts)
    {
        uint bits = Interop.FloatAsInt(x[i]) & 0x7FFFFFFFu;
        if (bits > 0x7F800000u) Atomic.Add(ref counts[0], 1);
        else if (bits == 0x7F800000u) Atomic.Add(ref counts[1], 1);
    }
}
