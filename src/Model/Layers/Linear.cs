namespace PureFlux.Model.Layers;

/// <summary>Loads a named weight onto the device and checks its shape against what the config implies.</summary>
public delegate Tensor WeightLoader(string name, params int[] expectedShape);

/// <summary>How linear weights are held: as stored (BF16/F32), or quantized at load time (int8 / FP8 per output channel,
/// int4 in groups).</summary>
public enum QuantMode { None, Int8, Int4, Fp8E4M3, Fp8E5M2 }

/// <summary>The one spelling of quant modes everywhere (CLI options, experiment switches, snapshot metadata, bench).</summary>
public static class QuantModes
{
    /// <summary>Every mode's name, in enum order.</summary>
    public static readonly string[] Names = ["none", "int8", "int4", "fp8-e4m3", "fp8-e5m2"];

    public static string Name(this QuantMode mode) => Names[(int)mode];

    /// <summary>A name of <see cref="Names"/> (case-insensitive) → its mode.</summary>
    public static bool TryParse(string? name, out QuantMode mode)
    {
        int i = name is null ? -1 : Array.IndexOf(Names, name.ToLowerInvariant());
        mode = i < 0 ? QuantMode.None : (QuantMode)i;
        return i >= 0;
    }

    /// <summary>The FP8 format of a mode (null for the others).</summary>
    public static Fp8Format? Fp8(this QuantMode mode) => mode switch
    {
        QuantMode.Fp8E4M3 => Fp8Format.E4M3,
        QuantMode.Fp8E5M2 => Fp8Format.E5M2,
        _ => null,
    };
}

/// <summary>
/// y = x·Wᵀ (+ b) with W [out, in] as stored in the snapshot (BF16 stays BF16), or quantized: at load time when
/// <c>quant</c> asks for it, or already in the snapshot (a weight stored as I8/I4/F8_E4M3/F8_E5M2 with "&lt;prefix&gt;.weight_scale",
/// written by <c>pureflux quantize</c>), which is used as it is whatever <c>quant</c> says.
/// </summary>
public sealed class Linear : IDisposable
{
    /// <summary>Scales of a pre-quantized weight: F32 [out] (int8, fp8) or [out, in / group] (int4).</summary>
    public const string ScaleSuffix = ".weight_scale";

    [ThreadStatic] private static Action<string, QuantizedTensor>? _recorder;

    /// <summary>
    /// While the returned scope lives, every Linear that quantizes its weight at load time on this thread reports
    /// (prefix, quantized weight) to <paramref name="sink"/> — how <c>pureflux quantize</c> writes exactly the weights
    /// that <c>--quant</c> would quantize, bit for bit.
    /// </summary>
    public static IDisposable RecordQuantized(Action<string, QuantizedTensor> sink)
    {
        var previous = _recorder;
        _recorder = sink;
        return new Restore(previous);
    }

    private sealed class Restore(Action<string, QuantizedTensor>? previous) : IDisposable
    {
        public void Dispose() => _recorder = previous;
    }

    private readonly Tensor? _weight;
    private readonly QuantizedTensor? _quantized;
    private readonly Tensor? _bias;

    public Linear(WeightLoader load, string prefix, int inFeatures, int outFeatures, bool bias = false, QuantMode quant = QuantMode.None)
    {
        In = inFeatures;
        Out = outFeatures;
        var w = load(prefix + ".weight", outFeatures, inFeatures);
        if (w.DType is DType.I8 or DType.I4 or DType.F8E4M3 or DType.F8E5M2)
        {
            bool perRow = w.DType != DType.I4;
            int group = perRow ? inFeatures : Int4GroupSize(inFeatures);
            Tensor scales;
            // The loader checks the shape and names the tensor; a missing or misshaped scale is one line naming it.
            try { scales = perRow ? load(prefix + ScaleSuffix, outFeatures) : load(prefix + ScaleSuffix, outFeatures, inFeatures / group); }
            catch { w.Dispose(); throw; }
            try
            {
                if (scales.DType != DType.F32)
                    throw new ArgumentException($"{prefix + ScaleSuffix}: expected F32 scales for the {w.DType} weight, found {scales.DType}");
                _quantized = new QuantizedTensor(w, scales, group);
            }
            catch { w.Dispose(); scales.Dispose(); throw; }
        }
        else
        {
            switch (quant)
            {
                case QuantMode.Int8: _quantized = Quantize.Int8(w); w.Dispose(); break;
                // int4 needs whole groups of 32: a linear with another K (only tiny test models have one, e.g. T5 d_ff 80)
                // stays as stored instead of failing the whole model.
                case QuantMode.Int4 when inFeatures % 32 == 0: _quantized = Quantize.Int4(w, Int4GroupSize(inFeatures)); w.Dispose(); break;
                case QuantMode.Fp8E4M3 or QuantMode.Fp8E5M2: _quantized = Quantize.Fp8(w, quant.Fp8()!.Value); w.Dispose(); break;
                default: _weight = w; break;
            }
            if (_quantized is not null) _recorder?.Invoke(prefix, _quantized);
        }
        if (bias) _bias = load(prefix + ".bias", outFeatures);
    }

    public int In { get; }
    public int Out { get; }

    /// <summary>The int4 group size for a K: the largest of 128, 64, 32 that divides it.</summary>
    public static int Int4GroupSize(int k) => k % 128 == 0 ? 128 : k % 64 == 0 ? 64 : 32;

    /// <summary>x [M, In] → y [M, Out].</summary>
    public void Forward(Tensor x, Tensor y)
    {
        if (_quantized is not null) QuantizedGemm.Linear(x, _quantized, _bias, y);
        else Gemm.Linear(x, _weight!, _bias, y);
    }

    /// <summary>x [M, In] → a new pooled tensor [M, Out].</summary>
    public Tensor Forward(Tensor x)
    {
        var y = Tensor.Empty(x.Device, DType.F32, (int)x.Shape.Rows, Out);
        Forward(x, y);
        return y;
    }

    public void Dispose()
    {
        _weight?.Dispose();
        _quantized?.Dispose();
        _bias?.Dispose();
    }
}
