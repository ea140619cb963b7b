using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace PureFlux.Model.Text;

/// <summary>
/// The T5 v1.1-XXL tokenizer (SentencePiece unigram) as the FLUX.1 pipelines feed T5EncoderModel, built from a
/// snapshot's <c>tokenizer_2/tokenizer.json</c> (Hugging Face <c>tokenizers</c> form: Precompiled charsmap → strip
/// right → runs of 2+ spaces to "▁" → Metaspace "▁" → Unigram, then &lt;/s&gt; appended).
/// <para>Microsoft.ML.Tokenizers' <see cref="SentencePieceTokenizer"/> runs the charsmap normalisation and the unigram
/// Viterbi search; it reads only SentencePiece's protobuf, so the vocabulary, scores and charsmap of tokenizer.json are
/// handed to it as a ModelProto (<see cref="SentencePieceModelWriter"/>). Checked on every id of
/// tests/golden/tokenizer/flux1-ids.json, with two parts written here because ML.Tokenizers 2.0.1 lacks them:</para>
/// <list type="bullet">
/// <item>consecutive unknown pieces are fused into one &lt;unk&gt; (tokenizers' Unigram <c>fuse_unk</c>, and SentencePiece
/// itself, do this; ML.Tokenizers emits one &lt;unk&gt; per character: "一只在雪地里的狐狸" gave 9 ids instead of 1);</item>
/// <item>added tokens (&lt;pad&gt;, &lt;/s&gt;, &lt;unk&gt;, &lt;extra_id_N&gt;) typed in the text are cut out first and
/// map to their ids, as transformers does (split_special_tokens=False); the text between them is encoded piece by piece.</item>
/// </list>
/// The "strip right / 2+ spaces → ▁ / prepend ▁" steps equal SentencePiece's remove_extra_whitespaces + add_dummy_prefix
/// for every text (leading spaces become the one "▁" either way).
/// </summary>
public sealed class T5Tokenizer
{
    /// <summary>T5 length of FLUX.1 [dev] and Kontext (FluxPipeline max_sequence_length default).</summary>
    public const int FluxDevMaxLength = 512;

    /// <summary>T5 length of FLUX.1 [schnell] (the model card's / BFL's convention; the pipeline default is 512).</summary>
    public const int FluxSchnellMaxLength = 256;

    /// <summary>Real tokenizer.json files for T5 are 2–3 MB; larger is refused before it is read.</summary>
    public const long MaxFileBytes = 64L << 20;

    private readonly SentencePieceTokenizer _withPrefix;
    private readonly SentencePieceTokenizer? _withoutPrefix;
    private readonly (string Text, int Id)[] _addedTokens;

    private T5Tokenizer(string path, SentencePieceTokenizer withPrefix, SentencePieceTokenizer? withoutPrefix,
        (string, int)[] addedTokens, int eosId, int padId, int unkId)
    {
        Path = path;
        _withPrefix = withPrefix;
        _withoutPrefix = withoutPrefix;
        _addedTokens = addedTokens;
        EosId = eosId;
        PadId = padId;
        UnkId = unkId;
    }

    /// <summary>The tokenizer.json this was built from.</summary>
    public string Path { get; }

    /// <summary>&lt;/s&gt; (1), appended after the text.</summary>
    public int EosId { get; }

    /// <summary>&lt;pad&gt; (0), fills up to the pipeline's length.</summary>
    public int PadId { get; }

    /// <summary>&lt;unk&gt; (2).</summary>
    public int UnkId { get; }

    /// <summary>The copy of FLUX.1's T5 tokenizer.json shipped next to the binaries (assets/t5-xxl-tokenizer/).</summary>
    public static string BuiltInPath => System.IO.Path.Combine(AppContext.BaseDirectory, "assets", "t5-xxl-tokenizer", "tokenizer.json");

    private static readonly Lazy<T5Tokenizer> BuiltInTokenizer = new(() => FromFile(BuiltInPath));

    /// <summary>The built-in T5 tokenizer (loaded once).</summary>
    public static T5Tokenizer BuiltIn => BuiltInTokenizer.Value;

    /// <summary>Loads a tokenizers-format tokenizer.json with a Unigram model and a Precompiled normaliser.</summary>
    /// <exception cref="TokenizerLoadException">Missing, unreadable or unsupported file; the message names it and the field.</exception>
    public static T5Tokenizer FromFile(string path)
    {
        byte[] bytes = PureFlux.Runtime.RegularFile.ReadAllBytes(path, MaxFileBytes, "tokenizer file", m => new TokenizerLoadException(m));
        long bad = PureFlux.Runtime.RegularFile.InvalidUtf8Offset(bytes);
        if (bad >= 0) throw Bad(path, $"not valid UTF-8 text (byte {bad})");
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            return Build(path, doc.RootElement);
        }
        catch (TokenizerLoadException) { throw; }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or FormatException or KeyNotFoundException or IndexOutOfRangeException)
        {
            throw new TokenizerLoadException($"{path}: not a valid unigram tokenizer.json ({e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")})", e);
        }
    }

    private static T5Tokenizer Build(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object) throw Bad(path, "the top level must be a JSON object");
        var model = Field(path, root, "model", JsonValueKind.Object);
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "(none)";
        if (type != "Unigram") throw Bad(path, $"model.type is \"{type}\"; only \"Unigram\" (SentencePiece) is supported here");
        if (model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True)
            throw Bad(path, "model.byte_fallback is true; not supported (T5's vocabulary has no byte pieces)");
        var vocabEl = Field(path, model, "vocab", JsonValueKind.Array);
        int count = vocabEl.GetArrayLength();
        if (count < 3 || count > Qwen3Tokenizer.MaxTokenId) throw Bad(path, $"model.vocab has {count} entries; expected 3..{Qwen3Tokenizer.MaxTokenId}");
        var pieces = new List<(string, float, SentencePieceModelWriter.PieceType)>(count);
        foreach (var e in vocabEl.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != 2 || e[0].ValueKind != JsonValueKind.String || e[1].ValueKind != JsonValueKind.Number)
                throw Bad(path, $"model.vocab entry {pieces.Count} must be [\"piece\", score]");
            double score = e[1].GetDouble();
            if (!double.IsFinite(score)) throw Bad(path, $"model.vocab entry {pieces.Count} has a score that is not finite");
            pieces.Add((e[0].GetString()!, (float)score, SentencePieceModelWriter.PieceType.Normal));
        }
        int unkId = model.TryGetProperty("unk_id", out var u) && u.ValueKind == JsonValueKind.Number && u.TryGetInt32(out int ui) ? ui
            : throw Bad(path, "model.unk_id must be an integer (the <unk> piece)");
        if (unkId < 0 || unkId >= count) throw Bad(path, $"model.unk_id {unkId} is outside the vocabulary (0..{count - 1})");

        // Added tokens: cut out of the text before the model runs; never produced by the Viterbi search (Control).
        var added = new List<(string, int)>();
        if (root.TryGetProperty("added_tokens", out var addedEl) && addedEl.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in addedEl.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String || c.GetString()!.Length == 0
                    || !a.TryGetProperty("id", out var i) || i.ValueKind != JsonValueKind.Number || !i.TryGetInt32(out int id) || id < 0 || id >= count)
                    throw Bad(path, $"added_tokens entry {added.Count} needs a non-empty \"content\" and an integer \"id\" in 0..{count - 1}");
                added.Add((c.GetString()!, id));
                pieces[id] = (pieces[id].Item1, pieces[id].Item2, SentencePieceModelWriter.PieceType.Control);
            }
        }
        pieces[unkId] = (pieces[unkId].Item1, pieces[unkId].Item2, SentencePieceModelWriter.PieceType.Unknown);
        int eosId = IdOf(path, added, "</s>"), padId = IdOf(path, added, "<pad>");

        byte[] charsmap = ReadNormalizer(path, root);
        string prepend = ReadPrependScheme(path, root);

        SentencePieceTokenizer Make(bool dummyPrefix)
        {
            var spec = new SentencePieceModelWriter.Spec(pieces, unkId,
                // ML.Tokenizers 2.0.1 indexes the vocabulary with bos_id even when no BOS is ever added, so T5's "none"
                // (-1) crashes it; any valid id does, as addBeginningOfSentence is false.
                BosId: padId, EosId: eosId, PadId: padId, charsmap, AddDummyPrefix: dummyPrefix, RemoveExtraWhitespaces: true);
            using var stream = new MemoryStream(SentencePieceModelWriter.Write(spec));
            return SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
        }
        // Longest first, so a token that starts another is matched whole (tokenizers matches leftmost-longest).
        var addedSorted = added.OrderByDescending(a => a.Item1.Length).ToArray();
        return new T5Tokenizer(path, Make(true), prepend == "first" ? Make(false) : null, addedSorted, eosId, padId, unkId);
    }

    private static int IdOf(string path, List<(string Text, int Id)> added, string token)
    {
        foreach (var (text, id) in added) if (text == token) return id;
        throw Bad(path, $"added_tokens has no \"{token}\"");
    }

    /// <summary>The Precompiled charsmap of the normaliser; the other steps must be the ones SentencePiece's own
    /// whitespace handling equals (Strip right, Replace " {2,}" → "▁").</summary>
    private static byte[] ReadNormalizer(string path, JsonElement root)
    {
        var n = Field(path, root, "normalizer", JsonValueKind.Object);
        IEnumerable<JsonElement> steps = n.TryGetProperty("normalizers", out var list) && list.ValueKind == JsonValueKind.Array ? list.EnumerateArray() : [n];
        byte[]? charsmap = null;
        foreach (var s in steps)
        {
            string type = s.TryGetProperty("type", out var ty) && ty.ValueKind == JsonValueKind.String ? ty.GetString()! : "(none)";
            switch (type)
            {
                case "Precompiled":
                    var cm = Field(path, s, "precompiled_charsmap", JsonValueKind.String);
                    charsmap = Convert.FromBase64String(cm.GetString()!);
                    break;
                case "Strip" when s.TryGetProperty("strip_left", out var l) && l.ValueKind == JsonValueKind.False:
                    break;
                case "Replace" when s.TryGetProperty("pattern", out var p) && p.TryGetProperty("Regex", out var rx) && rx.GetString() == " {2,}"
                                    && s.TryGetProperty("content", out var c) && c.GetString() == "▁":
                    break;
                default:
                    throw Bad(path, $"normalizer step \"{type}\" ({Shorten(s.GetRawText())}) is not one of T5's (Precompiled, Strip right, Replace \" {{2,}}\" → \"▁\")");
            }
        }
        return charsmap ?? throw Bad(path, "the normalizer has no Precompiled charsmap (SentencePiece's normalisation table)");
    }

    /// <summary>The Metaspace pre-tokenizer's prepend_scheme ("always"; "first" in files converted with legacy=false;
    /// older files say add_prefix_space: true).</summary>
    private static string ReadPrependScheme(string path, JsonElement root)
    {
        var p = Field(path, root, "pre_tokenizer", JsonValueKind.Object);
        IEnumerable<JsonElement> steps = p.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array ? list.EnumerateArray() : [p];
        foreach (var s in steps)
        {
            if (!s.TryGetProperty("type", out var ty) || ty.GetString() != "Metaspace") continue;
            if (s.TryGetProperty("replacement", out var r) && r.GetString() != "▁") throw Bad(path, "pre_tokenizer Metaspace replacement must be \"▁\"");
            if (s.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String)
            {
                string scheme = ps.GetString()!;
                return scheme is "always" or "first" ? scheme : throw Bad(path, $"pre_tokenizer Metaspace prepend_scheme \"{scheme}\" is not supported (expected \"always\" or \"first\")");
            }
            return s.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.False
                ? throw Bad(path, "pre_tokenizer Metaspace without a prefix space is not supported") : "always";
        }
        throw Bad(path, "pre_tokenizer has no Metaspace step");
    }

    private static JsonElement Field(string path, JsonElement parent, string name, JsonValueKind kind) =>
        parent.TryGetProperty(name, out var v) && v.ValueKind == kind ? v : throw Bad(path, $"missing {name} ({kind})");

    private static TokenizerLoadException Bad(string path, string what) => new($"{path}: not a supported T5 tokenizer.json: {what}");

    private static string Shorten(string raw) => raw.Length > 80 ? raw[..77] + "..." : raw;

    /// <summary>Token ids of <paramref name="text"/> without the trailing &lt;/s&gt;. "" gives no ids.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        int segmentStart = 0, i = 0;
        bool first = true;
        while (i < text.Length)
        {
            var token = AddedTokenAt(text, i);
            if (token is null) { i++; continue; }
            EncodeSegment(text.AsSpan(segmentStart, i - segmentStart), first, ids);
            first = false;
            ids.Add(token.Value.Id);
            i += token.Value.Text.Length;
            segmentStart = i;
        }
        EncodeSegment(text.AsSpan(segmentStart), first, ids);
        return [.. ids];
    }

    private (string Text, int Id)? AddedTokenAt(string text, int at)
    {
        foreach (var a in _addedTokens)
            if (string.CompareOrdinal(text, at, a.Text, 0, a.Text.Length) == 0) return a;
        return null;
    }

    /// <summary>One stretch of text between added tokens. With prepend_scheme "first", only the stretch at the start
    /// of the text gets the "▁" prefix; a later one starts with "▁" only if it starts with a space.</summary>
    private void EncodeSegment(ReadOnlySpan<char> segment, bool first, List<int> ids)
    {
        if (segment.IsEmpty) return;
        var sp = first || _withoutPrefix is null || char.IsWhiteSpace(segment[0]) ? _withPrefix : _withoutPrefix;
        bool previousUnknown = false;
        foreach (int id in sp.EncodeToIds(segment, addBeginningOfSentence: false, addEndOfSentence: false))
        {
            bool unknown = id == UnkId;
            if (!(unknown && previousUnknown)) ids.Add(id); // fuse runs of <unk>
            previousUnknown = unknown;
        }
    }

    /// <summary>Text of ids (special tokens as written); for diagnostics.</summary>
    public string Decode(IEnumerable<int> ids) => _withPrefix.Decode(ids, considerSpecialTokens: true);

    /// <summary>
    /// What FluxPipeline._get_t5_prompt_embeds feeds T5 (<c>padding="max_length", max_length=L, truncation=True</c>):
    /// ids [maxLength] = the first maxLength − 1 tokens, &lt;/s&gt;, &lt;pad&gt; to maxLength. The mask marks the
    /// tokens and &lt;/s&gt; (FLUX passes no mask to T5: padding is attended to). An empty prompt is allowed.
    /// </summary>
    public TokenizedPrompt EncodeForFlux(string prompt, int maxLength = FluxDevMaxLength)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (maxLength < 1) throw new ArgumentException($"maxLength must be at least 1 (the </s>); got {maxLength}", nameof(maxLength));
        int[] tokens = Encode(prompt);
        int kept = Math.Min(tokens.Length, maxLength - 1);
        bool truncated = kept < tokens.Length;
        var ids = new int[maxLength];
        var mask = new int[maxLength];
        Array.Copy(tokens, ids, kept);
        ids[kept] = EosId;
        Array.Fill(ids, PadId, kept + 1, maxLength - kept - 1);
        Array.Fill(mask, 1, 0, kept + 1);
        string? warning = truncated
            ? $"the prompt is {tokens.Length + 1} T5 tokens with </s>; only the first {kept} tokens are used (max_sequence_length {maxLength})"
            : null;
        return new TokenizedPrompt(ids, mask, kept + 1, truncated, warning);
    }
}
