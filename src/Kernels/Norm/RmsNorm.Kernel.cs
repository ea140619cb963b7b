using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class RmsNorm
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor weight, Tensor y, float eps, Tensor? scale)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        Check.That(rows <= int.MaxValue, nameof(RmsNorm), $"x has {rows} rows; at most {int.MaxValue} per launch");
        var config = new KernelConfig((int)rows, RowParallel.GroupSize(device, d));
        if (scale is not null)
        {
            // Modulated norms take F32 norm weights (the loaders widen vectors); a BF16 one is widened here once.
            using var w32 = weight.DType == DType.F32 ? null : Tensor.FromSpan<float>(device, weight.ToFloatArray(), new Shape(d));
            var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(KernelScaled));
            k(config, x.AsView<float>(), (w32 ?? weight).AsView<float>(), scale.AsView<float>(), y.AsView<float>(), d, eps);
            return;
        }
        if (weight.DType == DType.F32)
        {
            var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(KernelF32Weight));
            k(config, x.AsView<float>(), weight.AsView<float>(), y.AsView<float>(), d, eps);
        }
        else
        {
            var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, float>(KernelBf16Weight));
            k(config, x.AsView<float>(), weight.AsView<ushort>(), y.AsView<float>(), d, eps);
        }
    }

    /// <summary>One group per row: strided sum of squares, shared-memory reduction, then the scaled write.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void KernelF32Weight(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, int d, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long rowStart = (long)Grid.IdxX * d;
        float inv = RowInverseRms(scratch, x, rowStart, d, eps);
        for (int j = Group.IdxX; j < d; j += Group.DimX)
            y[rowStart + j] = x[rowStart + j] * inv * weight[j];
    }

    /// <summary>As <see cref="KernelF32Weight"/>, then × (1 + scale[j]).</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void KernelScaled(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> scale, ArrayView<float> y, int d, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long rowStart = (long)Grid.IdxX * d;
        float inv = RowInverseRms(scratch, x, rowStart, d, eps);
        for (int j = Group.IdxX; j < d; j += Group.DimX)
            y[rowStart + j] = x[rowStart + j] * inv * weight[j] * (1f + scale[j]);
    }

    [IlgpuKernel(explicitlyGrouped: true)]
    private static void KernelBf16Weight(ArrayView<float> x, ArrayView<ushort> weight, ArrayView<float> y, int d, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long rowStart = (long)Grid.IdxX * d;
        float inv = RowInverseRms(scratch, x, rowStart, d, eps);
        for (int j = Group.IdxX; j < d; j += Group.DimX)
            y[rowStart + j] = x[rowStart + j] * inv * Interop.IntAsFloat((uint)weight[j] << 16);
    }

    private static float RowInverseRms(ArrayView<float> scratch, ArrayView<float> x, long rowStart, int d, float eps)
    {
        float sumSquares = 0f;
        for (int j = Group.IdxX; j < d; j += Group.DimX)
        {
            float v = x[rowStart + j];
            sumSquares += v * v;
        }
        sumSquares = GroupReduce.Sum(scratch, sumSquares);
        return 1f / XMath.Sqrt(sumSquares / d + eps);
    }
}
