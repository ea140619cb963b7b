using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class SwiGlu
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor y)
    {
        Check.That(y.Count <= int.MaxValue, nameof(SwiGlu), $"y has {y.Count} elements; at most {int.MaxValue} per launch");
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(Kernel));
        k((int)y.Count, x.AsView<float>(), y.AsView<float>(), y.Shape.Last);
    }

    private static void ForwardIlgpu(IlgpuDevice device, Tensor gate, Tensor up, Tensor y)
    {
        Check.That(y.Count <= int.MaxValue, nameof(SwiGlu), $"y has {y.Count} elements; at most {int.MaxValue} per launch");
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TwoInputKernel));
        k((int)y.Count, gate.AsView<float>(), up.AsView<float>(), y.AsView<float>());
    }

    /// <summary>One thread per element: y = silu(gate) · up.</summary>
    [IlgpuKernel]
    private static void TwoInputKernel(Index1D i, ArrayView<float> gate, ArrayView<float> up, ArrayView<float> y)
    {
        float g = gate[i];
        y[i] = g / (1f + XMath.Exp(-g)) * up[i];
    }

    /// <summary>One thread per output element: row r, column j reads x[r, j] (gate) and x[r, H + j] (up).</summary>
    [IlgpuKernel]
    private static void Kernel(Index1D i, ArrayView<float> x, ArrayView<float> y, int h)
    {
        int r = i / h;
        long gateIndex = (long)r * 2 * h + (i - r * h);
        float g = x[gateIndex];
        y[i] = g / (1f + XMath.Exp(-g)) * x[gateIndex + h];
    }
}
