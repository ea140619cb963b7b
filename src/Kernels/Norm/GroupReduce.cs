using ILGPU;

namespace PureFlux.Kernels;

/// <summary>
/// Shared-memory tree reduction for "one group per row" kernels. Portable (no warp shuffles, so it is valid on
/// OpenCL and ILGPU's CPU accelerator); needs Group.DimX to be a power of two ≤ <see cref="MaxGroupSize"/>.
/// </summary>
internal static class GroupReduce
{
    public const int MaxGroupSize = 256;

    /// <summary>Sum of <paramref name="value"/> over the group; every thread gets the result.
    /// <paramref name="scratch"/> is a shared-memory view of at least Group.DimX floats.</summary>
    public static float Sum(ArrayView<float> scratch, float value)
    {
        int tid = Group.IdxX;
        scratch[tid] = value;
        Group.Barrier();
        for (int stride = Group.DimX >> 1; stride > 0; stride >>= 1)
        {
            if (tid < stride) scratch[tid] += scratch[tid + stride];
            Group.Barrier();
        }
        float total = scratch[0];
        // Everyone must have read scratch[0] before the next reduction overwrites it.
        Group.Barrier();
        return total;
    }
}
