namespace PureFlux.Model.Vae;

/// <summary>
/// AutoencoderKLFlux2's latent batch-norm running statistics (<c>bn.running_mean</c>, <c>bn.running_var</c>, each
/// [patch_h·patch_w·latent_channels] = [128]; affine-free, eval mode). FLUX.2 pipelines patchify the VAE's latents 2×2
/// and normalise them with these before the transformer, and undo it before decoding. Owned by the
/// <see cref="AutoencoderKL"/> that loaded them.
/// </summary>
public sealed class Flux2LatentStats
{
    internal Flux2LatentStats(Tensor mean, Tensor variance, float eps)
    {
        Mean = mean;
        Variance = variance;
        Eps = eps;
    }

    /// <summary>[P] running mean.</summary>
    public Tensor Mean { get; }
    /// <summary>[P] running variance.</summary>
    public Tensor Variance { get; }
    /// <summary>batch_norm_eps (1e-4).</summary>
    public float Eps { get; }

    /// <summary>patched VAE latents [P, h, w] → transformer latents [P, h, w]: (x − mean) / sqrt(var + eps). normed may alias patched.</summary>
    public void Normalize(Tensor patched, Tensor normed) => BatchNorm.Normalize(patched, Mean, Variance, normed, Eps);

    /// <summary>transformer latents [P, h, w] → patched VAE input [P, h, w]: x · sqrt(var + eps) + mean. patched may alias normed.</summary>
    public void Denormalize(Tensor normed, Tensor patched) => BatchNorm.Denormalize(normed, Mean, Variance, patched, Eps);
}
