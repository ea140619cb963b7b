namespace PureFlux.Model.Flux2;

/// <summary>
/// Per-forward modulation vectors, computed once from the timestep embedding:
/// double img/txt [6, D] = (shift, scale, gate) for attention then MLP; single [3, D]; final (scale, shift) [2, D].
/// </summary>
internal sealed class Flux2Modulation : IDisposable
{
    public required Tensor DoubleImg { get; init; }
    public required Tensor DoubleTxt { get; init; }
    public required Tensor Single { get; init; }
    public required Tensor Final { get; init; }

    /// <summary>Row <paramref name="index"/> of a [n, D] modulation tensor, as a [D] view.</summary>
    public static Tensor Row(Tensor mod, int index) => mod.Slice(index, 1).Reshape(mod.Shape[1]);

    public void Dispose()
    {
        DoubleImg.Dispose();
        DoubleTxt.Dispose();
        Single.Dispose();
        Final.Dispose();
    }
}
