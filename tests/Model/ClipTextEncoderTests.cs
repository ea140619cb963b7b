using PureFlux.Model.Clip;
using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>The FLUX.1 CLIP-L text encoder against transformers' CLIPTextModel (tests/golden/flux1/clip_forward).</summary>
public class ClipTextEncoderTests
{
    // Three fp32 layers on 77 positions: ≤ 2e-4 relative to each tensor's max magnitude.
    private const double Tol = 2e-4;

    private static string Dir(string repo = "FLUX.1-dev") => Path.Combine(Golden.Dir, "flux1", "model", repo, "text_encoder");
    private static ClipTextConfig TinyConfig => ClipTextConfig.Load(Path.Combine(Dir(), "config.json"));
    private static SafetensorsFile Forward => GoldenModel.File("flux1/clip_forward.safetensors");
    private static int[] Ids(string name) => Forward.ReadInt64(name).Select(v => (int)v).ToArray();

    [Fact]
    public void Config_reads_the_real_flags()
    {
        var c = TinyConfig;
        Assert.Equal((1000, 32, 128, 3, 2, 16, 77), (c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.HeadDim, c.MaxPositionEmbeddings));
        Assert.Equal((1e-5, "quick_gelu", 2, "float32"), (c.LayerNormEps, c.HiddenAct, c.EosTokenId, c.DType));
    }

    private const string ClipL = """
        { "model_type": "clip_text_model", "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
          "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
          "layer_norm_eps": 1e-05, "eos_token_id": 2, "torch_dtype": "bfloat16" }
        """;

    [Theory]
    [InlineData("\"hidden_size\": 768,", "", "missing field 'hidden_size'")]
    [InlineData("\"num_attention_heads\": 12", "\"num_attention_heads\": 7", "field 'num_attention_heads' is 7; it must divide hidden_size = 768")]
    [InlineData("\"hidden_act\": \"quick_gelu\"", "\"hidden_act\": \"gelu\"", "field 'hidden_act' is \"gelu\"; only \"quick_gelu\" (CLIP-L) is supported")]
    [InlineData("\"model_type\": \"clip_text_model\"", "\"model_type\": \"clip\"", "field 'model_type' is \"clip\"; expected \"clip_text_model\" (a CLIPTextModel config)")]
    [InlineData("\"eos_token_id\": 2", "\"eos_token_id\": -1", "field 'eos_token_id' is -1; expected an integer >= 0")]
    [InlineData("\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": 0", "field 'layer_norm_eps' is 0; expected a number > 0")]
    public void Config_bad_fields_are_named(string from, string to, string expected)
    {
        Assert.Contains(from, ClipL);
        var e = Assert.Throws<ModelConfigException>(() => ClipTextConfig.Parse(ClipL.Replace(from, to), "te/config.json"));
        Assert.Equal("te/config.json: " + expected, e.Message);
    }

    [Fact]
    public void Config_defaults_are_transformers_defaults()
    {
        var c = ClipTextConfig.Parse("""{ "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2 }""");
        Assert.Equal((77, 1e-5, "quick_gelu", 49407), (c.MaxPositionEmbeddings, c.LayerNormEps, c.HiddenAct, c.EosTokenId));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Encode_matches_transformers_layer_by_layer(string backend)
    {
        var dev = Backends.Get(backend);
        using var weights = WeightSource.Open(Dir(), "model.safetensors", "text_encoder/model.safetensors");
        using var enc = new ClipTextEncoder(TinyConfig, weights.Loader(dev));
        var trace = new GoldenModel.Trace();
        using var output = enc.Encode(dev, Ids("inputs.input_ids"), trace.Record);

        string[] names =
        [
            "embeddings.token", "embeddings", "layer.0.layer_norm1", "layer.0.attn.q_proj", "layer.0.attn.k_proj", "layer.0.attn.v_proj",
            "layer.0.attn.out", "layer.0.layer_norm2", "layer.0.mlp.fc1", "layer.0.mlp.act", "layer.0.mlp", "layer.0.out",
            "layer.1.out", "layer.2.out", "final_layer_norm", "last_hidden_state", "pooled_output",
        ];
        foreach (var n in names) GoldenModel.AssertClose(Forward, trace, n, n, Tol, $"CLIP on {backend}");
        Assert.Equal(Forward.ReadInt64("pooled_index")[0], output.PooledIndex);
        Assert.Equal(11, output.PooledIndex); // BOS + 10 tokens, then the first EOS
        Assert.Equal(new Shape(32), output.Pooled.Shape);
        Assert.Equal(new Shape(77, 32), output.LastHiddenState.Shape);
    }

    /// <summary>A full row (BOS + 75 tokens + EOS, what truncation gives) pools at 76.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Full_row_pools_at_the_last_position(string backend)
    {
        var dev = Backends.Get(backend);
        using var weights = WeightSource.Open(Dir(), "model.safetensors");
        using var enc = new ClipTextEncoder(TinyConfig, weights.Loader(dev));
        using var output = enc.Encode(dev, Ids("full.inputs.input_ids"));
        Assert.Equal(76, output.PooledIndex);
        Assert.Equal(Forward.ReadInt64("full.pooled_index")[0], output.PooledIndex);
        Assert.True(Compare.RelMaxError(Forward.ReadFloats("full.last_hidden_state"), output.LastHiddenState.ToFloatArray()) <= Tol);
        Assert.True(Compare.RelMaxError(Forward.ReadFloats("full.pooled_output"), output.Pooled.ToFloatArray()) <= Tol);
    }

    [Fact]
    public void Pooled_index_follows_transformers_rule()
    {
        var legacy = TinyConfig; // eos_token_id 2: the first occurrence of the highest id
        Assert.Equal(2, ClipTextEncoder.PooledIndex(legacy, [998, 5, 999, 999, 999]));
        Assert.Equal(1, ClipTextEncoder.PooledIndex(legacy, [3, 7, 7, 2]));
        var byId = legacy with { EosTokenId = 5 }; // otherwise the first occurrence of eos_token_id, 0 when absent
        Assert.Equal(1, ClipTextEncoder.PooledIndex(byId, [998, 5, 999, 5]));
        Assert.Equal(0, ClipTextEncoder.PooledIndex(byId, [998, 6, 999]));
    }

    /// <summary>schnell's text_encoder (in tests/golden a relative symlink to dev's weights, copied into the build output
    /// as a file) gives dev's pooled vector.</summary>
    [Fact]
    public void Symlinked_weights_of_schnell_give_the_same_pooled_vector()
    {
        var dev = Backends.Get("cpu");
        using var a = WeightSource.Open(Dir(), "model.safetensors");
        using var b = WeightSource.Open(Dir("FLUX.1-schnell"), "model.safetensors");
        using var ea = new ClipTextEncoder(TinyConfig, a.Loader(dev));
        using var eb = new ClipTextEncoder(ClipTextConfig.Load(Path.Combine(Dir("FLUX.1-schnell"), "config.json")), b.Loader(dev));
        using var ya = ea.Encode(dev, Ids("inputs.input_ids"));
        using var yb = eb.Encode(dev, Ids("inputs.input_ids"));
        Assert.Equal(ya.Pooled.ToFloatArray(), yb.Pooled.ToFloatArray());
    }

    /// <summary>Int8 (weights per output channel, activations per row) follows the fp32 encoder: measured 7.3e-3 of the
    /// pooled vector's max magnitude (bound as in T5EncoderTests); nonzero, so the quantized path really ran.</summary>
    [Fact]
    public void Int8_weights_stay_close()
    {
        var dev = Backends.Get("cpu");
        using var weights = WeightSource.Open(Dir(), "model.safetensors");
        using var enc = new ClipTextEncoder(TinyConfig, weights.Loader(dev), QuantMode.Int8);
        using var y = enc.Encode(dev, Ids("inputs.input_ids"));
        double err = Compare.RelMaxError(Forward.ReadFloats("pooled_output"), y.Pooled.ToFloatArray());
        Assert.True(err is > 0 and < 0.1, $"int8 CLIP pooled: max|diff|/max|ref| = {err:g3}");
    }

    [Fact]
    public void Bad_inputs_are_reported()
    {
        var dev = Backends.Get("cpu");
        using var weights = WeightSource.Open(Dir(), "model.safetensors");
        using var enc = new ClipTextEncoder(TinyConfig, weights.Loader(dev));
        Assert.Contains("token id 1000", Assert.Throws<ModelConfigException>(() => enc.Encode(dev, [998, 1000, 999])).Message);
        Assert.Contains("78 tokens; expected 1 to max_position_embeddings = 77", Assert.Throws<ArgumentException>(() => enc.Encode(dev, new int[78])).Message);
    }
}
