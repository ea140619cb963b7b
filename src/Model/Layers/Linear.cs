namespace PureFlux.Model.Layers;

/// <summary>Loads a named weight onto the device and checks its shape against what the config implies.</summary>
public delegate Tensor WeightLoader(string name, params int[] expectedShape);

/// <summary>How linear weights are held: as stored (BF16/F32), or quantized at load time.</summary>
public enum QuantMode { None, Int8, Int4 }

/// <summary>y = x·Wᵀ (+ b) with W [out, in] as stored in the snapshot (BF16 stays BF16), or quantized.</summary>
public sealed class Linear : IDisposable
{
    private readonly Tensor? _weight;
    private readonly QuantizedTensor? _quantized;
    private readonly Tensor? _bias;

    public Linear(WeightLoader load, string prefix, int inFeatures, int outFeatures, bool bias = false, QuantMode quant = QuantMode.None)
    {
        In = inFeatures;
        Out = outFeatures;
        var w = load(prefix + ".weight", outFeatures, inFeatures);
        switch (quant)
        {
            case QuantMode.Int8: _quantized = Quantize.Int8(w); w.Dispose(); break;
            case QuantMode.Int4: _quantized = Quantize.Int4(w, Int4GroupSize(inFeatures)); w.Dispose(); break;
            default: _weight = w; break;
        }
        if (bias) _bias = load(prefix + ".bias", outFeatures);
    }

    public int In { get; }
    public int Out { get; }

    private static int Int4GroupSize(int k) => k % 128 == 0 ? 128 : k % 64 == 0 ? 64 : 32;

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
