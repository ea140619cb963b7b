using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Softmax
{
    /// <summary>Most threads per group: one group per row; threads stride over the row and reduce in shared memory.
    /// The group is smaller where the accelerator allows fewer (ILGPU's CPU accelerator: 16).</summary>
    private const int MaxGroupSize = 128;

    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor y)
    {
        var kernel = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(RowKernel));
        int rows = checked((int)x.Shape.Rows);
        kernel(new KernelConfig(rows, GroupSizeFor(device, MaxGroupSize)), x.AsView<float>(), y.AsView<float>(), x.Shape.Last);
    }

    /// <summary>The largest power of two ≤ min(<paramref name="wanted"/>, the accelerator's threads per group).</summary>
    internal static int GroupSizeFor(IlgpuDevice device, int wanted)
    {
        int max = Math.Min(wanted, device.Accelerator.MaxNumThreadsPerGroup);
        int size = 1;
        while (size * 2 <= max) size *= 2;
        return size;
    }

    [IlgpuKernel(explicitlyGrouped: true)]
    private static void RowKernel(ArrayView<float> x, ArrayView<float> y, int n)
    {
        var red = SharedMemory.Allocate<float>(MaxGroupSize);
        int t = Group.IdxX, groupSize = Group.DimX; // a power of two
        long row = (long)Grid.IdxX * n;

        float m = float.NegativeInfinity;
        for (int j = t; j < n; j += groupSize) m = XMath.Max(m, x[row + j]);
        red[t] = m;
        Group.Barrier();
        for (int s = groupSize / 2; s > 0; s >>= 1)
        {
            if (t < s) red[t] = XMath.Max(red[t], red[t + s]);
            Group.Barrier();
        }
        m = red[0];
        Group.Barrier();

        float sum = 0f;
        for (int j = t; j < n; j += groupSize) sum += XMath.Exp(x[row + j] - m);
        red[t] = sum;
        Group.Barrier();
        for (int s = groupSize / 2; s > 0; s >>= 1)
        {
            if (t < s) red[t] += red[t + s];
            Group.Barrier();
        }
        float inv = 1f / red[0];
        // y may alias x: every read of x above finished before the last barrier.
        for (int j = t; j < n; j += groupSize) y[row + j] = XMath.Exp(x[row + j] - m) * inv;
    }
}
