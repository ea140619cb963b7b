namespace PureFlux.Kernels;

/// <summary>Splits row-wise CPU work across <see cref="CpuDevice.Threads"/> when it is large enough to pay for it.</summary>
internal static class RowParallel
{
    /// <summary>Below this many elements touched, one thread is faster than waking the pool (measured ~64K for
    /// memory-bound loops on Zen 4, as in Silu).</summary>
    public const long MinParallelElements = 1 << 16;

    /// <summary>Calls <paramref name="body"/>(firstRow, rowCount) over [0, rows), in parallel parts when
    /// rows·elementsPerRow is large.</summary>
    public static void For(CpuDevice device, long rows, long elementsPerRow, Action<long, long> body)
    {
        int parts = device.Threads;
        if (rows * elementsPerRow < MinParallelElements || parts == 1 || rows == 1)
        {
            body(0, rows);
            return;
        }
        parts = (int)Math.Min(parts, rows);
        Parallel.For(0, parts, device.ParallelOptions, p =>
        {
            var (start, count) = Partition.Range(rows, p, parts);
            if (count > 0) body(start, count);
        });
    }

    /// <summary>Grid/group sizes for "one group per row" ILGPU kernels: a power of two no larger than 256, the
    /// accelerator's limit, or the row length rounded up to a power of two.</summary>
    public static int GroupSize(IlgpuDevice device, int rowLength)
    {
        int limit = Math.Min(256, device.Accelerator.MaxNumThreadsPerGroup);
        int want = 1;
        while (want < rowLength && want < limit) want <<= 1;
        while (want > limit) want >>= 1;
        return Math.Max(1, want);
    }
}
