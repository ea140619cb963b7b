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
