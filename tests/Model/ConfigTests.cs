using PureFlux.Model.Config;

namespace PureFlux.Tests.Model;

public class ConfigTests
{
    // The real klein 4B text encoder config as newer transformers writes it (rope_parameters).
    private const string Qwen3New = """
        { "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728,
          "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
          "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "dtype": "bfloat16",
          "rope_parameters": { "rope_theta": 1000000, "rope_type": "default" } }
        """;

    [Fact]
    public void Qwen3_reads_rope_parameters_style()
    {
        var c = Qwen3Config.Parse(Qwen3New);
        Assert.Equal((2560, 36, 32, 8, 128, 4096, 1024), (c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.QueryWidth, c.KeyValueWidth));
        Assert.Equal(1e6, c.RopeTheta);
        Assert.Equal("default", c.RopeType);
        Assert.Equal("bfloat16", c.DType);
        Assert.True(c.TieWordEmbeddings);
    }

    [Fact]
    public void Qwen3_reads_rope_theta_style_and_defaults()
    {
        var c = Qwen3Config.Parse("""
            { "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
              "num_attention_heads": 4, "rope_theta": 5000.0, "rope_scaling": null, "torch_dtype": "float32" }
            """);
        Assert.Equal(5000.0, c.RopeTheta);
        Assert.Equal(4, c.NumKeyValueHeads); // defaults to num_attention_heads
        Assert.Equal(16, c.HeadDim);         // defaults to hidden_size / num_attention_heads
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal("float32", c.DType);

        var noTheta = Qwen3Config.Parse("""{ "vocab_size": 1, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2 }""");
        Assert.Equal(10000.0, noTheta.RopeTheta); // transformers' default
    }

    [Theory]
    [InlineData("\"hidden_size\": 2560,", "", "missing field 'hidden_size'")]
    [InlineData("\"num_hidden_layers\": 36", "\"num_hidden_layers\": 36.5", "field 'num_hidden_layers' is 36.5 (a number); expected an integer")]
    [InlineData("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5", "field 'num_key_value_heads' is 5; it must divide num_attention_heads = 32")]
    [InlineData("\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", "field 'rope_parameters.rope_type' is \"yarn\"; only \"default\" RoPE is supported")]
    [InlineData("\"rope_theta\": 1000000,", "\"rope_theta\": \"big\",", "field 'rope_parameters.rope_theta' is \"big\" (a string); expected a number")]
    [InlineData("\"model_type\": \"qwen3\"", "\"model_type\": \"llama\"", "field 'model_type' is \"llama\"; expected \"qwen3\"")]
    [InlineData("\"vocab_size\": 151936", "\"vocab_size\": 0", "field 'vocab_size' is 0; expected an integer >= 1")]
    public void Qwen3_bad_fields_are_named(string from, string to, string expected)
    {
        Assert.Contains(from, Qwen3New);
        var e = Assert.Throws<ModelConfigException>(() => Qwen3Config.Parse(Qwen3New.Replace(from, to), "te/config.json"));
        Assert.Equal("te/config.json: " + expected, e.Message);
    }

    [Fact]
    public void Qwen3_rejects_scaled_rope_and_sliding_window_in_the_old_style()
    {
        const string baseJson = """{ "vocab_size": 1, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2 """;
        var e = Assert.Throws<ModelConfigException>(() => Qwen3Config.Parse(baseJson + """, "rope_scaling": {"type": "linear", "factor": 2} }"""));
        Assert.Contains("field 'rope_scaling.rope_type' is \"linear\"", e.Message);
        e = Assert.Throws<ModelConfigException>(() => Qwen3Config.Parse(baseJson + """, "use_sliding_window": true }"""));
        Assert.Contains("use_sliding_window", e.Message);
        e = Assert.Throws<ModelConfigException>(() => Qwen3Config.Parse(baseJson + """, "layer_types": ["sliding_attention"] }"""));
        Assert.Contains("\"sliding_attention\" at layer 0", e.Message);
    }

    [Fact]
    public void Transformer_defaults_are_diffusers_defaults()
    {
        var c = Flux2TransformerConfig.Parse("{}");
        Assert.Equal((1, 128, 8, 48, 128, 48, 15360, 256), (c.PatchSize, c.InChannels, c.NumLayers, c.NumSingleLayers, c.AttentionHeadDim, c.NumAttentionHeads, c.JointAttentionDim, c.TimestepGuidanceChannels));
        Assert.Equal((3.0, 2000.0, 1e-6, true), (c.MlpRatio, c.RopeTheta, c.Eps, c.GuidanceEmbeds));
        Assert.Equal([32, 32, 32, 32], c.AxesDimsRope);
        Assert.Equal(128, c.OutputChannels);
    }

    [Fact]
    public void Transformer_klein_4b_values_and_bad_fields()
    {
        var c = Flux2TransformerConfig.Parse("""
            { "num_layers": 5, "num_single_layers": 20, "num_attention_heads": 24, "attention_head_dim": 128,
              "joint_attention_dim": 7680, "guidance_embeds": false, "out_channels": null, "axes_dims_rope": [32, 32, 32, 32] }
            """);
        Assert.Equal((3072, 9216, 128), (c.InnerDim, c.MlpHiddenDim, c.OutputChannels));

        var e = Assert.Throws<ModelConfigException>(() => Flux2TransformerConfig.Parse("""{ "axes_dims_rope": [16, 16, 16, 16] }""", "t.json"));
        Assert.Equal("t.json: field 'axes_dims_rope' sums to 64; expected attention_head_dim = 128", e.Message);
        e = Assert.Throws<ModelConfigException>(() => Flux2TransformerConfig.Parse("""{ "guidance_embeds": "no" }""", "t.json"));
        Assert.Equal("t.json: field 'guidance_embeds' is \"no\" (a string); expected true or false", e.Message);
        e = Assert.Throws<ModelConfigException>(() => Flux2TransformerConfig.Parse("""{ "axes_dims_rope": 32 }""", "t.json"));
        Assert.Equal("t.json: field 'axes_dims_rope' is 32 (a number); expected an array of integers", e.Message);
    }

    [Fact]
    public void Vae_defaults_and_checks()
    {
        var c = VaeConfig.Parse("{}");
        Assert.Equal([128, 256, 512, 512], c.BlockOutChannels);
        Assert.Equal((32, 32, 8, 128, 1e-4), (c.LatentChannels, c.NormNumGroups, c.ScaleFactor, c.PatchedChannels, c.BatchNormEps));
        Assert.Equal(c.BlockOutChannels, c.DecoderChannels);
        var e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse("""{ "block_out_channels": [4, 8, 16, 16], "norm_num_groups": 3 }""", "v.json"));
        Assert.Equal("v.json: field 'norm_num_groups' is 3; it must divide every block channel count (found 4)", e.Message);
        e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse("""{ "block_out_channels": [4, 8] }""", "v.json"));
        Assert.Contains("field 'down_block_types' has 4 entries", e.Message);
    }

    [Fact]
    public void Vae_kind_by_class_name_with_that_class_defaults()
    {
        // diffusers AutoencoderKL's constructor defaults (SD-style), not AutoencoderKLFlux2's.
        var kl = VaeConfig.Parse("""{ "_class_name": "AutoencoderKL" }""");
        Assert.Equal((VaeKind.AutoencoderKL, 4, 1, 32, true, true), (kl.Kind, kl.LatentChannels, kl.LayersPerBlock, kl.SampleSize, kl.UseQuantConv, kl.UsePostQuantConv));
        Assert.Equal([64], kl.BlockOutChannels);
        Assert.Equal((0.18215, (double?)null), (kl.ScalingFactor, kl.ShiftFactor));
        // FLUX.1 / Z-Image flags; AutoencoderKLFlux2's fields are not AutoencoderKL's and are ignored, as diffusers does.
        var z = VaeConfig.Parse("""
            { "_class_name": "AutoencoderKL", "latent_channels": 16, "use_quant_conv": false, "use_post_quant_conv": false,
              "scaling_factor": 0.3611, "shift_factor": 0.1159, "latents_mean": null, "batch_norm_eps": 0.5 }
            """);
        Assert.Equal((16, false, false, 0.3611, (double?)0.1159, 1e-4), (z.LatentChannels, z.UseQuantConv, z.UsePostQuantConv, z.ScalingFactor, z.ShiftFactor, z.BatchNormEps));
        // and the other way round: no scaling_factor / shift_factor for FLUX.2 (absent _class_name means FLUX.2).
        var f2 = VaeConfig.Parse("""{ "_class_name": "AutoencoderKLFlux2", "scaling_factor": 0.5, "shift_factor": 0.1 }""");
        Assert.Equal((VaeKind.AutoencoderKLFlux2, 1.0, (double?)null), (f2.Kind, f2.ScalingFactor, f2.ShiftFactor));
        Assert.Equal(VaeKind.AutoencoderKLFlux2, VaeConfig.Parse("{}").Kind);
        var e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse("""{ "_class_name": "AutoencoderKLWan" }""", "v.json"));
        Assert.Equal("v.json: field '_class_name' is \"AutoencoderKLWan\"; only AutoencoderKL and AutoencoderKLFlux2 are supported", e.Message);
        e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse("""{ "_class_name": "AutoencoderKL", "scaling_factor": 0 }""", "v.json"));
        Assert.Equal("v.json: field 'scaling_factor' is 0; expected a number > 0", e.Message);
    }

    [Fact]
    public void Scheduler_defaults_and_explicit_nulls()
    {
        var d = SchedulerConfig.Parse("{}");
        Assert.Equal((1000, 1.0, false, 0.5, 1.15, "exponential"), (d.NumTrainTimesteps, d.Shift, d.UseDynamicShifting, d.BaseShift, d.MaxShift, d.TimeShiftType));
        var n = SchedulerConfig.Parse("""{ "base_shift": null, "max_shift": null, "shift_terminal": 0.1 }""");
        Assert.Null(n.BaseShift);
        Assert.Null(n.MaxShift);
        Assert.Equal(0.1, n.ShiftTerminal);
        var e = Assert.Throws<ModelConfigException>(() => SchedulerConfig.Parse("""{ "time_shift_type": "cosine" }""", "s.json"));
        Assert.Equal("s.json: field 'time_shift_type' is \"cosine\"; expected \"exponential\" or \"linear\"", e.Message);
        e = Assert.Throws<ModelConfigException>(() => SchedulerConfig.Parse("""{ "_class_name": "EulerDiscreteScheduler" }""", "s.json"));
        Assert.Contains("only FlowMatchEulerDiscreteScheduler", e.Message);
    }

    [Fact]
    public void Model_index_components_and_is_distilled()
    {
        var i = ModelIndex.Parse("""
            { "_class_name": "Flux2KleinPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
              "feature_extractor": [null, null], "transformer": ["diffusers", "Flux2Transformer2DModel"] }
            """);
        Assert.False(i.IsDistilled); // diffusers' default
        Assert.Equal(2, i.Components.Count);
        Assert.Equal("Flux2Transformer2DModel", i.Components["transformer"].ClassName);
        var e = Assert.Throws<ModelConfigException>(() => ModelIndex.Parse("""{ "is_distilled": true }""", "mi.json"));
        Assert.Equal("mi.json: missing field '_class_name'", e.Message);
        e = Assert.Throws<ModelConfigException>(() => ModelIndex.Parse("""{ "_class_name": "X", "vae": ["diffusers"] }""", "mi.json"));
        Assert.Equal("mi.json: field 'vae' is [\"diffusers\"]; expected [\"library\", \"ClassName\"]", e.Message);
    }

    [Fact]
    public void Unreadable_or_invalid_json_names_the_file()
    {
        string missing = Path.Combine(Path.GetTempPath(), "pureflux-no-such-config.json");
        var e = Assert.Throws<ModelConfigException>(() => VaeConfig.Load(missing));
        Assert.StartsWith($"{missing}: cannot read config", e.Message);
        e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse("{ \"a\": ", "v.json"));
        Assert.StartsWith("v.json: not valid JSON", e.Message);
        e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse("[]", "v.json"));
        Assert.Equal("v.json: expected a JSON object at the top level, found an array", e.Message);
    }
}
