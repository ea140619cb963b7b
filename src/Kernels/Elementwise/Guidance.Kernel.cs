using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace PureFlux.Kernels;

public static partial class GuidanceOps
{
    private static int LaunchCount(string op, long count)
    {
        Check.That(count <= int.MaxValue, op, $"{count} elements; at most {int.MaxValue} per launch");
        return (int)count;
    }

    private static void ExtrapolateIlgpu(IlgpuDevice device, string op, Tensor cond, Tensor uncond, float scale, Tensor y, bool fromCond)
    {
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, float, ArrayView<float>, int>(ExtrapolateKernel));
        k(LaunchCount(op, cond.Count), cond.AsView<float>(), uncond.AsView<float>(), scale, y.AsView<float>(), fromCond ? 1 : 0);
    }

    private static void RowNormsIlgpu(IlgpuDevice device, Tensor x, Tensor norms, long rows, int c)
    {
        var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(RowNormsKernel));
        k(RowConfig(device, nameof(RowNorms), rows, c), x.AsView<float>(), norms.AsView<float>(), c);
    }

    private static void RowStdIlgpu(IlgpuDevice device, Tensor x, Tensor std, long rows, int c)
    {
        var k = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(RowStdKernel));
        k(RowConfig(device, nameof(RowStd), rows, c), x.AsView<float>(), std.AsView<float>(), c);
    }

    private static void ScaleRowsIlgpu(IlgpuDevice device, Tensor x, Tensor s, Tensor y, int c)
    {
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ScaleRowsKernel));
        k(LaunchCount(nameof(GuidanceOps) + "." + nameof(ScaleRows), x.Count), x.AsView<float>(), s.AsView<float>(), y.AsView<float>(), c);
    }

    private static void BlendRatioIlgpu(IlgpuDevice device, Tensor num, Tensor den, float mix, Tensor y)
    {
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, float, float, ArrayView<float>>(BlendRatioKernel));
        k(LaunchCount(nameof(GuidanceOps) + "." + nameof(BlendRatio), y.Count), num.AsView<float>(), den.AsView<float>(), mix, 1f - mix, y.AsView<float>());
    }

    private static void ClipRatioIlgpu(IlgpuDevice device, Tensor reference, Tensor norm, float limit, Tensor y)
    {
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, float, ArrayView<float>>(ClipRatioKernel));
        k(LaunchCount(nameof(GuidanceOps) + "." + nameof(ClipRatio), y.Count), reference.AsView<float>(), norm.AsView<float>(), limit, y.AsView<float>());
    }

    private static KernelConfig RowConfig(IlgpuDevice device, string op, long rows, int c)
    {
        Check.That(rows <= int.MaxValue, nameof(GuidanceOps) + "." + op, $"x has {rows} rows; at most {int.MaxValue} per launch");
        return new KernelConfig((int)rows, RowParallel.GroupSize(device, c));
    }

    /// <summary>
    /// y = b + s·(c − u) with b = c (fromCond = 1) or u. Each step is rounded to float32: on CUDA through
    /// <c>sub.rn / mul.rn / add.rn</c>, which ptxas may not contract into an FMA (it may fuse the plain forms ILGPU
    /// emits); OpenCL C and ILGPU's CPU accelerator do not contract across separate statements.
    /// </summary>
    [IlgpuKernel]
    private static void ExtrapolateKernel(Index1D i, ArrayView<float> c, ArrayView<float> u, float s, ArrayView<float> y, int fromCond)
    {
        float ci = c[i], ui = u[i];
        float b = fromCond != 0 ? ci : ui;
        float result;
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("sub.rn.f32 %0, %1, %2;", out float d, ci, ui);
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float p, s, d);
            CudaAsm.Emit("add.rn.f32 %0, %1, %2;", out result, b, p);
        }
        else
        {
            float d = ci - ui;
            float p = s * d;
            result = b + p;
        }
        y[i] = result;
    }

    /// <summary>One group per row: Kahan-compensated per-thread sums of squares, tree-combined, square-rooted.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void RowNormsKernel(ArrayView<float> x, ArrayView<float> norms, int c)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long rowStart = (long)Grid.IdxX * c;
        float total = GroupReduce.Sum(scratch, CompensatedSquares(x, rowStart, c, 0f));
        if (Group.IdxX == 0) norms[Grid.IdxX] = XMath.Sqrt(total);
    }

    /// <summary>One group per row: mean (compensated sum), then compensated centred squares / (C − 1).</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void RowStdKernel(ArrayView<float> x, ArrayView<float> std, int c)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long rowStart = (long)Grid.IdxX * c;
        float sum = 0f, comp = 0f;
        for (int j = Group.IdxX; j < c; j += Group.DimX)
        {
            float v = x[rowStart + j] - comp;
            float t = sum + v;
            comp = (t - sum) - v;
            sum = t;
        }
        float mean = GroupReduce.Sum(scratch, sum) / c;
        float centred = GroupReduce.Sum(scratch, CompensatedSquares(x, rowStart, c, mean));
        if (Group.IdxX == 0) std[Grid.IdxX] = XMath.Sqrt(centred / (c - 1));
    }

    /// <summary>This thread's Kahan-compensated Σ (x[j] − centre)² over j ≡ Group.IdxX (mod Group.DimX).</summary>
    private static float CompensatedSquares(ArrayView<float> x, long rowStart, int c, float centre)
    {
        float sum = 0f, comp = 0f;
        for (int j = Group.IdxX; j < c; j += Group.DimX)
        {
            float d = x[rowStart + j] - centre;
            float v = d * d - comp;
            float t = sum + v;
            comp = (t - sum) - v;
            sum = t;
        }
        return sum;
    }

    [IlgpuKernel]
    private static void ScaleRowsKernel(Index1D i, ArrayView<float> x, ArrayView<float> s, ArrayView<float> y, int c) =>
        y[i] = x[i] * s[i / c];

    [IlgpuKernel]
    private static void BlendRatioKernel(Index1D i, ArrayView<float> num, ArrayView<float> den, float mix, float keep, ArrayView<float> y)
    {
        float ratio = num[i] / den[i];
        float blended = mix * ratio;
        y[i] = blended + keep;
    }

    [IlgpuKernel]
    private static void ClipRatioKernel(Index1D i, ArrayView<float> reference, ArrayView<float> norm, float limit, ArrayView<float> y)
    {
        float max = reference[i] * limit, n = norm[i];
        y[i] = n > max ? max / n : 1f;
    }
}
