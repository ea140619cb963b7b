namespace PureFlux.Runtime;

/// <summary>Element types a <see cref="Tensor"/> can hold.</summary>
public enum DType
{
    F32,
    F16,
    /// <summary>bfloat16, stored as the upper 16 bits of an IEEE float (kernels see <c>ushort</c>).</summary>
    BF16,
    I8,
    /// <summary>Signed 4-bit integers, two per byte: element 2i in the low nibble, 2i+1 in the high nibble.</summary>
    I4,
    U8,
    I32,
    I64,
    /// <summary>8-bit float, OCP E4M3 (PyTorch float8_e4m3fn; safetensors "F8_E4M3"): bias 7, no inf, max 448 — see <see cref="Fp8"/>.</summary>
    F8E4M3,
    /// <summary>8-bit float, OCP E5M2 (PyTorch float8_e5m2; safetensors "F8_E5M2"): bias 15, inf/NaN, max 57344 — see <see cref="Fp8"/>.</summary>
    F8E5M2,
}

public static class DTypeInfo
{
    /// <summary>Bytes needed for <paramref name="count"/> elements (I4 packs two per byte, rounded up).</summary>
    public static long ByteCount(this DType dtype, long count) => dtype switch
    {
        DType.F32 or DType.I32 => count * 4,
        DType.F16 or DType.BF16 => count * 2,
        DType.I8 or DType.U8 or DType.F8E4M3 or DType.F8E5M2 => count,
        DType.I4 => (count + 1) / 2,
        DType.I64 => count * 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The safetensors spelling ("F32", "BF16", ...); I4 has none and is PureFlux's own.</summary>
    public static string SafetensorsName(this DType dtype) => dtype switch
    {
        DType.F32 => "F32", DType.F16 => "F16", DType.BF16 => "BF16", DType.I8 => "I8",
        DType.U8 => "U8", DType.I32 => "I32", DType.I64 => "I64", DType.I4 => "I4",
        DType.F8E4M3 => "F8_E4M3", DType.F8E5M2 => "F8_E5M2",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    public static bool TryParseSafetensors(string name, out DType dtype)
    {
        switch (name)
        {
            case "F32": dtype = DType.F32; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "I8": dtype = DType.I8; return true;
            case "U8": dtype = DType.U8; return true;
            case "BOOL": dtype = DType.U8; return true;
            case "I32": dtype = DType.I32; return true;
            case "I64": dtype = DType.I64; return true;
            case "I4": dtype = DType.I4; return true;
            case "F8_E4M3": dtype = DType.F8E4M3; return true;
            case "F8_E5M2": dtype = DType.F8E5M2; return true;
            default: dtype = default; return false;
        }
    }
}
