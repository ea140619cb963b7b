namespace PureFlux.Kernels;

/// <summary>
/// Weight quantization for <see cref="QuantizedGemm"/>. Symmetric (no zero point); values are rounded to nearest,
/// so every weight's error is at most half its scale: |w − q·scale| ≤ scale / 2.
/// Quantization runs on the host (the weight is read back if it lives on an ILGPU device) and the result is
/// placed on the weight's device.
/// </summary>
public static class Quantize
{
    /// <summary>Int8, one scale per output channel: scale[n] = max_k |w[n, k]| / 127, q ∈ [−127, 127].
    /// weight: F32/F16/BF16 [N, K] on any device → data I8 [N, K], scales F32 [N].</summary>
    public static QuantizedTensor Int8(Tensor weight)
    {
        const string op = "Quantize.Int8";
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.Rank(op, "weight", weight, 2);
        int n = weight.Shape[0], k = weight.Shape[1];
        var w = weight.ToFloatArray();
        var q = new sbyte[(long)n * k];
        var scales = new float[n];
        Parallel.For(0, n, row =>
        {
            var src = w.AsSpan(row * k, k);
            float max = k == 0 ? 0f : Math.Abs(TensorPrimitives.MaxMagnitude(src));
            float scale = max / 127f;
            scales[row] = scale;
            float inv = max > 0f ? 127f / max : 0f;
            for (int i = 0; i < k; i++)
                q[(long)row * k + i] = (sbyte)Math.Clamp(MathF.Round(src[i] * inv), -127f, 127f);
        });
        var data = Tensor.FromSpan<sbyte>(weight.Device, q, new Shape(n, k), DType.I8, weight.Name);
        var s = Tensor.FromSpan<float>(weight.Device, scales, new Shape(n), DType.F32, (weight.Name ?? "weight") + ".scales");
        return new QuantizedTensor(data, s, k);
    }

    /// <summary>Int4, one scale per group of <paramref name="groupSize"/> (32, 64 or 128) consecutive k of an output
    /// channel: scale = max |w| / 7 over the group, q ∈ [−7, 7], two per byte (element 2i in the low nibble).
    /// weight: F32/F16/BF16 [N, K] (K a multiple of groupSize) → data I4 [N, K], scales F32 [N, K / groupSize].</summary>
    public static QuantizedTensor Int4(Tensor weight, int groupSize)
    {
        const string op = "Quantize.Int4";
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.Rank(op, "weight", weight, 2);
        Check.That(groupSize is 32 or 64 or 128, op, $"groupSize must be 32, 64 or 128, got {groupSize}");
        int n = weight.Shape[0], k = weight.Shape[1];
        Check.That(k % groupSize == 0, op, $"weight ({weight.Name ?? "unnamed"}) has K = {k}, not a multiple of groupSize {groupSize}");
        int groups = k / groupSize;
        var w = weight.ToFloatArray();
        var packed = new byte[(long)n * k / 2];
        var scales = new float[(long)n * groups];
        Parallel.For(0, n, row =>
        {
            for (int g = 0; g < groups; g++)
            {
                var src = w.AsSpan(row * k + g * groupSize, groupSize);
                float max = Math.Abs(TensorPrimitives.MaxMagnitude(src)); // MaxMagnitude keeps the sign
                scales[(long)row * groups + g] = max / 7f;
                float inv = max > 0f ? 7f / max : 0f;
                for (int i = 0; i < groupSize; i += 2)
                {
                    int lo = (int)Math.Clamp(MathF.Round(src[i] * inv), -7f, 7f);
                    int hi = (int)Math.Clamp(MathF.Round(src[i + 1] * inv), -7f, 7f);
                    packed[((long)row * k + g * groupSize + i) / 2] = (byte)((lo & 0xF) | ((hi & 0xF) << 4));
                }
            }
        });
        var data = Tensor.FromSpan<byte>(weight.Device, packed, new Shape(n, k), DType.I4, weight.Name);
        var s = Tensor.FromSpan<float>(weight.Device, scales, new Shape(n, groups), DType.F32, (weight.Name ?? "weight") + ".scales");
        return new QuantizedTensor(data, s, groupSize);
    }

    /// <summary>The dequantized weight q·scale as F32 [N, K] on the host (for references and tests).</summary>
    public static float[] Dequantize(QuantizedTensor w)
    {
        int n = w.N, k = w.K, g = w.GroupSize, groups = k / g;
        var scales = w.Scales.ToArray<float>();
        var result = new float[(long)n * k];
        if (w.Data.DType == DType.I8)
        {
            var q = w.Data.ToArray<sbyte>();
            for (long i = 0; i < result.Length; i++) result[i] = q[i] * scales[i / k];
        }
        else
        {
            var q = w.Data.ToArray<byte>();
            for (long i = 0; i < result.Length; i++)
            {
                long row = i / k, col = i % k;
                result[i] = Int4Value(q[i / 2], (int)(i & 1)) * scales[row * groups + col / g];
            }
        }
        return result;
    }

    /// <summary>The signed 4-bit value in nibble <paramref name="high"/> (0 = low) of a byte.</summary>
    internal static int Int4Value(byte b, int high) => ((b >> (4 * high)) & 0xF) is var v && v >= 8 ? v - 16 : v;
}
