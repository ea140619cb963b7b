using PureFlux.Model.Config;
using PureFlux.Model.Qwen3;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public class Qwen3TextEncoderTests
{
    // Four fp32 decoder layers: ~1e-4 relative to each tensor's max magnitude (golden README suggestion).
    private const double Tol = 2e-4;

    private static Qwen3Config TinyConfig => Qwen3Config.Load(Path.Combine(GoldenModel.ModelDir, "text_encoder", "config.json"));

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Encode_matches_transformers_layer_by_layer(string backend)
    {
        var dev = Backends.Get(backend);
        var g = GoldenModel.File("text_encoder_forward.safetensors");
        using var enc = new Qwen3TextEncoder(TinyConfig, GoldenModel.Loader(dev, "model/text_encoder/model.safetensors"), [1, 2, 3]);
        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        byte[] mask = g.ReadInt64("inputs.attention_mask").Select(v => (byte)v).ToArray();
        var trace = new GoldenModel.Trace();
        using var embeds = enc.Encode(dev, ids, mask, trace.Record);

        string[] names =
        [
            "hidden_states.0", "layer.0.input_layernorm", "layer.0.attn.q_proj", "layer.0.attn.k_proj", "layer.0.attn.v_proj",
            "layer.0.attn.q_norm", "layer.0.attn.k_norm", "layer.0.attn.o_proj", "layer.0.post_attention_layernorm",
            "layer.0.mlp", "layer.0.out", "layer.1.out", "layer.2.out", "hidden_states.1", "hidden_states.2", "hidden_states.3",
        ];
        foreach (var n in names) GoldenModel.AssertClose(g, trace, n, n, Tol, $"text encoder on {backend}");
        GoldenModel.AssertClose(g, trace, "prompt_embeds", "prompt_embeds", Tol, $"text encoder on {backend}");
        Assert.Equal(16 * 192, embeds.Count);
    }
}
