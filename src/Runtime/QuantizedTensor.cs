namespace PureFlux.Runtime;

/// <summary>
/// A weight matrix [N, K] stored as integers or 8-bit floats with float32 scales; value ≈ q · scale.
/// Int8: <see cref="Data"/> is I8 [N, K], one scale per output row (<see cref="GroupSize"/> = K).
/// Int4: <see cref="Data"/> is I4 [N, K] (two per byte, low nibble first), scales [N, K / GroupSize].
/// FP8: <see cref="Data"/> is F8E4M3 or F8E5M2 [N, K], one scale per output row (<see cref="GroupSize"/> = K).
/// </summary>
public sealed class QuantizedTensor : IDisposable
{
    public QuantizedTensor(Tensor data, Tensor scales, int groupSize)
    {
        if (data.Rank != 2) throw new ArgumentException($"quantized '{data.Name}': data must be [N, K], got {data.Shape}");
        if (data.DType is not (DType.I8 or DType.I4 or DType.F8E4M3 or DType.F8E5M2))
            throw new ArgumentException($"quantized '{data.Name}': data must be I8, I4, F8E4M3 or F8E5M2, got {data.DType}");
        if (scales.DType != DType.F32) throw new ArgumentException($"quantized '{data.Name}': scales must be F32, got {scales.DType}");
        int n = data.Shape[0], k = data.Shape[1];
        if (groupSize <= 0 || k % groupSize != 0) throw new ArgumentException($"quantized '{data.Name}': group size {groupSize} must divide K = {k}");
        if (data.DType is DType.F8E4M3 or DType.F8E5M2 && groupSize != k)
            throw new ArgumentException($"quantized '{data.Name}': {data.DType} has one scale per output row (group size K = {k}), got group size {groupSize}");
        if (scales.Count != (long)n * (k / groupSize))
            throw new ArgumentException($"quantized '{data.Name}': scales {scales.Shape} do not match [N={n}, K/group={k / groupSize}]");
        Data = data;
        Scales = scales;
        GroupSize = groupSize;
    }

    public Tensor Data { get; }
    public Tensor Scales { get; }
    public int GroupSize { get; }
    public int N => Data.Shape[0];
    public int K => Data.Shape[1];
    public Device Device => Data.Device;
    public string? Name => Data.Name;
    /// <summary>The FP8 format of <see cref="Data"/>, or null for integer data.</summary>
    public Fp8Format? Fp8 => Runtime.Fp8.FormatOf(Data.DType);

    public void Dispose()
    {
        Data.Dispose();
        Scales.Dispose();
    }
}
