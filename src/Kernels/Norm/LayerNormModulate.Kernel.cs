using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class LayerNormModulate
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor? shift, Tensor? scale, Tensor y, float eps)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        Check.That(rows <= int.MaxValue, nameof(LayerNormModulate), $"x has {rows} rows; at most {int.MaxValue} per launch");
        var config = new KernelConfig((int)rows, RowParallel.GroupSize(device, d));
        var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int>(Kernel));
        var xv = x.AsView<float>();
        // Plain LayerNorm passes x as a never-read stand-in for shift/scale.
        k(config, xv, shift?.AsView<float>() ?? xv, scale?.AsView<float>() ?? xv, y.AsView<float>(), d, eps, shift is null ? 0 : 1);
    }

    private static void ModulateIlgpu(IlgpuDevice device, Tensor x, Tensor shift, Tensor scale, Tensor y)
    {
        Check.That(x.Count <= int.MaxValue, nameof(LayerNormModulate), $"x has {x.Count} elements; at most {int.MaxValue} per launch");
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ModulateKernel));
        k((int)x.Count, x.AsView<float>(), shift.AsView<float>(), scale.AsView<float>(), y.AsView<float>(), x.Shape.Last);
    }

    /// <summary>One thread per element: y = (1 + scale[j]) · x + shift[j], j the column.</summary>
    [IlgpuKernel]
    private static void ModulateKernel(Index1D i, ArrayView<float> x, ArrayView<float> shift, ArrayView<float> scale, ArrayView<float> y, int d)
    {
        int j = i % d;
        y[i] = x[i] * (1f + scale[j]) + shift[j];
    }

    /// <summary>One group per row: mean, then centred variance (two reductions; the row is re-read from cache),
    /// then the normalised, optionally modulated write.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void Kernel(ArrayView<float> x, ArrayView<float> shift, ArrayView<float> scale, ArrayView<float> y,
        int d, float eps, int modulate)
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
        {
            float v = (x[rowStart + j] - mean) * rstd;
            y[rowStart + j] = modulate != 0 ? v * (1f + scale[j]) + shift[j] : v;
        }
    }
}
