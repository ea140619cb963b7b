using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class RowGroups
{
    private static void MeanIlgpu(IlgpuDevice device, Tensor x, RowGrouping groups, Tensor y, int d)
    {
        Check.That(y.Count <= int.MaxValue, "RowGroups.Mean", $"y has {y.Count} elements; at most {int.MaxValue} per launch");
        if (y.Count == 0) return;
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, int>(MeanKernel));
        k((int)y.Count, x.AsView<float>(), groups.Offsets.AsView<int>(), groups.Members.AsView<int>(), y.AsView<float>(), d);
    }

    /// <summary>One thread per output element: the group's rows summed in member order, then divided by their count.</summary>
    [IlgpuKernel]
    private static void MeanKernel(Index1D i, ArrayView<float> x, ArrayView<int> offsets, ArrayView<int> members, ArrayView<float> y, int d)
    {
        int g = i / d, j = i - g * d;
        int lo = offsets[g], hi = offsets[g + 1];
        float sum = x[(long)members[lo] * d + j];
        for (int m = lo + 1; m < hi; m++) sum += x[(long)members[m] * d + j];
        y[i] = hi - lo > 1 ? sum / (hi - lo) : sum;
    }
}
