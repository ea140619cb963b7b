using PureFlux.Model.Config;
using PureFlux.Model.Flux2;
using PureFlux.Tests.Kernels;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public class Flux2TransformerTests
{
    // One full transformer forward in fp32: the golden README suggests ~1e-4 relative to the tensor's max
    // magnitude (different summation orders in GEMM/attention; the timestep embedding alone moves ~1e-4·|x|).
    private const double Tol = 2e-4;

    private static Flux2TransformerConfig TinyConfig => Flux2TransformerConfig.Load(Path.Combine(GoldenModel.ModelDir, "transformer", "config.json"));

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Forward_matches_diffusers_block_by_block(string backend)
    {
        var dev = Backends.Get(backend);
        var g = GoldenModel.File("transformer_forward.safetensors");
        using var model = new Flux2Transformer(TinyConfig, GoldenModel.Loader(dev, "model/transformer/diffusion_pytorch_model.safetensors"));

        var (cosH, sinH) = model.RopeTables(16, 8, 8);
        Compare.Close(g.ReadFloats("rope.concat.cos"), cosH, 1e-6f, 1e-6f, "rope cos");
        Compare.Close(g.ReadFloats("rope.concat.sin"), sinH, 1e-6f, 1e-6f, "rope sin");

        using var hidden = g.LoadF32("inputs.hidden_states", dev);
        using var text = g.LoadF32("inputs.encoder_hidden_states", dev);
        using var cos = Tensor.FromSpan<float>(dev, cosH, new Shape(80, 32));
        using var sin = Tensor.FromSpan<float>(dev, sinH, new Shape(80, 32));
        using var output = Tensor.Empty(dev, DType.F32, 64, 128);
        var trace = new GoldenModel.Trace();
        model.Forward(hidden.Reshape(64, 128), text.Reshape(16, 192), g.ReadFloats("inputs.timestep")[0], cos, sin, output, trace.Record);

        string[] names =
        [
            "temb.time_proj", "temb.linear_1", "temb.out", "mod.double_img", "mod.double_txt", "mod.single",
            "embed.x", "embed.context", "double.0.norm1", "double.0.attn.q_normed", "double.0.attn.k_normed",
            "double.0.attn.q_rope", "double.0.attn.k_rope", "double.0.attn.sdpa_out", "double.0.attn.img", "double.0.attn.txt",
            "double.0.ff", "double.0.ff_context", "double.0.txt", "double.0.img", "double.1.txt", "double.1.img",
            "single.0.attn.to_qkv_mlp_proj", "single.0.attn.q_normed", "single.0.attn.k_rope", "single.0.attn.sdpa_out",
            "single.0.attn", "single.0", "single.1", "norm_out", "output",
        ];
        foreach (var n in names) GoldenModel.AssertClose(g, trace, n, n, Tol, $"transformer on {backend}");
        Compare.Close(g.ReadFloats("output"), output.ToFloatArray(), 1e-3f, 2e-4f * MaxAbs(g.ReadFloats("output")), $"output on {backend}");
    }

    /// <summary>
    /// A batch of 3 samples (different latents, text and timesteps) in one forward equals each sample alone: the
    /// per-sample modulation rows, attention and RoPE do not mix samples. GEMMs over 3× the rows may sum in another
    /// blocking order, so equality is to 1e-5 relative, not bitwise. The output may also stop short of the input's
    /// tokens (reference tokens are attended to, not projected out).
    /// </summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void A_batched_forward_equals_each_sample_alone(string backend)
    {
        var dev = Backends.Get(backend);
        using var model = new Flux2Transformer(TinyConfig, GoldenModel.Loader(dev, "model/transformer/diffusion_pytorch_model.safetensors"));
        const int b = 3, img = 20, txt = 7, outLen = 12;
        var (cosH, sinH) = model.RopeTables(txt, 4, 3, [new ReferenceGrid(10, 2, 4)]);
        using var cos = Tensor.FromSpan<float>(dev, cosH, new Shape(txt + img, 32));
        using var sin = Tensor.FromSpan<float>(dev, sinH, new Shape(txt + img, 32));
        var hiddenH = HostData.Random(b * img * 128, 11);
        var textH = HostData.Random(b * txt * 192, 12);
        float[] t = [0.9f, 0.5f, 0.1f];
        using var hidden = Tensor.FromSpan<float>(dev, hiddenH, new Shape(b, img, 128));
        using var text = Tensor.FromSpan<float>(dev, textH, new Shape(b, txt, 192));
        using var output = Tensor.Empty(dev, DType.F32, b, outLen, 128);
        model.Forward(hidden, text, t, cos, sin, output);
        var all = output.ToFloatArray();
        int per = outLen * 128;
        for (int i = 0; i < b; i++)
        {
            using var one = Tensor.Empty(dev, DType.F32, 1, img, 128);
            model.Forward(hidden.Slice(i, 1), text.Slice(i, 1), [t[i]], cos, sin, one);
            var expected = one.ToFloatArray().AsSpan(0, per).ToArray();
            Compare.Close(expected, all.AsSpan(i * per, per).ToArray(), 1e-5f, 1e-5f * MaxAbs(expected), $"sample {i} on {backend}");
        }
    }

    [Fact]
    public void Position_ids_put_references_after_the_image_with_their_own_time()
    {
        var ids = Flux2Transformer.PositionIds(2, 1, 2, [new ReferenceGrid(10, 1, 1), new ReferenceGrid(20, 2, 1)]);
        long[] expected =
        [
            0, 0, 0, 0, 0, 0, 0, 1, // text (0,0,0,l)
            0, 0, 0, 0, 0, 0, 1, 0, // image (0,h,w,0)
            10, 0, 0, 0, // reference 0
            20, 0, 0, 0, 20, 1, 0, 0, // reference 1
        ];
        Assert.Equal(expected, ids);
    }

    private static float MaxAbs(float[] v) => v.Max(Math.Abs);
}
