using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class LayerNorm
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        Check.That(rows <= int.MaxValue, nameof(LayerNorm), $"x has {rows} rows; at most {int.MaxValue} per launch");
        var config = new KernelConfig((int)rows, RowParallel.GroupSize(device, d));
        var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(Kernel));
        k(config, x.AsView<float>(), weight.AsView<float>(), bias.AsView<float>(), y.AsView<float>(), d, eps);
    }

    /// <summary>One group per row: mean, then centred variance (the row is re-read from cache), then the affine write.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void Kernel(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y, int d, float eps)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long rowStart = (long)Grid.IdxX * d;
        float sum = 0f;
        for (int j = Group.IdxX; j < d; j += Group.DimX)
            sum += x[rowStart + j];
        float mean = GroupReduce.Sum(scratch, sum) / d;
        float centred = 0f;
        for (int j = Group.IdxX; j < d; j += Group.DimX)
        {
            float v = x[rowStart + j] - mean;
            centred += v * v;
        }
        float rstd = 1f / XMath.Sqrt(GroupReduce.Sum(scratch, centred) / d + eps);
        for (int j = Group.IdxX; j < d; j += Group.DimX)
            y[rowStart + j] = (x[rowStart + j] - mean) * rstd * weight[j] + bias[j];
    }
}
