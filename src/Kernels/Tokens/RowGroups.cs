namespace PureFlux.Kernels;

/// <summary>
/// Rows of a matrix with <see cref="SourceRows"/> rows, put into <see cref="Groups"/> groups: group g holds rows
/// members[offsets[g] .. offsets[g + 1]). Built once from host arrays, checked here (every group non-empty, every member in
/// range), so the kernels never read out of range and no launch has to read indices back. Groups of one row make a
/// gather (<see cref="Gather"/>). Used by token merging: a merge is a grouping of tokens, its unmerge a gather.
/// </summary>
public sealed class RowGrouping : IDisposable
{
    /// <param name="offsets">[G + 1], offsets[0] = 0, strictly increasing, offsets[G] = members.Length.</param>
    /// <param name="members">[M] row indices in [0, sourceRows).</param>
    public RowGrouping(Device device, int sourceRows, int[] offsets, int[] members)
    {
        const string op = nameof(RowGrouping);
        ArgumentNullException.ThrowIfNull(offsets);
        ArgumentNullException.ThrowIfNull(members);
        Check.That(sourceRows >= 1, op, $"source rows {sourceRows}; expected ≥ 1");
        Check.That(offsets.Length >= 2 && offsets[0] == 0 && offsets[^1] == members.Length, op,
            $"offsets must be [groups + 1] from 0 to members.Length = {members.Length}; got {offsets.Length} offsets, first {(offsets.Length > 0 ? offsets[0] : -1)}, last {(offsets.Length > 0 ? offsets[^1] : -1)}");
        for (int g = 0; g + 1 < offsets.Length; g++)
            Check.That(offsets[g + 1] > offsets[g], op, $"group {g} is empty (offsets[{g}] = {offsets[g]}, offsets[{g + 1}] = {offsets[g + 1]}); every group needs a row");
        for (int i = 0; i < members.Length; i++)
            Check.That((uint)members[i] < (uint)sourceRows, op, $"members[{i}] = {members[i]} is out of range (expected 0 ≤ row < {sourceRows})");
        SourceRows = sourceRows;
        HostOffsets = offsets;
        HostMembers = members;
        Offsets = Tensor.FromSpan<int>(device, offsets, new Shape(offsets.Length));
        Members = Tensor.FromSpan<int>(device, members, new Shape(members.Length));
    }

    /// <summary>Groups of one: y[i] = x[rows[i]].</summary>
    public static RowGrouping Gather(Device device, int sourceRows, int[] rows) =>
        new(device, sourceRows, Enumerable.Range(0, rows.Length + 1).ToArray(), rows);

    public int SourceRows { get; }
    public int Groups => HostOffsets.Count - 1;
    public Device Device => Offsets.Device;
    /// <summary>I32 [G + 1] and I32 [M] on the device (the ILGPU kernels read these).</summary>
    public Tensor Offsets { get; }
    public Tensor Members { get; }
    /// <summary>The same indices on the host (the cpu path reads these).</summary>
    public IReadOnlyList<int> HostOffsets { get; }
    public IReadOnlyList<int> HostMembers { get; }

    public void Dispose()
    {
        Offsets.Dispose();
        Members.Dispose();
    }
}

/// <summary>
/// y[g, :] = mean of x[r, :] over the rows r of group g (<see cref="RowGrouping"/>): x F32 [R, D], y F32 [G, D].
/// The sum runs in member order in float32, then divides once by the count, so a group of one copies its row exactly.
/// </summary>
public static partial class RowGroups
{
    public static void Mean(Tensor x, RowGrouping groups, Tensor y)
    {
        const string op = "RowGroups.Mean";
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.Rank(op, "x", x, 2);
        int d = x.Shape[1];
        Check.Shape(op, "x", x, groups.SourceRows, d);
        Check.Shape(op, "y", y, groups.Groups, d);
        Gemm.CheckNoOverlap(op, "y", y, "x", x);
        switch (Check.SameDevice(op, x, groups.Offsets, y))
        {
            case CpuDevice cpu: MeanCpu(cpu, x, groups, y, d); break;
            case IlgpuDevice gpu: MeanIlgpu(gpu, x, groups, y, d); break;
        }
    }

    private static unsafe void MeanCpu(CpuDevice device, Tensor x, RowGrouping groups, Tensor y, int d)
    {
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        var offsets = groups.HostOffsets;
        var members = groups.HostMembers;
        RowParallel.For(device, groups.Groups, d, (first, count) =>
        {
            for (long g = first; g < first + count; g++)
            {
                var dst = new Span<float>(py + g * d, d);
                int lo = offsets[(int)g], hi = offsets[(int)g + 1];
                new ReadOnlySpan<float>(px + (long)members[lo] * d, d).CopyTo(dst);
                for (int m = lo + 1; m < hi; m++)
                    TensorPrimitives.Add(dst, new ReadOnlySpan<float>(px + (long)members[m] * d, d), dst);
                if (hi - lo > 1) TensorPrimitives.Divide(dst, hi - lo, dst);
            }
        });
    }
}
