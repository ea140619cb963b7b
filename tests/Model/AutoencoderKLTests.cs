using PureFlux.Model.Config;
using PureFlux.Model.Vae;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// The AutoencoderKL kind of <see cref="AutoencoderKL"/> (16 latent channels, no quant_conv / post_quant_conv, latents
/// scaled and shifted) against diffusers on the Z-Image (tests/golden/zimage) and FLUX.1 (tests/golden/flux1) golden
/// VAEs, block by block, decode and encode, on every backend. The FLUX.2 kind is <see cref="Flux2VaeTests"/>.
/// </summary>
public class AutoencoderKLTests
{
    // A full fp32 VAE pass (~30 convolutions, GroupNorms, attention): 1e-4 relative to the tensor's max magnitude.
    private const double Tol = 1e-4;

    /// <summary>One golden set's file names: the two sets store the same computation under different names.</summary>
    public sealed record VaeSet(
        string Name, string ModelDir, string File,
        string Latents, string VaeInput, // the denoiser's latents → the decoder's input (latents / scaling + shift)
        string Mean, string Logvar, string Mode, string ImageLatents) // encode: moments, and (mode − shift) · scaling
    {
        public override string ToString() => Name;
    }

    private static readonly VaeSet ZImage = new("zimage", "zimage/model/vae", "zimage/vae_forward.safetensors",
        "dec.latents_model", "dec.input", "enc.latent_mean", "enc.latent_logvar", "enc.latent_mode", "enc.latents_model");

    // FLUX.1 stores no separate mode: it is the mean (Kontext takes it; the manifest's notes say so).
    private static readonly VaeSet Flux1 = new("flux1", "flux1/model/FLUX.1-dev/vae", "flux1/vae_forward.safetensors",
        "dec_pipeline.latents", "dec_pipeline.vae_input", "enc.mean", "enc.logvar", "enc.mean", "enc.pipeline_image_latents");

    public static TheoryData<string, string> Rows()
    {
        var rows = new TheoryData<string, string>();
        foreach (var set in new[] { ZImage.Name, Flux1.Name })
            foreach (var b in Backends.Ids) rows.Add(set, b);
        return rows;
    }

    private static VaeSet Set(string name) => name == ZImage.Name ? ZImage : Flux1;

    private static VaeConfig Config(VaeSet s) => VaeConfig.Load(Path.Combine(Golden.Dir, s.ModelDir, "config.json"));

    private static AutoencoderKL Open(VaeSet s, Device dev, bool withEncoder = true) =>
        new(Config(s), GoldenModel.Loader(dev, s.ModelDir + "/diffusion_pytorch_model.safetensors"), withEncoder);

    private static int[] Chw(SafetensorsFile g, string name)
    {
        var shape = g.Entry(name).Shape;
        return [shape[1], shape[2], shape[3]];
    }

    [Fact]
    public void Both_configs_are_the_no_quant_conv_16_channel_kind()
    {
        foreach (var s in new[] { ZImage, Flux1 })
        {
            var c = Config(s);
            Assert.Equal((VaeKind.AutoencoderKL, 16, false, false, true), (c.Kind, c.LatentChannels, c.UseQuantConv, c.UsePostQuantConv, c.MidBlockAddAttention));
            Assert.Equal((0.3611, (double?)0.1159), (c.ScalingFactor, c.ShiftFactor));
        }
    }

    [Theory, MemberData(nameof(Rows))]
    public void Decode_matches_diffusers_block_by_block(string set, string backend)
    {
        var s = Set(set);
        var dev = Backends.Get(backend);
        var g = GoldenModel.File(s.File);
        // The loader throws on any tensor the file lacks: no post_quant_conv or bn.* is asked for, nor the encoder.
        using var vae = Open(s, dev, withEncoder: false);
        Assert.Null(vae.Flux2Stats);

        // The pipelines' latents / scaling_factor + shift_factor: a true division, then an add — bit-exact to torch.
        var dims = Chw(g, s.Latents);
        using var latents = g.LoadF32(s.Latents, dev);
        using var input = Tensor.Empty(dev, DType.F32, dims[0], dims[1], dims[2]);
        vae.LatentsToVaeInput(latents.Reshape(dims), input);
        Assert.Equal(g.ReadFloats(s.VaeInput), input.ToFloatArray());

        // The decoder itself, from the set's own decoder input (FLUX.1 stores a separate dec.input).
        using var decInput = g.LoadF32("dec.input", dev);
        var trace = new GoldenModel.Trace();
        using var image = vae.Decode(decInput.Reshape(Chw(g, "dec.input")), trace.Record);
        Assert.DoesNotContain("dec.post_quant_conv", trace.Values.Keys);
        var names = new List<string> { "dec.conv_in", "dec.mid.resnet0", "dec.mid.attn0", "dec.mid" };
        for (int i = 0; i < 4; i++) names.AddRange([$"dec.up.{i}.resnet0", $"dec.up.{i}"]);
        names.Add("dec.output");
        foreach (var n in names)
            GoldenModel.AssertClose(g, trace, n, n, Tol, $"{set} VAE decode on {backend}");
    }

    [Theory, MemberData(nameof(Rows))]
    public void Encode_matches_diffusers_block_by_block(string set, string backend)
    {
        var s = Set(set);
        var dev = Backends.Get(backend);
        var g = GoldenModel.File(s.File);
        using var vae = Open(s, dev);
        using var image = g.LoadF32("enc.input", dev);
        var trace = new GoldenModel.Trace();
        using var moments = vae.EncodeMoments(image.Reshape(Chw(g, "enc.input")), trace.Record);
        Assert.DoesNotContain("enc.quant_conv", trace.Values.Keys);
        foreach (var n in new[] { "enc.conv_in", "enc.down.0", "enc.down.1", "enc.down.2", "enc.down.3", "enc.mid", "enc.conv_out" })
            GoldenModel.AssertClose(g, trace, n, n, Tol, $"{set} VAE encode on {backend}");

        // mean | logvar halves. diffusers clamps logvar to [−30, 20]; these goldens lie well inside, so raw = clamped.
        int c = vae.Config.LatentChannels;
        var expectedLogvar = g.ReadFloats(s.Logvar);
        Assert.True(expectedLogvar.All(v => v > -30 && v < 20));
        Assert.True(Compare.RelMaxError(expectedLogvar, moments.Slice(c, c).ToFloatArray()) <= Tol, $"{set} logvar on {backend}");

        using var mean = vae.EncodeMean(image.Reshape(Chw(g, "enc.input")));
        Assert.Equal(moments.Slice(0, c).ToFloatArray(), mean.ToFloatArray());
        Assert.True(Compare.RelMaxError(g.ReadFloats(s.Mean), mean.ToFloatArray()) <= Tol, $"{set} latent mean on {backend}");

        // The pipelines' image latents (mode − shift_factor) · scaling_factor: from our mean within the forward's tolerance,
        // and bit-exact to torch from the golden mode (in place: latents may alias mode).
        using var latents = Tensor.Empty(dev, DType.F32, mean.Shape);
        vae.VaeOutputToLatents(mean, latents);
        var expectedLatents = g.ReadFloats(s.ImageLatents);
        Assert.True(Compare.RelMaxError(expectedLatents, latents.ToFloatArray()) <= Tol, $"{set} image latents on {backend}");
        using var mode = g.LoadF32(s.Mode, dev);
        vae.VaeOutputToLatents(mode, mode);
        Assert.Equal(expectedLatents, mode.ToFloatArray());
    }

    [Fact]
    public void The_flux2_kind_has_statistics_and_no_scale_shift()
    {
        var dev = Backends.Get("cpu");
        var klein = VaeConfig.Load(Path.Combine(GoldenModel.ModelDir, "vae", "config.json"));
        Assert.Equal(VaeKind.AutoencoderKLFlux2, klein.Kind);
        using var vae = new AutoencoderKL(klein, GoldenModel.Loader(dev, "model/vae/diffusion_pytorch_model.safetensors"), withEncoder: false);
        Assert.NotNull(vae.Flux2Stats);
        Assert.Equal([128], vae.Flux2Stats.Mean.Shape.ToArray());
        using var z = Tensor.Zeros(dev, DType.F32, new Shape(32, 2, 2));
        var e = Assert.Throws<InvalidOperationException>(() => vae.LatentsToVaeInput(z, z));
        Assert.Contains("Flux2Stats", e.Message);
        Assert.Throws<InvalidOperationException>(() => vae.VaeOutputToLatents(z, z));
        Assert.Throws<InvalidOperationException>(() => vae.EncodeMean(z));
    }
}
