using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class RelativePositionBias
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor table, Tensor bucketOfOffset, Tensor bias, int heads, int sq, int sk)
    {
        Check.That(bias.Count <= int.MaxValue, nameof(RelativePositionBias), $"bias has {bias.Count} elements; at most {int.MaxValue} per launch");
        if (table.DType == DType.F32)
        {
            var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int>(KernelF32));
            k((int)bias.Count, table.AsView<float>(), bucketOfOffset.AsView<int>(), bias.AsView<float>(), heads, sq, sk);
        }
        else
        {
            var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int, int, int>(KernelBf16));
            k((int)bias.Count, table.AsView<ushort>(), bucketOfOffset.AsView<int>(), bias.AsView<float>(), heads, sq, sk);
        }
    }

    /// <summary>One thread per bias element (h, i, j).</summary>
    [IlgpuKernel]
    private static void KernelF32(Index1D e, ArrayView<float> table, ArrayView<int> bucketOfOffset, ArrayView<float> bias, int heads, int sq, int sk)
    {
        int j = e % sk, row = e / sk;
        int i = row % sq, h = row / sq;
        bias[e] = table[(long)bucketOfOffset[j - i + sq - 1] * heads + h];
    }

    [IlgpuKernel]
    private static void KernelBf16(Index1D e, ArrayView<ushort> table, ArrayView<int> bucketOfOffset, ArrayView<float> bias, int heads, int sq, int sk)
    {
        int j = e % sk, row = e / sk;
        int i = row % sq, h = row / sq;
        bias[e] = Interop.IntAsFloat((uint)table[(long)bucketOfOffset[j - i + sq - 1] * heads + h] << 16);
    }
}
