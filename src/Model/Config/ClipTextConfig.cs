namespace PureFlux.Model.Config;

/// <summary>
/// text_encoder/config.json of FLUX.1 (transformers CLIPTextModel, model_type "clip_text_model"). The sizes
/// (vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads) are required: transformers'
/// defaults describe CLIP ViT-B/32's text tower, so a file without them is broken rather than meant. Other fields
/// default as in transformers (max_position_embeddings 77, layer_norm_eps 1e-5, eos_token_id 49407). Only
/// hidden_act "quick_gelu" (CLIP-L, what FLUX.1 ships) is supported.
/// </summary>
public sealed record ClipTextConfig
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    /// <summary>Learned positions; prompts are at most this long (77).</summary>
    public int MaxPositionEmbeddings { get; init; } = 77;
    public double LayerNormEps { get; init; } = 1e-5;
    public string HiddenAct { get; init; } = "quick_gelu";
    /// <summary>
    /// Where the pooled vector is read: the legacy value 2 (FLUX.1's config, as openai/clip-vit-large-patch14's) means
    /// "at the highest id", which is the first &lt;|endoftext|&gt; with the real vocabulary; any other value means
    /// "at the first occurrence of this id" (transformers CLIPTextTransformer).
    /// </summary>
    public int EosTokenId { get; init; } = 49407;
    /// <summary>"dtype" (or the older "torch_dtype") the weights were saved in, if stated.</summary>
    public string? DType { get; init; }

    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>The eos_token_id value that selects transformers' legacy pooling (argmax of the ids).</summary>
    public const int LegacyEosTokenId = 2;

    public static ClipTextConfig Load(string path) => Read(ConfigJson.Load(path));

    public static ClipTextConfig Parse(string json, string path = "text_encoder/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static ClipTextConfig Read(ConfigJson j)
    {
        string? modelType = j.StringOrNull("model_type");
        if (modelType is not null && modelType != "clip_text_model")
            throw j.Error("model_type", $"is \"{modelType}\"; expected \"clip_text_model\" (a CLIPTextModel config)");
        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, D = ConfigJson.MaxDim;
        int hidden = j.Positive("hidden_size", max: D);
        int heads = j.Positive("num_attention_heads", max: H);
        if (hidden % heads != 0)
            throw j.Error("num_attention_heads", $"is {heads}; it must divide hidden_size = {hidden}");
        if (hidden / heads > ConfigJson.MaxHeadDim)
            throw j.Error("num_attention_heads", $"is {heads}; head_dim = hidden_size / heads = {hidden / heads} exceeds {ConfigJson.MaxHeadDim}");
        string act = j.String("hidden_act", "quick_gelu");
        if (act != "quick_gelu") throw j.Error("hidden_act", $"is \"{act}\"; only \"quick_gelu\" (CLIP-L) is supported");
        int vocab = j.Positive("vocab_size", max: ConfigJson.MaxVocab);
        return new ClipTextConfig
        {
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = j.Positive("intermediate_size", max: D),
            NumHiddenLayers = j.Positive("num_hidden_layers", max: L),
            NumAttentionHeads = heads,
            MaxPositionEmbeddings = j.Positive("max_position_embeddings", 77, max: 1 << 16),
            LayerNormEps = j.Number("layer_norm_eps", 1e-5, 0, 1, minExclusive: true),
            HiddenAct = act,
            // Not bounded by vocab_size: transformers does not check it (an id that never occurs pools at position 0).
            EosTokenId = j.Positive("eos_token_id", 49407, min: 0, max: ConfigJson.MaxVocab),
            DType = j.StringOrNull("dtype") ?? j.StringOrNull("torch_dtype"),
        };
    }
}
