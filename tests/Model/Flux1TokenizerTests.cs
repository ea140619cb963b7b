using System.Text.Json;
using PureFlux.Model.Text;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// FLUX.1's CLIP-L and T5-XXL tokenizers against tests/golden/tokenizer/flux1-ids.json (ids recorded with the Hugging
/// Face tokenizers library, laid out as the FLUX pipelines call the tokenizers). CLIP is checked against the fast
/// tokenizer's ids (what diffusers with transformers 5 feeds CLIP).
/// </summary>
public class Flux1TokenizerTests
{
    private sealed record Case(string Text, int[] ClipIds, int ClipEosIndex, bool ClipTruncated, int[] T5Ids512, int[] T5Ids256,
        bool T5Truncated512, bool T5Truncated256, int T5Untruncated);

    private static readonly Lazy<Case[]> Cases = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Golden.Dir, "tokenizer", "flux1-ids.json")));
        static int[] Ints(JsonElement c, string name) => [.. c.GetProperty(name).EnumerateArray().Select(x => x.GetInt32())];
        return [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!, Ints(c, "clip_input_ids_fast"), c.GetProperty("clip_eos_index").GetInt32(),
            c.GetProperty("clip_truncated").GetBoolean(), Ints(c, "t5_input_ids_512"), Ints(c, "t5_input_ids_256"),
            c.GetProperty("t5_truncated_512").GetBoolean(), c.GetProperty("t5_truncated_256").GetBoolean(),
            c.GetProperty("t5_num_tokens_untruncated").GetInt32()))];
    });

    public static TheoryData<int> CaseIndices()
    {
        var d = new TheoryData<int>();
        for (int i = 0; i < Cases.Value.Length; i++) d.Add(i);
        return d;
    }

    private static ClipTokenizer Clip => ClipTokenizer.BuiltIn;
    private static T5Tokenizer T5 => T5Tokenizer.BuiltIn;

    [Fact]
    public void Golden_file_has_the_expected_cases() => Assert.Equal(10, Cases.Value.Length);

    [Theory, MemberData(nameof(CaseIndices))]
    public void Clip_matches_recorded_ids(int index)
    {
        var c = Cases.Value[index];
        var p = Clip.EncodeForFlux(c.Text);
        Assert.Equal(c.ClipIds, p.Ids);
        Assert.Equal(c.ClipTruncated, p.Truncated);
        Assert.Equal(c.ClipEosIndex + 1, p.RealTokens); // BOS … first EOS
        Assert.Equal(c.ClipEosIndex, Array.IndexOf(p.Ids, Clip.EosId));
    }

    [Theory, MemberData(nameof(CaseIndices))]
    public void T5_matches_recorded_ids_at_512_and_256(int index)
    {
        var c = Cases.Value[index];
        var dev = T5.EncodeForFlux(c.Text, T5Tokenizer.FluxDevMaxLength);
        var schnell = T5.EncodeForFlux(c.Text, T5Tokenizer.FluxSchnellMaxLength);
        Assert.Equal(c.T5Ids512, dev.Ids);
        Assert.Equal(c.T5Ids256, schnell.Ids);
        Assert.Equal((c.T5Truncated512, c.T5Truncated256), (dev.Truncated, schnell.Truncated));
        Assert.Equal(c.T5Untruncated, T5.Encode(c.Text).Length + 1);
    }

    [Fact]
    public void Special_ids_are_clip_l_and_t5_ones()
    {
        Assert.Equal((49406, 49407, 49407), (Clip.BosId, Clip.EosId, Clip.PadId));
        Assert.Equal((1, 0, 2), (T5.EosId, T5.PadId, T5.UnkId));
    }

    /// <summary>Truncation: CLIP keeps 75 tokens between BOS and EOS; T5 keeps maxLength − 1 before &lt;/s&gt; (short
    /// lengths stand in for 77 / 512).</summary>
    [Fact]
    public void Truncation_keeps_room_for_the_end_tokens()
    {
        const string text = "a red fox in the snow, 35mm photo";
        int[] clipAll = Clip.Encode(text), t5All = T5.Encode(text);
        var clip = Clip.EncodeForFlux(text, 6);
        Assert.Equal([Clip.BosId, .. clipAll[..4], Clip.EosId], clip.Ids);
        Assert.True(clip.Truncated);
        Assert.NotNull(clip.Warning);
        var t5 = T5.EncodeForFlux(text, 5);
        Assert.Equal([.. t5All[..4], T5.EosId], t5.Ids);
        Assert.True(t5.Truncated);
        Assert.Equal([1, 0, 0], T5.EncodeForFlux("", 3).Ids);
        Assert.Equal([Clip.BosId, Clip.EosId, Clip.EosId], Clip.EncodeForFlux("", 3).Ids);
    }

    /// <summary>Added tokens typed in a prompt map to their ids (transformers' split_special_tokens=False).</summary>
    [Fact]
    public void Special_tokens_in_the_text_map_to_their_ids()
    {
        Assert.Equal([49407], Clip.Encode("<|endoftext|>"));
        var clip = Clip.Encode("a<|endoftext|>b");
        Assert.Equal([.. Clip.Encode("a"), 49407, .. Clip.Encode("b")], clip);
        Assert.Equal([1], T5.Encode("</s>"));
        Assert.Equal([.. T5.Encode("a"), 1, .. T5.Encode("b")], T5.Encode("a</s>b")); // prepend_scheme "always": each stretch gets "▁"
        Assert.Equal([32099], T5.Encode("<extra_id_0>"));
    }

    /// <summary>
    /// A tokenizer.json converted with legacy=false says prepend_scheme "first" (tokenizers' Metaspace then adds "▁"
    /// only to the stretch at offset 0): the same ids for plain text, but no "▁" after an added token unless a space
    /// follows it. ("b" is id 115, "▁" 3, "a" 9 in T5's vocabulary.)
    /// </summary>
    [Fact]
    public void T5_prepend_scheme_first_skips_the_prefix_after_added_tokens()
    {
        using var scratch = new ScratchDir();
        string path = Path.Combine(scratch.Dir, "tokenizer.json");
        string json = File.ReadAllText(T5Tokenizer.BuiltInPath);
        const string always = "\"prepend_scheme\": \"always\"";
        Assert.Contains(always, json);
        File.WriteAllText(path, json.Replace(always, "\"prepend_scheme\": \"first\""));
        var first = T5Tokenizer.FromFile(path);
        foreach (var c in Cases.Value) Assert.Equal(c.T5Ids512, first.EncodeForFlux(c.Text).Ids);
        Assert.Equal([3, 9, 1, 3, 115], T5.Encode("a</s>b"));
        Assert.Equal([3, 9, 1, 115], first.Encode("a</s>b"));
        Assert.Equal([3, 9, 1, 3, 115], first.Encode("a</s> b"));
        Assert.Equal([1, 115], first.Encode("</s>b"));
    }

    /// <summary>Runs of unknown characters are one &lt;unk&gt; (tokenizers' fuse_unk); ML.Tokenizers alone gives one per
    /// character. Separate words keep separate &lt;unk&gt;s.</summary>
    [Fact]
    public void T5_fuses_runs_of_unknown_characters()
    {
        Assert.Equal([3, 2], T5.Encode("一只在雪地里的狐狸"));
        Assert.Equal([3, 2, 3, 2], T5.Encode("一只 狐狸"));
        Assert.Equal([2, 2], T5.Encode("<unk><unk>")); // typed <unk> tokens are not fused
    }

    /// <summary>CLIP splits words over Unicode scalar values: a letter outside the BMP (𝐀, U+1D400) joins the letters
    /// around it, so "a" is not a word of its own (it would end in "&lt;/w&gt;").</summary>
    [Fact]
    public void Clip_treats_astral_letters_as_letters()
    {
        int aWord = Clip.Encode("a")[0];
        Assert.NotEqual(aWord, Clip.Encode("a\U0001D400b")[0]);
        Assert.Equal([aWord, .. Clip.Encode("b")], Clip.Encode("a b"));
        Assert.Equal(Clip.Encode("hello world"), Clip.Encode("  HELLO\t\n world "));
    }

    [Fact]
    public void Decode_round_trips_normalised_text()
    {
        Assert.Equal("a red fox in the snow , 3 5 mm photo", Clip.Decode(Clip.Encode("A red fox in the snow, 35mm photo")));
        Assert.Equal("A red fox in the snow, 35mm photo", T5.Decode(T5.Encode("A red fox in the snow, 35mm photo")));
    }

    [Fact]
    public void Tokenizers_load_from_snapshot_folders()
    {
        using var scratch = new ScratchDir();
        string clipDir = Path.Combine(scratch.Dir, "tokenizer"), t5Dir = Path.Combine(scratch.Dir, "tokenizer_2");
        Directory.CreateDirectory(clipDir);
        Directory.CreateDirectory(t5Dir);
        foreach (var f in Directory.GetFiles(ClipTokenizer.BuiltInDirectory)) File.Copy(f, Path.Combine(clipDir, Path.GetFileName(f)));
        File.Copy(T5Tokenizer.BuiltInPath, Path.Combine(t5Dir, "tokenizer.json"));
        var clip = ClipTokenizer.FromDirectory(clipDir);
        var t5 = T5Tokenizer.FromFile(Path.Combine(t5Dir, "tokenizer.json"));
        var c = Cases.Value[0];
        Assert.Equal(c.ClipIds, clip.EncodeForFlux(c.Text).Ids);
        Assert.Equal(c.T5Ids512, t5.EncodeForFlux(c.Text).Ids);
    }

    [Fact]
    public void Bad_tokenizer_files_are_named()
    {
        using var scratch = new ScratchDir();
        var e = Assert.Throws<TokenizerLoadException>(() => ClipTokenizer.FromDirectory(scratch.Dir));
        Assert.Contains("vocab.json", e.Message);

        string bpe = Path.Combine(scratch.Dir, "bpe.json");
        File.WriteAllText(bpe, """{ "model": { "type": "BPE", "vocab": {}, "merges": [] } }""");
        e = Assert.Throws<TokenizerLoadException>(() => T5Tokenizer.FromFile(bpe));
        Assert.Contains("bpe.json: not a supported T5 tokenizer.json: model.type is \"BPE\"", e.Message);

        string noCharsmap = Path.Combine(scratch.Dir, "nocharsmap.json");
        File.WriteAllText(noCharsmap, """
            { "model": { "type": "Unigram", "unk_id": 2, "vocab": [["<pad>", 0], ["</s>", 0], ["<unk>", 0], ["▁", -1]] },
              "added_tokens": [ {"id": 0, "content": "<pad>"}, {"id": 1, "content": "</s>"} ],
              "normalizer": { "type": "NFKC" }, "pre_tokenizer": { "type": "Metaspace", "replacement": "▁", "prepend_scheme": "always" } }
            """);
        e = Assert.Throws<TokenizerLoadException>(() => T5Tokenizer.FromFile(noCharsmap));
        Assert.Contains("normalizer step \"NFKC\"", e.Message);

        string merges = Path.Combine(scratch.Dir, "merges.txt");
        File.WriteAllText(Path.Combine(scratch.Dir, "vocab.json"), """{ "a</w>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2 }""");
        File.WriteAllText(merges, "#version: 0.2\na b c\n");
        e = Assert.Throws<TokenizerLoadException>(() => ClipTokenizer.FromDirectory(scratch.Dir));
        Assert.Contains("merges.txt: line 2 is \"a b c\"; expected two symbols separated by one space", e.Message);
    }
}
