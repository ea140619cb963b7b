using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class GatedResidual
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor gate, Tensor y)
    {
        Check.That(x.Count <= int.MaxValue, nameof(GatedResidual), $"x has {x.Count} elements; at most {int.MaxValue} per launch");
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Kernel));
        k((int)x.Count, x.AsView<float>(), gate.AsView<float>(), y.AsView<float>(), x.Shape.Last);
    }

    [IlgpuKernel]
    private static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> gate, ArrayView<float> y, int d)
    {
        x[i] += gate[i % d] * y[i];
    }
}
