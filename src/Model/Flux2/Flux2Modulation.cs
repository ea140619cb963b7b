namespace PureFlux.Model.Flux2;

/// <summary>
/// Per-forward modulation vectors, computed once from the timestep embedding:
/// double img/txt [B, 6, D] = (shift, scale, gate) for attention then MLP; single [B, 3, D]; final (scale, shift) [B, 2, D].
/// One row set per sample of the batch (samples may sit at different timesteps).
/// </summary>
internal sealed class Flux2Modulation : IDisposable
{
    private bool _view;

    /// <summary>Sample b's vectors as [6, D] / [3, D] / [2, D] views (not to be disposed).</summary>
    public Flux2Modulation Sample(int b) => new()
    {
        DoubleImg = PerSample(DoubleImg, b),
        DoubleTxt = PerSample(DoubleTxt, b),
        Single = PerSample(Single, b),
        Final = PerSample(Final, b),
        _view = true,
    };

    public int Batch => DoubleImg.Rank == 3 ? DoubleImg.Shape[0] : 1;

    private static Tensor PerSample(Tensor t, int b) => t.Rank == 3 ? t.Slice(b, 1).Reshape(t.Shape[1], t.Shape[2]) : t;

    public required Tensor DoubleImg { get; init; }
    public required Tensor DoubleTxt { get; init; }
    public required Tensor Single { get; init; }
    public required Tensor Final { get; init; }

    /// <summary>Row <paramref name="index"/> of a [n, D] modulation tensor, as a [D] view.</summary>
    public static Tensor Row(Tensor mod, int index) => mod.Slice(index, 1).Reshape(mod.Shape[1]);

    public void Dispose()
    {
        if (_view) return;
        DoubleImg.Dispose();
        DoubleTxt.Dispose();
        Single.Dispose();
        Final.Dispose();
    }
}
