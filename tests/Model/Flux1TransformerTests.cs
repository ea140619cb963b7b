using PureFlux.Model.Flux1;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Kernels;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>The FLUX.1 transformer against diffusers' FluxTransformer2DModel (tests/golden/flux1/transformer_forward_{dev,schnell}).</summary>
public class Flux1TransformerTests
{
    // One fp32 forward: ≤ 2e-4 relative to each tensor's max magnitude (the sinusoidal embeddings of 1000·t and 3500
    // alone move ~1e-4 in float32).
    private const double Tol = 2e-4;

    private static string Repo(string kind) => Path.Combine(Golden.Dir, "flux1", "model", kind == "dev" ? "FLUX.1-dev" : "FLUX.1-schnell", "transformer");

    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var b in Backends.Ids)
            foreach (var k in new[] { "dev", "schnell" }) d.Add(b, k);
        return d;
    }

    [Fact]
    public void Config_reads_the_tiny_and_the_real_defaults()
    {
        var c = Flux1TransformerConfig.Load(Path.Combine(Repo("dev"), "config.json"));
        Assert.Equal((2, 4, 2, 32, 64, 32, 32, true), (c.NumLayers, c.NumSingleLayers, c.NumAttentionHeads, c.AttentionHeadDim, c.InnerDim, c.JointAttentionDim, c.PooledProjectionDim, c.GuidanceEmbeds));
        Assert.Equal([4, 14, 14], c.AxesDimsRope);
        var real = Flux1TransformerConfig.Parse("""{ "_class_name": "FluxTransformer2DModel", "guidance_embeds": true, "in_channels": 64, "num_layers": 19 }""");
        Assert.Equal((19, 38, 3072, 12288, 4096, 768, 64), (real.NumLayers, real.NumSingleLayers, real.InnerDim, real.MlpHiddenDim, real.JointAttentionDim, real.PooledProjectionDim, real.OutputChannels));
        Assert.Equal([16, 56, 56], real.AxesDimsRope);
    }

    [Theory]
    [InlineData("\"patch_size\": 2", "field 'patch_size' is 2; only 1 is supported")]
    [InlineData("\"axes_dims_rope\": [16, 56, 58]", "field 'axes_dims_rope' sums to 130; expected attention_head_dim = 128")]
    [InlineData("\"axes_dims_rope\": [16, 56, 40, 16]", "field 'axes_dims_rope' has 4 entries; FLUX.1 positions have 3 axes")]
    [InlineData("\"out_channels\": 32", "field 'out_channels' is 32; the sampler needs a prediction shaped like the input")]
    public void Bad_config_fields_are_named(string field, string expected)
    {
        var e = Assert.Throws<PureFlux.Model.Config.ModelConfigException>(() => Flux1TransformerConfig.Parse($$"""{ "in_channels": 64, {{field}} }""", "t/config.json"));
        Assert.StartsWith("t/config.json: " + expected, e.Message);
    }

    [Fact]
    public void Position_ids_put_text_first_and_the_kontext_reference_on_axis_0()
    {
        var ids = Flux1Transformer.PositionIds(2, 2, 3, 1, 2);
        Assert.Equal(new long[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2, 1, 0, 0, 1, 0, 1 }, ids);
    }

    [Theory, MemberData(nameof(Cases))]
    public void Forward_matches_diffusers_block_by_block(string backend, string kind)
    {
        var dev = Backends.Get(backend);
        var g = GoldenModel.File($"flux1/transformer_forward_{kind}.safetensors");
        var config = Flux1TransformerConfig.Load(Path.Combine(Repo(kind), "config.json"));
        using var weights = WeightSource.Open(Repo(kind), "diffusion_pytorch_model.safetensors", "transformer/diffusion_pytorch_model.safetensors");
        using var model = new Flux1Transformer(config, weights.Loader(dev));

        int imgLen = g.Entry("inputs.hidden_states").Shape[1], textLen = g.Entry("inputs.encoder_hidden_states").Shape[1];
        var imgIds = g.ReadFloats("inputs.img_ids");
        int rows = (int)imgIds.Where((_, i) => i % 3 == 1).Max() + 1, cols = imgLen / rows;
        var ids = Flux1Transformer.PositionIds(textLen, rows, cols);
        Assert.Equal(g.ReadFloats("inputs.txt_ids").Concat(imgIds), ids.Select(v => (float)v));
        var (cosH, sinH) = model.RopeTables(textLen, rows, cols);
        Compare.Close(g.ReadFloats("rope.cos"), cosH, 1e-6f, 1e-6f, "rope cos");
        Compare.Close(g.ReadFloats("rope.sin"), sinH, 1e-6f, 1e-6f, "rope sin");

        int hd = config.AttentionHeadDim;
        using var hidden = g.LoadF32("inputs.hidden_states", dev);
        using var text = g.LoadF32("inputs.encoder_hidden_states", dev);
        using var pooled = g.LoadF32("inputs.pooled_projections", dev);
        using var cos = Tensor.FromSpan<float>(dev, cosH, new Shape(cosH.Length / hd, hd));
        using var sin = Tensor.FromSpan<float>(dev, sinH, new Shape(sinH.Length / hd, hd));
        using var output = Tensor.Empty(dev, DType.F32, 1, imgLen, config.OutputChannels);
        var trace = new GoldenModel.Trace();
        float[] guidance = kind == "dev" ? g.ReadFloats("inputs.guidance") : [];
        model.Forward(hidden, text, pooled, g.ReadFloats("inputs.timestep"), guidance, cos, sin, output, trace.Record);

        var names = g.Names.Where(n => !n.StartsWith("inputs.", StringComparison.Ordinal) && !n.StartsWith("rope.", StringComparison.Ordinal)).ToArray();
        Assert.True(names.Length >= (kind == "dev" ? 48 : 19), $"only {names.Length} golden tensors");
        foreach (var n in names) GoldenModel.AssertClose(g, trace, n, n, Tol, $"{kind} transformer on {backend}");
    }

    /// <summary>A batch of 2 (different latents, text, timesteps, guidance) equals each sample alone, and the output may
    /// stop short of the input tokens (Kontext reference tokens are attended to, not projected out).</summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void A_batched_forward_equals_each_sample_alone(string backend)
    {
        var dev = Backends.Get(backend);
        var config = Flux1TransformerConfig.Load(Path.Combine(Repo("dev"), "config.json"));
        using var weights = WeightSource.Open(Repo("dev"), "diffusion_pytorch_model.safetensors", "transformer");
        using var model = new Flux1Transformer(config, weights.Loader(dev));
        const int b = 2, txt = 5, rows = 2, cols = 3, refRows = 2, refCols = 2, img = rows * cols + refRows * refCols, outLen = rows * cols;
        var (cosH, sinH) = model.RopeTables(txt, rows, cols, refRows, refCols);
        using var cos = Tensor.FromSpan<float>(dev, cosH, new Shape(txt + img, 32));
        using var sin = Tensor.FromSpan<float>(dev, sinH, new Shape(txt + img, 32));
        using var hidden = Tensor.FromSpan<float>(dev, HostData.Random(b * img * 64, 21), new Shape(b, img, 64));
        using var text = Tensor.FromSpan<float>(dev, HostData.Random(b * txt * 32, 22), new Shape(b, txt, 32));
        using var pooled = Tensor.FromSpan<float>(dev, HostData.Random(b * 32, 23), new Shape(b, 32));
        float[] t = [0.9f, 0.3f], gd = [3.5f, 1.5f];
        using var output = Tensor.Empty(dev, DType.F32, b, outLen, 64);
        model.Forward(hidden, text, pooled, t, gd, cos, sin, output);
        var all = output.ToFloatArray();
        int per = outLen * 64;
        for (int i = 0; i < b; i++)
        {
            using var one = Tensor.Empty(dev, DType.F32, 1, outLen, 64);
            model.Forward(hidden.Slice(i, 1), text.Slice(i, 1), pooled.Slice(i, 1), [t[i]], [gd[i]], cos, sin, one);
            var expected = one.ToFloatArray();
            Compare.Close(expected, all.AsSpan(i * per, per).ToArray(), 1e-5f, 1e-5f * expected.Max(Math.Abs), $"sample {i} on {backend}");
        }
    }
}
