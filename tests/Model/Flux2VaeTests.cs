using PureFlux.Model.Config;
using PureFlux.Model.Vae;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>The FLUX.2 kind of <see cref="AutoencoderKL"/> (AutoencoderKLFlux2: quant convs, batch-norm statistics) against the klein golden set.</summary>
public class Flux2VaeTests
{
    // A full fp32 VAE pass (~30 convolutions, GroupNorms, attention): 1e-4 relative to max magnitude.
    private const double Tol = 2e-4;

    private static VaeConfig TinyConfig => VaeConfig.Load(Path.Combine(GoldenModel.ModelDir, "vae", "config.json"));

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Decode_matches_diffusers_block_by_block(string backend)
    {
        var dev = Backends.Get(backend);
        var g = GoldenModel.File("vae_forward.safetensors");
        using var vae = new AutoencoderKL(TinyConfig, GoldenModel.Loader(dev, "model/vae/diffusion_pytorch_model.safetensors"));
        using var latent = g.LoadF32("dec.input", dev);
        var trace = new GoldenModel.Trace();
        using var image = vae.Decode(latent.Reshape(32, 8, 8), trace.Record);
        foreach (var n in new[] { "dec.post_quant_conv", "dec.conv_in", "dec.mid.resnet0", "dec.mid.attn0", "dec.mid",
                     "dec.up.0.resnet0", "dec.up.0", "dec.up.1", "dec.up.2", "dec.up.3", "dec.output" })
            GoldenModel.AssertClose(g, trace, n, n, Tol, $"VAE decode on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Encode_matches_diffusers_block_by_block(string backend)
    {
        var dev = Backends.Get(backend);
        var g = GoldenModel.File("vae_forward.safetensors");
        using var vae = new AutoencoderKL(TinyConfig, GoldenModel.Loader(dev, "model/vae/diffusion_pytorch_model.safetensors"));
        using var input = g.LoadF32("enc.input", dev);
        var trace = new GoldenModel.Trace();
        using var mean = vae.EncodeMean(input.Reshape(3, 64, 64), trace.Record);
        foreach (var n in new[] { "enc.conv_in", "enc.down.0", "enc.down.1", "enc.down.2", "enc.down.3", "enc.mid", "enc.conv_out", "enc.quant_conv" })
            GoldenModel.AssertClose(g, trace, n, n, Tol, $"VAE encode on {backend}");
        Assert.True(Compare.RelMaxError(g.ReadFloats("enc.latent_mean"), mean.ToFloatArray()) <= Tol, "latent mean");

        // klein's image latents: patchify 2×2 then batch-norm normalise with the VAE's running statistics.
        using var patched = Tensor.Empty(dev, DType.F32, 128, 4, 4);
        Latents.Patchify(mean, patched);
        using var normed = Tensor.Empty(dev, DType.F32, 128, 4, 4);
        Assert.NotNull(vae.Flux2Stats);
        Assert.Equal(1e-4f, vae.Flux2Stats.Eps);
        vae.Flux2Stats.Normalize(patched, normed);
        Assert.True(Compare.RelMaxError(g.ReadFloats("enc.pipeline_image_latents"), normed.ToFloatArray()) <= Tol, "pipeline image latents");
    }
}
