using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Model.T5;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>The FLUX.1 T5 v1.1 encoder against transformers' T5EncoderModel (tests/golden/flux1/t5_forward).</summary>
public class T5EncoderTests
{
    // Three fp32 blocks on 136 positions: ≤ 2e-4 relative to each tensor's max magnitude (the golden README suggests ~1e-4).
    private const double Tol = 2e-4;

    private static string Dir(string repo = "FLUX.1-dev") => Path.Combine(Golden.Dir, "flux1", "model", repo, "text_encoder_2");
    private static T5Config TinyConfig => T5Config.Load(Path.Combine(Dir(), "config.json"));
    private static SafetensorsFile Forward => GoldenModel.File("flux1/t5_forward.safetensors");
    private static int[] Ids => Forward.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();

    [Fact]
    public void Config_reads_the_real_flags()
    {
        var c = TinyConfig;
        Assert.Equal((1000, 32, 8, 80, 3, 4, 32), (c.VocabSize, c.DModel, c.DKv, c.DFf, c.NumLayers, c.NumHeads, c.InnerDim));
        Assert.Equal((32, 128, 1e-6, "gated-gelu"), (c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance, c.LayerNormEpsilon, c.FeedForwardProj));
    }

    private const string T5Xxl = """
        { "model_type": "t5", "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
          "num_heads": 64, "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32,
          "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-06, "torch_dtype": "bfloat16" }
        """;

    [Fact]
    public void Config_reads_t5_xxl()
    {
        var c = T5Config.Parse(T5Xxl);
        Assert.Equal((32128, 4096, 64, 10240, 24, 64, 4096, "bfloat16"), (c.VocabSize, c.DModel, c.DKv, c.DFf, c.NumLayers, c.NumHeads, c.InnerDim, c.DType));
    }

    [Theory]
    [InlineData("\"d_model\": 4096,", "", "missing field 'd_model'")]
    [InlineData("\"feed_forward_proj\": \"gated-gelu\",", "", "field 'feed_forward_proj' is \"relu\"; only \"gated-gelu\" (T5 v1.1, FLUX.1's T5-XXL) is supported")]
    [InlineData("\"model_type\": \"t5\"", "\"model_type\": \"mt5\"", "field 'model_type' is \"mt5\"; expected \"t5\" (a T5EncoderModel config)")]
    [InlineData("\"relative_attention_num_buckets\": 32", "\"relative_attention_num_buckets\": 33", "field 'relative_attention_num_buckets' is 33; the encoder's bidirectional buckets need an even count")]
    [InlineData("\"relative_attention_max_distance\": 128", "\"relative_attention_max_distance\": 8", "field 'relative_attention_max_distance' is 8; it must exceed the 8 exact distances of 32 buckets")]
    [InlineData("\"num_heads\": 64", "\"num_heads\": 0", "field 'num_heads' is 0; expected an integer >= 1")]
    [InlineData("\"layer_norm_epsilon\": 1e-06", "\"layer_norm_epsilon\": -1", "field 'layer_norm_epsilon' is -1; expected a number > 0")]
    public void Config_bad_fields_are_named(string from, string to, string expected)
    {
        Assert.Contains(from, T5Xxl);
        var e = Assert.Throws<ModelConfigException>(() => T5Config.Parse(T5Xxl.Replace(from, to), "te2/config.json"));
        Assert.Equal("te2/config.json: " + expected, e.Message);
    }

    /// <summary>transformers' _relative_position_bucket over −600..600 (32 buckets, max distance 128, bidirectional),
    /// including every log-spaced bucket edge.</summary>
    [Fact]
    public void Buckets_match_transformers()
    {
        var ops = GoldenModel.File("flux1/ops.safetensors");
        var rel = ops.ReadInt64("t5_bucket.relative_position");
        var expected = ops.ReadInt64("t5_bucket.bidirectional_32_128");
        for (int i = 0; i < rel.Length; i++)
            Assert.True(expected[i] == T5RelativePosition.Bucket((int)rel[i], 32, 128), $"bucket of {rel[i]}: expected {expected[i]}, got {T5RelativePosition.Bucket((int)rel[i], 32, 128)}");

        // The forward's own table: offsets −135..135 in order, as BucketsOfOffsets lays them out.
        var fwdRel = Forward.ReadInt64("relative_bias.relative_position");
        var fwdBucket = Forward.ReadInt64("relative_bias.bucket");
        int s = Ids.Length;
        Assert.Equal(Enumerable.Range(0, 2 * s - 1).Select(n => (long)(n - (s - 1))), fwdRel);
        Assert.Equal(fwdBucket.Select(b => (int)b), T5RelativePosition.BucketsOfOffsets(s, s, 32, 128));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Encode_matches_transformers_block_by_block(string backend)
    {
        var dev = Backends.Get(backend);
        using var weights = WeightSource.Open(Dir(), "model.safetensors", "text_encoder_2/model.safetensors");
        Assert.True(weights.IsSharded);
        using var enc = new T5Encoder(TinyConfig, weights.Loader(dev));
        var trace = new GoldenModel.Trace();
        using var output = enc.Encode(dev, Ids, trace.Record);

        string[] names =
        [
            "embed_tokens", "position_bias", "block.0.attn.layer_norm", "block.0.attn.q", "block.0.attn.k", "block.0.attn.v",
            "block.0.attn.o", "block.0.attn.residual_out", "block.0.ff.layer_norm", "block.0.ff.wi_0", "block.0.ff.act",
            "block.0.ff.wi_1", "block.0.ff.wo", "block.0.out", "block.1.out", "block.2.out", "final_layer_norm", "last_hidden_state",
        ];
        foreach (var n in names) GoldenModel.AssertClose(Forward, trace, n, n, Tol, $"T5 on {backend}");
        Assert.Equal(new Shape(Ids.Length, 32), output.Shape);
        Assert.Equal(trace.Values["last_hidden_state"], output.ToFloatArray());
    }

    /// <summary>The padding is attended to (no mask): encoding only the 21 real tokens gives other outputs for them, so
    /// the golden comparison above can tell a masked encoder from FLUX's.</summary>
    [Fact]
    public void Padding_changes_the_real_tokens()
    {
        var dev = Backends.Get("cpu");
        using var weights = WeightSource.Open(Dir(), "model.safetensors");
        using var enc = new T5Encoder(TinyConfig, weights.Loader(dev));
        int real = Array.IndexOf(Ids, 1) + 1; // tokens + </s>
        Assert.Equal(21, real);
        using var full = enc.Encode(dev, Ids);
        using var shortRow = enc.Encode(dev, Ids[..real]);
        var a = full.ToFloatArray().AsSpan(0, real * 32).ToArray();
        Assert.True(Compare.RelMaxError(a, shortRow.ToFloatArray()) > 1e-2);
    }

    /// <summary>schnell's text_encoder_2 (own config and index json; in tests/golden its shards are relative symlinks to
    /// dev's, which the build copies into the output as files) gives dev's output.</summary>
    [Fact]
    public void Symlinked_shards_of_schnell_load_the_same_weights()
    {
        var dev = Backends.Get("cpu");
        using var devWeights = WeightSource.Open(Dir(), "model.safetensors");
        using var schnellWeights = WeightSource.Open(Dir("FLUX.1-schnell"), "model.safetensors");
        using var a = new T5Encoder(TinyConfig, devWeights.Loader(dev));
        using var b = new T5Encoder(T5Config.Load(Path.Combine(Dir("FLUX.1-schnell"), "config.json")), schnellWeights.Loader(dev));
        using var ya = a.Encode(dev, Ids[..40]);
        using var yb = b.Encode(dev, Ids[..40]);
        Assert.Equal(ya.ToFloatArray(), yb.ToFloatArray());
    }

    /// <summary>Int8 (weights per output channel, activations per row) follows the fp32 encoder: measured 3.8e-2 of the
    /// max magnitude after three blocks of the tiny model (32–80-wide rows, the worst case for per-row scales); a
    /// broken scale or layout is off by O(1). Nonzero, so the quantized path really ran.</summary>
    [Fact]
    public void Int8_weights_stay_close()
    {
        var dev = Backends.Get("cpu");
        using var weights = WeightSource.Open(Dir(), "model.safetensors");
        using var enc = new T5Encoder(TinyConfig, weights.Loader(dev), QuantMode.Int8);
        using var y = enc.Encode(dev, Ids);
        double err = Compare.RelMaxError(Forward.ReadFloats("last_hidden_state"), y.ToFloatArray());
        Assert.True(err is > 0 and < 0.1, $"int8 T5: max|diff|/max|ref| = {err:g3}");
    }

    [Fact]
    public void Token_outside_the_vocabulary_is_reported()
    {
        var dev = Backends.Get("cpu");
        using var weights = WeightSource.Open(Dir(), "model.safetensors");
        using var enc = new T5Encoder(TinyConfig, weights.Loader(dev));
        var e = Assert.Throws<ModelConfigException>(() => enc.Encode(dev, [5, 1000, 1]));
        Assert.Contains("token id 1000", e.Message);
    }
}
