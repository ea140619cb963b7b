using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace PureFlux.Model.Text;

/// <summary>
/// The CLIP-L tokenizer as the FLUX.1 pipelines feed CLIPTextModel (a snapshot's <c>tokenizer/</c> folder:
/// vocab.json + merges.txt). Reproduces what diffusers runs with transformers 5, whose CLIPTokenizer is a Hugging
/// Face <c>tokenizers</c> pipeline (transformers models/clip/tokenization_clip.py): normalise (NFC, every whitespace
/// run → one space, lowercase), split into words (<see cref="ClipWordSplitter"/>), byte-level BPE with the
/// end-of-word suffix "&lt;/w&gt;" on each word's last symbol, then BOS … EOS.
/// <para>Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/> (ByteLevel + EndOfWordSuffix) does the BPE exactly
/// (checked on every id of tests/golden/tokenizer/flux1-ids.json); the normaliser and the word splitter are ours:
/// .NET's regex classes \p{L} / \p{N} see UTF-16 code units, so letters outside the BMP would split differently from
/// the Rust regex.</para>
/// </summary>
public sealed class ClipTokenizer
{
    /// <summary>The FLUX.1 pipelines' CLIP length (tokenizer_max_length = 77): BOS, at most 75 tokens, EOS, EOS padding.</summary>
    public const int FluxMaxLength = 77;

    /// <summary>Files larger than this are refused before they are read (the real vocab.json is 1.1 MB).</summary>
    public const long MaxFileBytes = 64L << 20;

    private readonly BpeTokenizer _bpe;
    /// <summary>Id → vocabulary entry (byte-level text, "&lt;/w&gt;" on word ends), for <see cref="Decode"/>.</summary>
    private readonly Dictionary<int, string> _tokenOf;

    private ClipTokenizer(string directory, BpeTokenizer bpe, Dictionary<int, string> tokenOf, int bosId, int eosId, int padId)
    {
        Directory = directory;
        _bpe = bpe;
        _tokenOf = tokenOf;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
    }

    /// <summary>The folder this was loaded from.</summary>
    public string Directory { get; }

    /// <summary>&lt;|startoftext|&gt; (49406 in CLIP-L).</summary>
    public int BosId { get; }

    /// <summary>&lt;|endoftext|&gt; (49407 in CLIP-L).</summary>
    public int EosId { get; }

    /// <summary>The padding id; CLIP pads with &lt;|endoftext|&gt;.</summary>
    public int PadId { get; }

    /// <summary>The copy of FLUX.1's CLIP-L tokenizer shipped next to the binaries (assets/clip-l-tokenizer/).</summary>
    public static string BuiltInDirectory => Path.Combine(AppContext.BaseDirectory, "assets", "clip-l-tokenizer");

    private static readonly Lazy<ClipTokenizer> BuiltInTokenizer = new(() => FromDirectory(BuiltInDirectory));

    /// <summary>The built-in CLIP-L tokenizer (loaded once).</summary>
    public static ClipTokenizer BuiltIn => BuiltInTokenizer.Value;

    /// <summary>Loads a transformers CLIPTokenizer folder: vocab.json, merges.txt and (optional) tokenizer_config.json
    /// naming the BOS / EOS / pad tokens (defaults: &lt;|startoftext|&gt;, &lt;|endoftext|&gt;, &lt;|endoftext|&gt;).</summary>
    /// <exception cref="TokenizerLoadException">A missing, unreadable or malformed file; the message names it.</exception>
    public static ClipTokenizer FromDirectory(string directory)
    {
        string vocabPath = Path.Combine(directory, "vocab.json");
        string mergesPath = Path.Combine(directory, "merges.txt");
        var vocab = ReadVocab(vocabPath);
        var merges = ReadMerges(mergesPath);
        var (bos, eos, pad) = ReadSpecialTokens(Path.Combine(directory, "tokenizer_config.json"));
        int Id(string token, string role) => vocab.TryGetValue(token, out int id)
            ? id : throw new TokenizerLoadException($"{vocabPath}: the {role} token \"{token}\" is not in the vocabulary");
        int bosId = Id(bos, "BOS"), eosId = Id(eos, "EOS"), padId = Id(pad, "padding");

        // transformers registers BOS and EOS as added tokens: typed in a prompt they map to their ids, not to BPE pieces.
        var special = new Dictionary<string, int>(StringComparer.Ordinal) { [bos] = bosId, [eos] = eosId };
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                SpecialTokens = special,
                PreTokenizer = new ClipWordSplitter(special),
                Normalizer = new ClipNormalizer(),
                ByteLevel = true,
                EndOfWordSuffix = "</w>",
                UnknownToken = eos, // transformers' unk_token; unreachable with byte-level input
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new TokenizerLoadException($"{directory}: not a valid CLIP BPE tokenizer ({e.Message})", e);
        }
        var tokenOf = new Dictionary<int, string>(vocab.Count);
        foreach (var (token, id) in vocab) tokenOf[id] = token;
        return new ClipTokenizer(directory, bpe, tokenOf, bosId, eosId, padId);
    }

    /// <summary>Token ids of <paramref name="text"/> without BOS / EOS. "" gives no ids.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Length == 0 ? [] : [.. _bpe.EncodeToIds(text)];
    }

    /// <summary>
    /// Text of ids (special tokens as written), one space after each word, as transformers decodes CLIP ("&lt;/w&gt;" →
    /// " "); for diagnostics. ML.Tokenizers' own Decode drops the suffix without the space, so words are decoded one by one.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        var text = new StringBuilder();
        var word = new List<int>();
        foreach (int id in ids)
        {
            word.Add(id);
            if (!_tokenOf.TryGetValue(id, out var token) || token.EndsWith("</w>", StringComparison.Ordinal) || id == BosId || id == EosId)
            {
                text.Append(_bpe.Decode(word, considerSpecialTokens: true)).Append(' ');
                word.Clear();
            }
        }
        if (word.Count > 0) text.Append(_bpe.Decode(word, considerSpecialTokens: true));
        return text.ToString().TrimEnd(' ');
    }

    /// <summary>
    /// What FluxPipeline._get_clip_prompt_embeds feeds CLIP (<c>padding="max_length", max_length=77, truncation=True</c>):
    /// ids [maxLength] = BOS, the first maxLength − 2 tokens, EOS, EOS-as-padding to maxLength. The mask marks BOS…EOS
    /// (FLUX passes no mask to CLIP; it is there for callers that do). An empty prompt is allowed (the negative prompt).
    /// </summary>
    public TokenizedPrompt EncodeForFlux(string prompt, int maxLength = FluxMaxLength)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (maxLength < 2) throw new ArgumentException($"maxLength must be at least 2 (BOS and EOS); got {maxLength}", nameof(maxLength));
        int[] tokens = Encode(prompt);
        int kept = Math.Min(tokens.Length, maxLength - 2);
        bool truncated = kept < tokens.Length;
        var ids = new int[maxLength];
        var mask = new int[maxLength];
        ids[0] = BosId;
        Array.Copy(tokens, 0, ids, 1, kept);
        ids[kept + 1] = EosId;
        Array.Fill(ids, PadId, kept + 2, maxLength - kept - 2);
        Array.Fill(mask, 1, 0, kept + 2);
        string? warning = truncated
            ? $"the prompt is {tokens.Length} CLIP tokens; CLIP sees only the first {kept} (the pooled text vector ignores the rest; T5 still reads it)"
            : null;
        return new TokenizedPrompt(ids, mask, kept + 2, truncated, warning);
    }

    private static Dictionary<string, int> ReadVocab(string path)
    {
        byte[] bytes = PureFlux.Runtime.RegularFile.ReadAllBytes(path, MaxFileBytes, "CLIP vocabulary", m => new TokenizerLoadException(m));
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new TokenizerLoadException($"{path}: expected a JSON object of token → id");
            var vocab = new Dictionary<string, int>(doc.RootElement.GetPropertyCount(), StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0 || id > Qwen3Tokenizer.MaxTokenId)
                    throw new TokenizerLoadException($"{path}: entry \"{Shorten(p.Name)}\" must map to an integer id in 0..{Qwen3Tokenizer.MaxTokenId}");
                vocab[p.Name] = id;
            }
            if (vocab.Count == 0) throw new TokenizerLoadException($"{path}: the vocabulary is empty");
            return vocab;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new TokenizerLoadException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>merges.txt: an optional "#version" first line, then one "a b" pair per line in rank order. All pairs are
    /// used, as the tokenizers library reads the file (the old pure-Python class cut the list at 48 894; CLIP-L has
    /// exactly that many).</summary>
    private static List<string> ReadMerges(string path)
    {
        byte[] bytes = PureFlux.Runtime.RegularFile.ReadAllBytes(path, MaxFileBytes, "CLIP merges", m => new TokenizerLoadException(m));
        long bad = PureFlux.Runtime.RegularFile.InvalidUtf8Offset(bytes);
        if (bad >= 0) throw new TokenizerLoadException($"{path}: not valid UTF-8 text (byte {bad})");
        var merges = new List<string>();
        int lineNo = 0;
        foreach (var raw in Encoding.UTF8.GetString(bytes).Split('\n'))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                throw new TokenizerLoadException($"{path}: line {lineNo} is \"{Shorten(line)}\"; expected two symbols separated by one space");
            merges.Add(line);
        }
        if (merges.Count == 0) throw new TokenizerLoadException($"{path}: no merges");
        return merges;
    }

    /// <summary>bos_token / eos_token / pad_token of tokenizer_config.json (a string or an AddedToken object with "content").</summary>
    private static (string Bos, string Eos, string Pad) ReadSpecialTokens(string path)
    {
        const string bos = "<|startoftext|>", eos = "<|endoftext|>";
        if (!File.Exists(path)) return (bos, eos, eos);
        byte[] bytes = PureFlux.Runtime.RegularFile.ReadAllBytes(path, MaxFileBytes, "tokenizer config", m => new TokenizerLoadException(m));
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new TokenizerLoadException($"{path}: expected a JSON object");
            string Token(string field, string fallback)
            {
                if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
                if (v.ValueKind == JsonValueKind.String) return v.GetString()!;
                if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) return c.GetString()!;
                throw new TokenizerLoadException($"{path}: field '{field}' must be a string or an object with \"content\"");
            }
            string e = Token("eos_token", eos);
            return (Token("bos_token", bos), e, Token("pad_token", e));
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new TokenizerLoadException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    private static string Shorten(string s) => s.Length > 40 ? s[..37] + "..." : s;

    /// <summary>
    /// The normaliser of the tokenizers pipeline: NFC, every run of whitespace → one space (Rust regex \s = Unicode
    /// White_Space, the same set as .NET's \s), then per-character full lowercase mapping as Rust's char::to_lowercase
    /// (simple mapping except U+0130 İ → "i̇", the one multi-character lowercase in Unicode's SpecialCasing).
    /// </summary>
    private sealed class ClipNormalizer : Normalizer
    {
        public override string Normalize(string original)
        {
            string nfc = original.IsNormalized(NormalizationForm.FormC) ? original : original.Normalize(NormalizationForm.FormC);
            var sb = new StringBuilder(nfc.Length);
            bool inSpace = false;
            foreach (var rune in nfc.EnumerateRunes())
            {
                if (Rune.IsWhiteSpace(rune))
                {
                    if (!inSpace) sb.Append(' ');
                    inSpace = true;
                    continue;
                }
                inSpace = false;
                if (rune.Value == 0x130) sb.Append("i\u0307");
                else sb.Append(Rune.ToLowerInvariant(rune).ToString());
            }
            return sb.ToString();
        }

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }
}

/// <summary>
/// CLIP's word split, the tokenizers pre-tokenizer Split(<c>&lt;\|startoftext\|&gt;|&lt;\|endoftext\|&gt;|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+</c>,
/// removed, inverted): at each position the first alternative that matches wins, whitespace between matches is
/// dropped. Written over Unicode scalar values (Rust's regex semantics) instead of a .NET Regex, whose classes see
/// UTF-16 code units. The ByteLevel pre-tokenizer that follows in the pipeline re-splits with the GPT-2 pattern, which
/// never cuts one of these words again. Special tokens (added tokens) are emitted as words of their own.
/// </summary>
internal sealed class ClipWordSplitter(IReadOnlyDictionary<string, int> specialTokens) : PreTokenizer
{
    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text.ToString());

    internal List<(int Offset, int Length)> Split(string text)
    {
        var words = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            int special = MatchSpecial(text, i);
            if (special > 0) { words.Add((i, special)); i += special; continue; }
            var (kind, length) = At(text, i);
            if (kind == CharKind.Space) { i += length; continue; }
            int start = i;
            string? contraction = Array.Find(Contractions, c => string.CompareOrdinal(text, i, c, 0, c.Length) == 0);
            if (contraction is not null) i += contraction.Length;
            else if (kind == CharKind.Number) i += length; // [\p{N}]: one digit per word
            else
            {
                // [\p{L}]+ or [^\s\p{L}\p{N}]+: the longest run of the same kind. Added tokens are cut out of the text
                // before the pre-tokenizer runs, so a run also ends where one begins.
                i += length;
                while (i < text.Length && MatchSpecial(text, i) == 0)
                {
                    var (k, n) = At(text, i);
                    if (k != kind) break;
                    i += n;
                }
            }
            words.Add((start, i - start));
        }
        return words;
    }

    private int MatchSpecial(string text, int at)
    {
        int best = 0;
        foreach (var token in specialTokens.Keys)
            if (token.Length > best && string.CompareOrdinal(text, at, token, 0, token.Length) == 0) best = token.Length;
        return best;
    }

    private enum CharKind { Space, Letter, Number, Other }

    /// <summary>Kind and UTF-16 length of the character at <paramref name="at"/> (a lone surrogate counts as Other).</summary>
    private static (CharKind Kind, int Length) At(string text, int at)
    {
        Rune.DecodeFromUtf16(text.AsSpan(at), out var rune, out int length);
        return (Kind(rune), Math.Max(1, length));
    }

    private static CharKind Kind(Rune r)
    {
        if (Rune.IsWhiteSpace(r)) return CharKind.Space;
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharKind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharKind.Number,
            _ => CharKind.Other,
        };
    }
}
