namespace PureFlux.Kernels;

/// <summary>Token embedding lookup: y[s, :] = table[ids[s], :]. table: F32 or BF16 [V, D]; ids: I32 [S];
/// y: F32 [S, D]. Ids are checked against V on the host before anything runs.</summary>
public static partial class Embedding
{
    public static void Lookup(Tensor table, Tensor ids, Tensor y)
    {
        const string op = nameof(Embedding);
        Check.DType(op, "table", table, DType.F32, DType.BF16);
        Check.DType(op, "ids", ids, DType.I32);
        Check.DType(op, "y", y, DType.F32);
        Check.Rank(op, "table", table, 2);
        Check.Rank(op, "ids", ids, 1);
        int v = table.Shape[0], d = table.Shape[1], s = ids.Shape[0];
        Check.Shape(op, "y", y, s, d);
        var device = Check.SameDevice(op, table, ids, y);
        // Reading the ids back costs one small sync on a GPU; an out-of-range id would otherwise read garbage.
        int[] idValues = ids.ToArray<int>();
        for (int i = 0; i < idValues.Length; i++)
            if ((uint)idValues[i] >= (uint)v)
                throw new ArgumentOutOfRangeException(nameof(ids), $"{op}: ids[{i}] = {idValues[i]} is out of range for table {table.Name ?? "unnamed"} {table.Shape} (expected 0 ≤ id < {v})");
        if (y.Count == 0) return;
        switch (device)
        {
            case CpuDevice cpu: LookupCpu(cpu, table, idValues, y, d); break;
            case IlgpuDevice gpu: LookupIlgpu(gpu, table, ids, y, d); break;
        }
    }

    private static unsafe void LookupCpu(CpuDevice device, Tensor table, int[] ids, Tensor y, int d)
    {
        float* py = (float*)y.Pointer;
        bool bf16 = table.DType == DType.BF16;
        nint pt = table.Pointer;
        RowParallel.For(device, ids.Length, d, (first, count) =>
        {
            for (long s = first; s < first + count; s++)
            {
                var dst = new Span<float>(py + s * d, d);
                long rowStart = (long)ids[s] * d;
                if (bf16)
                    Bf16Widen.ToFloat(new ReadOnlySpan<ushort>((ushort*)pt + rowStart, d), dst);
                else
                    new ReadOnlySpan<float>((float*)pt + rowStart, d).CopyTo(dst);
            }
        });
    }
}
