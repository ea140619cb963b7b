using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Layers;

public static class WeightLoaders
{
    /// <summary>
    /// Loads weights from a snapshot part onto <paramref name="device"/>, checking each shape against the config's.
    /// Matrices and conv kernels stay in their stored dtype (BF16 is consumed as is by GEMM/conv); vectors —
    /// biases, norm weights, batch-norm statistics — are converted to F32 (they are tiny, and every op takes them so).
    /// </summary>
    public static WeightLoader Loader(this WeightSource source, Device device) => (name, shape) =>
    {
        var entry = source.Expect(name, shape);
        return shape.Length <= 1 && entry.DType != DType.F32 ? source.LoadF32(name, device) : source.Load(name, device);
    };
}

/// <summary>Loader adapters shared by the families.</summary>
public static class WeightLoaderAdapters
{
    /// <summary>
    /// Falls back to the name without <paramref name="prefix"/> when the weights lack it: a transformers checkpoint
    /// saved from the bare model (<c>Qwen3Model</c>: "layers.0...") instead of the causal-LM wrapper ("model.layers.0...").
    /// </summary>
    public static WeightLoader WithOptionalPrefix(this WeightLoader load, WeightSource source, string prefix) => (name, shape) =>
        !source.Contains(name) && name.StartsWith(prefix, StringComparison.Ordinal) && source.Contains(name[prefix.Length..])
            ? load(name[prefix.Length..], shape)
            : load(name, shape);

    /// <summary>
    /// Each tensor loaded on the cpu device is mapped into the page tables at once (<see cref="ResidentPages.Populate"/>),
    /// so the first pass over the weights does not take a page fault per 64 KiB. Only for weights that are used in place
    /// and fit in memory (not streamed block by block, not quantized at load): populating raises the resident set to
    /// what the first pass would reach anyway. <paramref name="enabled"/> false returns the loader unchanged (the
    /// experiment switch <c>populate-weights=off</c>).
    /// </summary>
    public static WeightLoader Populating(this WeightLoader load, bool enabled = true) => !enabled ? load : (name, shape) =>
    {
        var t = load(name, shape);
        if (t.Device is CpuDevice) ResidentPages.Populate(t.Pointer, t.ByteCount);
        return t;
    };

    /// <summary>
    /// F32 matrices (rank ≥ 2) become BF16 copies as they load, and the F32 view is released at once (its pages leave
    /// the resident set), so an FP32 checkpoint larger than memory loads at half its size, one tensor at a time.
    /// Vectors stay F32. Round-to-nearest-even, as PyTorch's <c>.to(torch.bfloat16)</c>.
    /// </summary>
    public static WeightLoader ConvertingF32MatricesToBf16(this WeightLoader load, Device device) => (name, shape) =>
    {
        var t = load(name, shape);
        if (t.DType != DType.F32 || t.Rank < 2) return t;
        using (t)
        {
            var bf = Tensor.Empty(device, DType.BF16, t.Shape, name);
            try
            {
                if (t.Device is CpuDevice && bf.Device is CpuDevice) Bf16Convert(t.AsSpan<float>(), bf.AsSpan<ushort>());
                else
                {
                    var src = t.ToFloatArray();
                    var dst = new ushort[src.Length];
                    Bf16Convert(src, dst);
                    bf.CopyFrom<ushort>(dst);
                }
            }
            catch { bf.Dispose(); throw; }
            return bf;
        }
    };

    /// <summary>
    /// The weights of <paramref name="fused"/> (<c>.weight</c>, and <c>.weight_scale</c> of pre-quantized layers) are the
    /// rows of <paramref name="parts"/>' stacked in order: Q, K, V projections loaded as one [3D, D] matrix, so one GEMM
    /// computes all three (the experiment switch <c>fused-qkv</c>). Stored dtype kept (BF16, or the int8 / int4 rows
    /// with their per-row scales), on the parts' device; their mapped pages are copied once into device memory. Other names pass through.
    /// </summary>
    public static WeightLoader StackingRows(this WeightLoader load, string fused, params string[] parts) => (name, shape) =>
    {
        if (!name.StartsWith(fused + ".", StringComparison.Ordinal) || shape.Length == 0 || shape[0] % parts.Length != 0)
            return load(name, shape);
        string suffix = name[fused.Length..];
        var partShape = shape.ToArray();
        partShape[0] /= parts.Length;
        Tensor? stacked = null;
        try
        {
            for (int i = 0; i < parts.Length; i++)
            {
                using var part = load(parts[i] + suffix, partShape);
                stacked ??= Tensor.Empty(part.Device, part.DType, new Shape(shape), name);
                part.CopyTo(stacked.Slice(i * partShape[0], partShape[0]));
            }
            return stacked!;
        }
        catch { stacked?.Dispose(); throw; }
    };

    private static void Bf16Convert(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        for (int i = 0; i < src.Length; i++) dst[i] = Bf16.FromFloat(src[i]);
    }
}
