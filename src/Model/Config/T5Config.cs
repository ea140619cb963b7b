namespace PureFlux.Model.Config;

/// <summary>
/// text_encoder_2/config.json of FLUX.1 (transformers T5EncoderModel, model_type "t5", the T5 v1.1 flavour). The
/// sizes (vocab_size, d_model, d_kv, d_ff, num_layers, num_heads) are required: transformers' defaults describe
/// t5-small. feed_forward_proj must be "gated-gelu" (T5 v1.1: wo(gelu_new(wi_0 x) · wi_1 x); transformers then
/// ignores dense_act_fn and uses gelu_new). The relative-position bucketing defaults as in transformers (32 buckets,
/// max distance 128); layer_norm_epsilon 1e-6.
/// </summary>
public sealed record T5Config
{
    public required int VocabSize { get; init; }
    public required int DModel { get; init; }
    /// <summary>Per-head width; heads × d_kv need not equal d_model.</summary>
    public required int DKv { get; init; }
    public required int DFf { get; init; }
    /// <summary>Encoder blocks.</summary>
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public int RelativeAttentionNumBuckets { get; init; } = 32;
    public int RelativeAttentionMaxDistance { get; init; } = 128;
    public double LayerNormEpsilon { get; init; } = 1e-6;
    public string FeedForwardProj { get; init; } = "gated-gelu";
    /// <summary>"dtype" (or the older "torch_dtype") the weights were saved in, if stated.</summary>
    public string? DType { get; init; }

    public int InnerDim => NumHeads * DKv;

    public static T5Config Load(string path) => Read(ConfigJson.Load(path));

    public static T5Config Parse(string json, string path = "text_encoder_2/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static T5Config Read(ConfigJson j)
    {
        string? modelType = j.StringOrNull("model_type");
        if (modelType is not null && modelType != "t5")
            throw j.Error("model_type", $"is \"{modelType}\"; expected \"t5\" (a T5EncoderModel config)");
        string ff = j.String("feed_forward_proj", "relu");
        if (ff != "gated-gelu")
            throw j.Error("feed_forward_proj", $"is \"{ff}\"; only \"gated-gelu\" (T5 v1.1, FLUX.1's T5-XXL) is supported");
        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, D = ConfigJson.MaxDim;
        int heads = j.Positive("num_heads", max: H);
        int dkv = j.Positive("d_kv", max: ConfigJson.MaxHeadDim);
        if ((long)heads * dkv > D) throw j.Error("num_heads", $"× d_kv = {(long)heads * dkv}; expected at most {D}");
        int buckets = j.Positive("relative_attention_num_buckets", 32, min: 4, max: 1 << 16);
        // The encoder's buckets are bidirectional: half per direction, of which half are exact distances.
        if (buckets % 2 != 0) throw j.Error("relative_attention_num_buckets", $"is {buckets}; the encoder's bidirectional buckets need an even count");
        int maxDistance = j.Positive("relative_attention_max_distance", 128, max: 1 << 24);
        if (maxDistance <= buckets / 4)
            throw j.Error("relative_attention_max_distance", $"is {maxDistance}; it must exceed the {buckets / 4} exact distances of {buckets} buckets");
        return new T5Config
        {
            VocabSize = j.Positive("vocab_size", max: ConfigJson.MaxVocab),
            DModel = j.Positive("d_model", max: D),
            DKv = dkv,
            DFf = j.Positive("d_ff", max: D),
            NumLayers = j.Positive("num_layers", max: L),
            NumHeads = heads,
            RelativeAttentionNumBuckets = buckets,
            RelativeAttentionMaxDistance = maxDistance,
            LayerNormEpsilon = j.Number("layer_norm_epsilon", 1e-6, 0, 1, minExclusive: true),
            FeedForwardProj = ff,
            DType = j.StringOrNull("dtype") ?? j.StringOrNull("torch_dtype"),
        };
    }
}
