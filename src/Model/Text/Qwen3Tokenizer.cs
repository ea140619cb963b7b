using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace PureFlux.Model.Text;

/// <summary>Raised when a tokenizer.json cannot be read or does not describe a Qwen-style byte-level BPE.</summary>
public sealed class TokenizerLoadException(string message, Exception? inner = null) : Exception(message.ReplaceLineEndings(" "), inner);

/// <summary>
/// A prompt ready for the text encoder: <see cref="Ids"/> and <see cref="AttentionMask"/> have length
/// <c>maxLength</c>; the first <see cref="RealTokens"/> entries are the prompt, the rest is padding.
/// </summary>
public sealed record TokenizedPrompt(int[] Ids, int[] AttentionMask, int RealTokens, bool Truncated, string? Warning)
{
    public int Length => Ids.Length;
}

/// <summary>
/// The Qwen3 tokenizer (byte-level BPE, as in Hugging Face's Qwen2TokenizerFast), built with
/// Microsoft.ML.Tokenizers from a snapshot's tokenizer.json: NFC normalisation, the Qwen split regex,
/// GPT-2 byte-to-unicode mapping, BPE merges by rank, and every entry of <c>added_tokens</c> matched
/// verbatim in the input before any of that (so "&lt;|im_start|&gt;" typed in a prompt becomes id 151644,
/// as in transformers with split_special_tokens=False).
/// </summary>
public sealed class Qwen3Tokenizer
{
    /// <summary>The chat wrapping FLUX.2 [klein] applies (Qwen3 chat template, one user turn,
    /// add_generation_prompt=True, enable_thinking=False).</summary>
    public const string ChatTemplate = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

    /// <summary>Klein's text length (Flux2KleinPipeline's max_sequence_length default).</summary>
    public const int KleinMaxLength = 512;

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _addedTokens;

    private Qwen3Tokenizer(string path, BpeTokenizer bpe, Dictionary<string, int> addedTokens, int padId)
    {
        Path = path;
        _bpe = bpe;
        _addedTokens = addedTokens;
        PadId = padId;
    }

    /// <summary>The tokenizer.json this was built from.</summary>
    public string Path { get; }

    /// <summary>Id of &lt;|endoftext|&gt; (151643 in Qwen3), used to right-pad prompts.</summary>
    public int PadId { get; }

    /// <summary>Added tokens (special or not) and their ids, e.g. &lt;|im_start|&gt; → 151644.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens => _addedTokens;

    /// <summary>The copy of the real Qwen3 tokenizer.json shipped next to the binaries (assets/qwen3-tokenizer/).</summary>
    public static string BuiltInPath => System.IO.Path.Combine(AppContext.BaseDirectory, "assets", "qwen3-tokenizer", "tokenizer.json");

    private static readonly Lazy<Qwen3Tokenizer> BuiltInTokenizer = new(() => FromFile(BuiltInPath));

    /// <summary>The built-in tokenizer (loaded once; about 1 s).</summary>
    public static Qwen3Tokenizer BuiltIn => BuiltInTokenizer.Value;

    /// <summary>Loads a Hugging Face tokenizer.json (model type BPE, byte-level).</summary>
    /// <exception cref="TokenizerLoadException">Missing, unreadable or unsupported file; the message names it.</exception>
    public static Qwen3Tokenizer FromFile(string path)
    {
        byte[] bytes = PureFlux.Runtime.RegularFile.ReadAllBytes(path, MaxFileBytes, "tokenizer file", m => new TokenizerLoadException(m));
        long bad = PureFlux.Runtime.RegularFile.InvalidUtf8Offset(bytes);
        if (bad >= 0) throw Bad(path, $"not valid UTF-8 text (byte {bad})");
        try
        {
            return Build(path, bytes);
        }
        catch (TokenizerLoadException) { throw; }
        catch (Exception e) when (e is not (OutOfMemoryException or InsufficientExecutionStackException or OperationCanceledException))
        {
            // The file is untrusted input: whatever the JSON reader, the regex parser or the BPE builder rejects is a bad file.
            string why = e is JsonException or InvalidOperationException or ArgumentException or FormatException or KeyNotFoundException or RegexParseException
                ? e.Message : $"{e.GetType().Name}: {e.Message}";
            throw new TokenizerLoadException($"{path}: not a valid byte-level BPE tokenizer.json ({why.ReplaceLineEndings(" ")})", e);
        }
    }

    /// <summary>Real tokenizer.json files are 2–35 MB (Qwen3: 11 MB); larger is refused before it is read.</summary>
    public const long MaxFileBytes = 256L << 20;

    private static Qwen3Tokenizer Build(string path, byte[] bytes)
    {
        using var doc = JsonDocument.Parse(bytes);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw Bad(path, "the top level must be a JSON object");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw Bad(path, "missing \"model\" object");
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "(none)";
        if (type != "BPE") throw Bad(path, $"model.type is \"{type}\"; only \"BPE\" is supported");
        if (!model.TryGetProperty("vocab", out var vocabEl) || vocabEl.ValueKind != JsonValueKind.Object)
            throw Bad(path, "missing model.vocab object");
        if (!model.TryGetProperty("merges", out var mergesEl) || mergesEl.ValueKind != JsonValueKind.Array)
            throw Bad(path, "missing model.merges array");

        var vocab = new Dictionary<string, int>(vocabEl.GetPropertyCount(), StringComparer.Ordinal);
        foreach (var p in vocabEl.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0 || id > MaxTokenId)
                throw Bad(path, $"model.vocab entry \"{p.Name}\" must map to an integer id in 0..{MaxTokenId}");
            vocab[p.Name] = id;
        }
        if (vocab.Count == 0) throw Bad(path, "model.vocab is empty");

        // Merges come as "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20).
        var merges = new List<string>(mergesEl.GetArrayLength());
        foreach (var m in mergesEl.EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String) merges.Add(m.GetString()!);
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                merges.Add(m[0].GetString() + " " + m[1].GetString());
            else throw Bad(path, $"model.merges entry {Shorten(m.GetRawText())} must be \"a b\" or [\"a\", \"b\"]");
        }

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var addedEl) && addedEl.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in addedEl.EnumerateArray())
            {
                if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String
                    || !a.TryGetProperty("id", out var i) || i.ValueKind != JsonValueKind.Number || !i.TryGetInt32(out int id) || id < 0 || id > MaxTokenId)
                    throw Bad(path, $"added_tokens entry {Shorten(a.GetRawText())} needs \"content\" and an integer \"id\" in 0..{MaxTokenId}");
                // An empty token would match everywhere without consuming input: refused (the pre-tokenizer must always advance).
                if (c.GetString()!.Length == 0) throw Bad(path, $"added_tokens entry {Shorten(a.GetRawText())} has an empty \"content\"");
                added[c.GetString()!] = id;
            }
        }

        string pattern = FindSplitRegex(root) ?? throw Bad(path, "pre_tokenizer has no Split regex (expected the Qwen/GPT-4 style split pattern)");
        var regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant, SplitRegexTimeout);

        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            SpecialTokens = added,
            PreTokenizer = new SplitPreTokenizer(regex, added),
            Normalizer = HasNfc(root) ? new NfcNormalizer() : null,
            ByteLevel = true,
        };
        var bpe = BpeTokenizer.Create(options);

        if (!added.TryGetValue("<|endoftext|>", out int pad)) throw Bad(path, "added_tokens lacks <|endoftext|> (the padding token)");
        return new Qwen3Tokenizer(path, bpe, added, pad);
    }

    private static TokenizerLoadException Bad(string path, string what) => new($"{path}: not a valid byte-level BPE tokenizer.json: {what}");

    /// <summary>Token ids above this are refused: the BPE tables are sized by the largest id (real vocabularies stay below 300 000).</summary>
    public const int MaxTokenId = (1 << 22) - 1;

    private static string Shorten(string raw) => raw.Length > 80 ? raw[..77] + "..." : raw;

    /// <summary>The pattern of the first Split pre-tokenizer (top level or inside a Sequence).</summary>
    private static string? FindSplitRegex(JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object) return null;
        IEnumerable<JsonElement> items = pre.TryGetProperty("pretokenizers", out var seq) && seq.ValueKind == JsonValueKind.Array
            ? seq.EnumerateArray() : [pre];
        foreach (var p in items)
        {
            if (p.TryGetProperty("type", out var ty) && ty.GetString() == "Split"
                && p.TryGetProperty("pattern", out var pat) && pat.ValueKind == JsonValueKind.Object
                && pat.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String)
                return rx.GetString();
        }
        return null;
    }

    private static bool HasNfc(JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind != JsonValueKind.Object) return false;
        if (n.TryGetProperty("type", out var ty) && ty.GetString() == "NFC") return true;
        return n.TryGetProperty("normalizers", out var list) && list.ValueKind == JsonValueKind.Array
            && list.EnumerateArray().Any(x => x.TryGetProperty("type", out var tt) && tt.GetString() == "NFC");
    }

    /// <summary>Token ids of <paramref name="text"/> as is (no chat template, no padding). "" gives no ids.</summary>
    /// <exception cref="TokenizerLoadException">The file's Split regex ran past <see cref="SplitRegexTimeout"/> on one match
    /// (a catastrophically backtracking pattern); the message names the file.</exception>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return [];
        try
        {
            return [.. _bpe.EncodeToIds(text)];
        }
        catch (RegexMatchTimeoutException)
        {
            throw new TokenizerLoadException($"{Path}: the pre_tokenizer Split regex took more than {SplitRegexTimeout.TotalSeconds:0} s on one match of a {text.Length}-character text (a pattern that backtracks catastrophically)");
        }
    }

    /// <summary>The longest one match of the file's Split regex may take. The Qwen pattern takes microseconds; a pattern from
    /// the file is untrusted, and .NET's backtracking engine can take exponential time on nested quantifiers.</summary>
    public static readonly TimeSpan SplitRegexTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Text of ids (added tokens as written); for diagnostics.</summary>
    public string Decode(IEnumerable<int> ids) => _bpe.Decode(ids, considerSpecialTokens: true);

    /// <summary>
    /// Wraps a prompt as Qwen3's chat template does with add_generation_prompt=True: enable_thinking=False (FLUX.2 klein,
    /// see <see cref="ChatTemplate"/>) appends an empty think block; enable_thinking=True (Z-Image) ends after
    /// "assistant\n".
    /// </summary>
    public static string ApplyChatTemplate(string prompt, bool enableThinking = false)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n" + (enableThinking ? "" : "<think>\n\n</think>\n\n");
    }

    /// <summary>
    /// Z-Image's text input: the prompt through the chat template with enable_thinking=True, truncated to
    /// <paramref name="maxLength"/> (the pipeline's max_sequence_length, 512). The pipeline pads and then drops the
    /// padding again; padding cannot reach real tokens under causal attention, so only the real ids are returned
    /// (mask all ones).
    /// </summary>
    public TokenizedPrompt EncodeForZImage(string prompt, int maxLength = KleinMaxLength)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (maxLength < 1) throw new ArgumentException($"maxLength must be at least 1; got {maxLength}", nameof(maxLength));
        int[] all = Encode(ApplyChatTemplate(prompt, enableThinking: true));
        bool truncated = all.Length > maxLength;
        int real = Math.Min(all.Length, maxLength);
        var ids = all.AsSpan(0, real).ToArray();
        var mask = Enumerable.Repeat(1, real).ToArray();
        string? warning = truncated
            ? $"the prompt is {all.Length} tokens with the chat template; only the first {maxLength} are used, the rest (about {all.Length - maxLength} tokens at the end of the prompt) is ignored"
            : null;
        return new TokenizedPrompt(ids, mask, real, truncated, warning);
    }

    /// <summary>
    /// Klein's text input: the chat-wrapped prompt tokenised, truncated to <paramref name="maxLength"/> and
    /// right-padded with &lt;|endoftext|&gt;; mask 1 for real tokens, 0 for padding. Ids [maxLength], mask [maxLength].
    /// </summary>
    /// <exception cref="ArgumentException">Empty (or whitespace-only) prompt unless <paramref name="allowEmpty"/> (the
    /// negative prompt of CFG is "" by default, encoded through the chat template like any prompt), or maxLength &lt; 1.</exception>
    public TokenizedPrompt EncodeForKlein(string prompt, int maxLength = KleinMaxLength, bool allowEmpty = false)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (!allowEmpty && string.IsNullOrWhiteSpace(prompt))
            throw new ArgumentException("the prompt is empty; describe the image to generate", nameof(prompt));
        if (maxLength < 1)
            throw new ArgumentException($"maxLength must be at least 1; got {maxLength}", nameof(maxLength));

        int[] all = Encode(ApplyChatTemplate(prompt));
        bool truncated = all.Length > maxLength;
        int real = Math.Min(all.Length, maxLength);
        var ids = new int[maxLength];
        var mask = new int[maxLength];
        Array.Copy(all, ids, real);
        Array.Fill(ids, PadId, real, maxLength - real);
        Array.Fill(mask, 1, 0, real);
        string? warning = truncated
            ? $"the prompt is {all.Length} tokens with the chat template; only the first {maxLength} are used, the rest (about {all.Length - maxLength} tokens at the end of the prompt) is ignored"
            : null;
        return new TokenizedPrompt(ids, mask, real, truncated, warning);
    }

    /// <summary>
    /// Splits text for the BPE as Microsoft.ML.Tokenizers' RegexPreTokenizer does — added tokens are cut out first (the
    /// leftmost match of their escaped alternation, in the file's order), the text between them into the Split regex's
    /// successive matches — except that it always advances: a zero-length match of the Split regex (a pattern from the
    /// file such as "" or "(?=.)") yields no piece and the search resumes one character later, as Hugging Face tokenizers
    /// drops empty splits. RegexPreTokenizer restarts at the end of an empty match, i.e. where it began, and yields
    /// empty pieces forever (an unbounded allocation from a byte of the file). Added tokens are non-empty (checked at load).
    /// For patterns whose matches are never empty (every real tokenizer.json) the pieces are exactly RegexPreTokenizer's.
    /// </summary>
    private sealed class SplitPreTokenizer : PreTokenizer
    {
        private readonly Regex _split;
        private readonly Regex? _added;

        public SplitPreTokenizer(Regex split, IReadOnlyDictionary<string, int> addedTokens)
        {
            _split = split;
            if (addedTokens.Count > 0)
                _added = new Regex(string.Join("|", addedTokens.Keys.Select(Regex.Escape)), RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }

        public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
            string.IsNullOrEmpty(text) ? [] : Split(text.AsSpan());

        public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) =>
            text.IsEmpty ? [] : Split(text);

        /// <summary>All pieces at once (the text is a prompt: short, and every piece covers at least one character).</summary>
        private List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
        {
            var pieces = new List<(int Offset, int Length)>();
            int at = 0;
            while (at < text.Length)
            {
                int end = text.Length;
                (int Offset, int Length) token = default;
                bool hasToken = _added is not null && FirstMatch(_added, text, at, text.Length, out token) && token.Length > 0;
                if (hasToken) end = token.Offset;
                int from = at;
                while (from < end && FirstMatch(_split, text, from, end, out var m))
                {
                    if (m.Length > 0)
                    {
                        pieces.Add(m);
                        from = m.Offset + m.Length;
                    }
                    else
                        from = m.Offset + (char.IsHighSurrogate(text[m.Offset]) && m.Offset + 1 < end && char.IsLowSurrogate(text[m.Offset + 1]) ? 2 : 1);
                }
                if (!hasToken) break;
                pieces.Add(token);
                at = token.Offset + token.Length;
            }
            return pieces;
        }

        /// <summary>The first match of <paramref name="regex"/> in text[from..end) (searched as that slice, as RegexPreTokenizer does).</summary>
        private static bool FirstMatch(Regex regex, ReadOnlySpan<char> text, int from, int end, out (int Offset, int Length) match)
        {
            foreach (var m in regex.EnumerateMatches(text[from..end]))
            {
                match = (from + m.Index, m.Length);
                return true;
            }
            match = default;
            return false;
        }
    }

    /// <summary>Unicode NFC, as the Qwen tokenizer.json's normalizer asks.</summary>
    private sealed class NfcNormalizer : Normalizer
    {
        public override string Normalize(string original) =>
            original.IsNormalized(NormalizationForm.FormC) ? original : original.Normalize(NormalizationForm.FormC);

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }
}
