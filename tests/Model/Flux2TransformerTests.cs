using PureFlux.Model.Config;
using PureFlux.Model.Flux2;
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

    private static float MaxAbs(float[] v) => v.Max(Math.Abs);
}
