namespace PureFlux.Model.Config;

/// <summary>
/// text_encoder/config.json (transformers Qwen3ForCausalLM). The sizes (vocab_size, hidden_size, intermediate_size,
/// num_hidden_layers, num_attention_heads) are required: transformers' defaults describe an 8B model, so a file
/// without them is broken rather than meant. Other fields default as in transformers. RoPE accepts both the
/// older <c>rope_theta</c> + <c>rope_scaling</c> fields and the newer <c>rope_parameters: {rope_theta, rope_type}</c>;
/// only the default (unscaled) RoPE is supported.
/// </summary>
public sealed record Qwen3Config
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    /// <summary>Per-head width; in Qwen3 not hidden_size / heads (klein 4B: 32 heads × 128 = 4096 ≠ 2560).</summary>
    public required int HeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000.0;
    public string RopeType { get; init; } = "default";
    public bool AttentionBias { get; init; }
    /// <summary>Per-head RMSNorm of q and k before RoPE (Qwen3: yes; the Qwen2 / Qwen2.5-VL language model: no).</summary>
    public bool QkNorm { get; init; } = true;
    /// <summary>Biases on the q, k, v projections, none on o (the Qwen2 / Qwen2.5-VL language model; Qwen3: no).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Qwen2.5-VL's M-RoPE split of the head_dim/2 frequencies over the (t, h, w) position rows (null: plain RoPE).
    /// For text the three rows are equal and M-RoPE is ordinary rotate-half RoPE.</summary>
    public int[]? MropeSection { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public int MaxPositionEmbeddings { get; init; } = 32768;
    /// <summary>"dtype" (or the older "torch_dtype") the weights were saved in, if stated.</summary>
    public string? DType { get; init; }

    public int QueryWidth => NumAttentionHeads * HeadDim;
    public int KeyValueWidth => NumKeyValueHeads * HeadDim;

    public static Qwen3Config Load(string path) => Read(ConfigJson.Load(path));

    /// <summary>
    /// The language model of a Qwen2.5-VL text_encoder/config.json (transformers Qwen2_5_VLForConditionalGeneration, as
    /// Qwen-Image ships it): the fields of <c>text_config</c> when present (transformers ≥ 4.5x), else the top level.
    /// Same decoder layers as Qwen3 except: biases on q/k/v, no QK-norm, head_dim = hidden / heads, and M-RoPE
    /// (<c>rope_scaling.mrope_section</c>, which must sum to head_dim / 2). The vision tower's fields are not read.
    /// </summary>
    public static Qwen3Config LoadQwen25VLText(string path)
    {
        var root = ConfigJson.Load(path);
        string? top = root.StringOrNull("model_type");
        if (top is not null && top != "qwen2_5_vl")
            throw root.Error("model_type", $"is \"{top}\"; expected \"qwen2_5_vl\" (a Qwen2.5-VL text encoder)");
        var j = root.Object("text_config") ?? root;
        var c = Read(j, ["qwen2_5_vl", "qwen2_5_vl_text"]) with { QkNorm = false, QkvBias = true };
        var section = (j.Object("rope_scaling") ?? root.Object("rope_scaling")) is { } rs ? rs.IntArrayOrNull("mrope_section") : null;
        if (section is not null)
        {
            if (section.Length != 3 || section.Any(v => v < 0) || section.Sum() != c.HeadDim / 2)
                throw j.Error("rope_scaling.mrope_section", $"is [{string.Join(", ", section)}]; expected three non-negative entries summing to head_dim / 2 = {c.HeadDim / 2}");
            c = c with { MropeSection = section };
        }
        return c;
    }

    public static Qwen3Config Parse(string json, string path = "text_encoder/config.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static Qwen3Config Read(ConfigJson j) => Read(j, ["qwen3"]);

    private static Qwen3Config Read(ConfigJson j, string[] modelTypes)
    {
        string? modelType = j.StringOrNull("model_type");
        if (modelType is not null && !modelTypes.Contains(modelType))
            throw j.Error("model_type", $"is \"{modelType}\"; expected {string.Join(" or ", modelTypes.Select(t => $"\"{t}\""))}");

        const int L = ConfigJson.MaxLayers, H = ConfigJson.MaxHeads, HD = ConfigJson.MaxHeadDim, D = ConfigJson.MaxDim;
        int heads = j.Positive("num_attention_heads", max: H);
        int hidden = j.Positive("hidden_size", max: D);
        int kvHeads = j.Positive("num_key_value_heads", heads, max: H);
        if (heads % kvHeads != 0)
            throw j.Error("num_key_value_heads", $"is {kvHeads}; it must divide num_attention_heads = {heads}");
        int headDim = j.Raw("head_dim") is null
            ? (hidden % heads == 0 ? hidden / heads : throw j.Error("head_dim", $"is missing and hidden_size {hidden} is not a multiple of num_attention_heads {heads}"))
            : j.Positive("head_dim", max: HD);
        if (headDim % 2 != 0) throw j.Error("head_dim", $"is {headDim}; RoPE needs an even head_dim");

        var (theta, ropeType) = ReadRope(j);
        string act = j.String("hidden_act", "silu");
        if (act != "silu") throw j.Error("hidden_act", $"is \"{act}\"; only \"silu\" is supported");
        if (j.Bool("use_sliding_window", false))
            throw j.Error("use_sliding_window", "is true; sliding-window attention is not supported (klein uses full attention)");
        var layerTypes = j.StringArray("layer_types", [], maxLength: L);
        int bad = Array.FindIndex(layerTypes, t => t != "full_attention");
        if (bad >= 0) throw j.Error("layer_types", $"has \"{layerTypes[bad]}\" at layer {bad}; only \"full_attention\" is supported");

        var c = new Qwen3Config
        {
            VocabSize = j.Positive("vocab_size", max: ConfigJson.MaxVocab),
            HiddenSize = hidden,
            IntermediateSize = j.Positive("intermediate_size", max: D),
            NumHiddenLayers = j.Positive("num_hidden_layers", max: L),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = j.Number("rms_norm_eps", 1e-6, 0, 1, minExclusive: true),
            RopeTheta = theta,
            RopeType = ropeType,
            AttentionBias = j.Bool("attention_bias", false),
            TieWordEmbeddings = j.Bool("tie_word_embeddings", false),
            HiddenAct = act,
            MaxPositionEmbeddings = j.Positive("max_position_embeddings", 32768, max: 1 << 26),
            DType = j.StringOrNull("dtype") ?? j.StringOrNull("torch_dtype"),
        };
        if (layerTypes.Length != 0 && layerTypes.Length != c.NumHiddenLayers)
            throw j.Error("layer_types", $"has {layerTypes.Length} entries; expected num_hidden_layers = {c.NumHiddenLayers}");
        if ((long)heads * headDim > D) throw j.Error("num_attention_heads", $"× head_dim = {(long)heads * headDim}; expected at most {D}");
        return c;
    }

    private static (double Theta, string Type) ReadRope(ConfigJson j)
    {
        // Newer transformers: rope_parameters = {rope_theta, rope_type, ...}; older: rope_theta + rope_scaling.
        if (j.Object("rope_parameters") is { } p)
        {
            string type = p.String("rope_type", "default");
            if (type != "default") throw p.Error("rope_type", $"is \"{type}\"; only \"default\" RoPE is supported");
            double theta = p.Has("rope_theta") ? p.Number("rope_theta", 10000.0, 0, 1e12, minExclusive: true) : j.Number("rope_theta", 10000.0, 0, 1e12, minExclusive: true);
            return (theta, type);
        }
        if (j.Object("rope_scaling") is { } s)
        {
            string type = s.StringOrNull("rope_type") ?? s.String("type", "default");
            if (type != "default") throw s.Error("rope_type", $"is \"{type}\"; only \"default\" RoPE is supported");
        }
        double t = j.Number("rope_theta", 10000.0, 0, 1e12, minExclusive: true);
        return (t, "default");
    }
}
