using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Embedding
{
    private static void LookupIlgpu(IlgpuDevice device, Tensor table, Tensor ids, Tensor y, int d)
    {
        Check.That(y.Count <= int.MaxValue, nameof(Embedding), $"y has {y.Count} elements; at most {int.MaxValue} per launch");
        if (table.DType == DType.F32)
        {
            var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(KernelF32));
            k((int)y.Count, table.AsView<float>(), ids.AsView<int>(), y.AsView<float>(), d);
        }
        else
        {
            var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int>(KernelBf16));
            k((int)y.Count, table.AsView<ushort>(), ids.AsView<int>(), y.AsView<float>(), d);
        }
    }

    /// <summary>One thread per output element: y[s, j] = table[ids[s], j].</summary>
    [IlgpuKernel]
    private static void KernelF32(Index1D i, ArrayView<float> table, ArrayView<int> ids, ArrayView<float> y, int d)
    {
        int s = i / d;
        y[i] = table[(long)ids[s] * d + (i - s * d)];
    }

    [IlgpuKernel]
    private static void KernelBf16(Index1D i, ArrayView<ushort> table, ArrayView<int> ids, ArrayView<float> y, int d)
    {
        int s = i / d;
        y[i] = Interop.IntAsFloat((uint)table[(long)ids[s] * d + (i - s * d)] << 16);
    }
}
