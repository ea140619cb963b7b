namespace PureFlux.Kernels;

/// <summary>
/// Expands a learned relative-position table into an additive attention bias (T5):
/// bias[h, i, j] = table[bucketOfOffset[j − i + S_q − 1], h].
/// table: F32 or BF16 [buckets, H]; bucketOfOffset: I32 [S_q + S_k − 1], the bucket of each key − query offset
/// from −(S_q − 1) to S_k − 1 (computed by the model, which owns the bucketing rule); bias: F32 [H, S_q, S_k]
/// (the per-head bias <see cref="AttentionOptions.Bias"/> takes). Buckets are checked against the table on the host.
/// </summary>
public static partial class RelativePositionBias
{
    public static void Forward(Tensor table, Tensor bucketOfOffset, Tensor bias)
    {
        const string op = nameof(RelativePositionBias);
        Check.DType(op, "table", table, DType.F32, DType.BF16);
        Check.DType(op, "bucketOfOffset", bucketOfOffset, DType.I32);
        Check.DType(op, "bias", bias, DType.F32);
        Check.Rank(op, "table", table, 2);
        Check.Rank(op, "bucketOfOffset", bucketOfOffset, 1);
        Check.Rank(op, "bias", bias, 3);
        int buckets = table.Shape[0], heads = table.Shape[1];
        int sq = bias.Shape[1], sk = bias.Shape[2];
        Check.That(bias.Shape[0] == heads, op, $"bias has shape {bias.Shape}; expected [{heads}, S_q, S_k] (table {table.Shape} has {heads} heads)");
        Check.That(sq >= 1 && sk >= 1, op, $"bias has shape {bias.Shape}; expected at least one query and one key");
        Check.Shape(op, "bucketOfOffset", bucketOfOffset, sq + sk - 1);
        var device = Check.SameDevice(op, table, bucketOfOffset, bias);
        // A bucket outside the table would read another weight (or past the buffer): checked here, one small read back.
        int[] b = bucketOfOffset.ToArray<int>();
        for (int i = 0; i < b.Length; i++)
            if ((uint)b[i] >= (uint)buckets)
                throw new ArgumentOutOfRangeException(nameof(bucketOfOffset), $"{op}: bucketOfOffset[{i}] = {b[i]} is outside table {table.Name ?? "unnamed"} {table.Shape} (expected 0 ≤ bucket < {buckets})");
        using var profile = OpProfile.Start(op, bias);
        switch (device)
        {
            case CpuDevice cpu: ForwardCpu(cpu, table, b, bias, heads, sq, sk); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, table, bucketOfOffset, bias, heads, sq, sk); break;
        }
    }

    /// <summary>One row (h, i) per work item: a gather along the offsets j − i + S_q − 1 … of the table column h.</summary>
    private static unsafe void ForwardCpu(CpuDevice device, Tensor table, int[] bucketOfOffset, Tensor bias, int heads, int sq, int sk)
    {
        float[] t = table.ToFloatArray(); // [buckets, H], a few KB
        float* pb = (float*)bias.Pointer;
        RowParallel.For(device, (long)heads * sq, sk, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
            {
                int h = (int)(r / sq), i = (int)(r % sq);
                float* row = pb + r * sk;
                for (int j = 0; j < sk; j++) row[j] = t[bucketOfOffset[j - i + sq - 1] * heads + h];
            }
        });
    }
}
