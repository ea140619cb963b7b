using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class GroupNorm
{
    private const int MaxGroupThreads = 256;

    // Three launches: per-channel (mean, M2) with one thread group per channel; per-group (mean, rstd);
    // then the element-wise affine (+ SiLU). The stats live in one small pooled tensor.
    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor weight, Tensor bias, Tensor y, int c, int hw, int groups, float eps, bool silu)
    {
        // The tree reduction wants a power-of-two group size (ILGPU's CPU accelerator allows only 16 threads).
        int threads = 1;
        while (threads * 2 <= Math.Min(MaxGroupThreads, device.Accelerator.MaxNumThreadsPerGroup)) threads *= 2;
        using var stats = Tensor.Empty(device, DType.F32, new Shape(2 * c + 2 * groups), "group_norm.stats");
        var all = stats.AsView<float>();
        var channelStats = all.SubView(0, 2 * c);
        var groupStats = all.SubView(2 * c, 2 * groups);
        var channelKernel = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(ChannelStatsKernel));
        channelKernel(new KernelConfig(c, threads), x.AsView<float>(), channelStats, hw);
        var groupKernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, float>(GroupStatsKernel));
        groupKernel(groups, channelStats, groupStats, c / groups, hw, eps);
        var applyKernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(ApplyKernel));
        applyKernel((int)x.Count, x.AsView<float>(), weight.AsView<float>(), bias.AsView<float>(), groupStats, y.AsView<float>(), hw, c / groups, silu ? 1 : 0);
    }

    /// <summary>Grid: one group per channel; stats[2c] = mean, stats[2c+1] = Σ (x − mean)² over the channel.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void ChannelStatsKernel(ArrayView<float> x, ArrayView<float> stats, int hw)
    {
        var partial = SharedMemory.Allocate<float>(MaxGroupThreads);
        int tid = Group.IdxX, n = Group.DimX;
        long start = (long)Grid.IdxX * hw;
        float sum = 0f;
        for (int i = tid; i < hw; i += n) sum += x[start + i];
        float mean = BlockSum(partial, sum, tid, n) / hw;
        float m2 = 0f;
        for (int i = tid; i < hw; i += n)
        {
            float d = x[start + i] - mean;
            m2 += d * d;
        }
        m2 = BlockSum(partial, m2, tid, n);
        if (tid == 0)
        {
            stats[2 * Grid.IdxX] = mean;
            stats[2 * Grid.IdxX + 1] = m2;
        }
    }

    /// <summary>Sum of <paramref name="value"/> over the group (n a power of two); every thread gets the result.</summary>
    private static float BlockSum(ArrayView<float> partial, float value, int tid, int n)
    {
        partial[tid] = value;
        Group.Barrier();
        for (int half = n / 2; half > 0; half /= 2)
        {
            if (tid < half) partial[tid] += partial[tid + half];
            Group.Barrier();
        }
        float total = partial[0];
        Group.Barrier(); // partial is reused by the next call
        return total;
    }

    /// <summary>groupStats[2g] = mean, [2g+1] = 1/sqrt(var + eps), combining the group's channels (Chan et al.).</summary>
    [IlgpuKernel]
    private static void GroupStatsKernel(Index1D g, ArrayView<float> channelStats, ArrayView<float> groupStats, int cpg, int hw, float eps)
    {
        float mean = 0f;
        for (int j = 0; j < cpg; j++) mean += channelStats[2 * (g * cpg + j)];
        mean /= cpg;
        float m2 = 0f;
        for (int j = 0; j < cpg; j++)
        {
            float d = channelStats[2 * (g * cpg + j)] - mean;
            m2 += channelStats[2 * (g * cpg + j) + 1] + hw * d * d;
        }
        groupStats[2 * g] = mean;
        groupStats[2 * g + 1] = XMath.Rsqrt(m2 / ((float)cpg * hw) + eps);
    }

    [IlgpuKernel]
    private static void ApplyKernel(Index1D i, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> groupStats,
        ArrayView<float> y, int hw, int cpg, int silu)
    {
        int ch = i / hw;
        int g = ch / cpg;
        float v = (x[i] - groupStats[2 * g]) * groupStats[2 * g + 1] * weight[ch] + bias[ch];
        if (silu != 0) v = v / (1f + XMath.Exp(-v));
        y[i] = v;
    }
}
