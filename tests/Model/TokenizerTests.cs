using System.Text.Json;
using PureFlux.Model.Text;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public class TokenizerTests
{
    private sealed record Case(string Text, int[] Ids, string ChatText, int[] ChatIds);

    private static readonly Lazy<Case[]> Cases = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Golden.Dir, "tokenizer", "qwen3-ids.json")));
        return [.. doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!,
            [.. c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32())],
            c.GetProperty("chat_text").GetString()!,
            [.. c.GetProperty("chat_ids").EnumerateArray().Select(x => x.GetInt32())]))];
    });

    public static TheoryData<int> CaseIndices()
    {
        var d = new TheoryData<int>();
        for (int i = 0; i < Cases.Value.Length; i++) d.Add(i);
        return d;
    }

    private static Qwen3Tokenizer Tok => Qwen3Tokenizer.BuiltIn;

    [Fact]
    public void Golden_file_has_the_expected_cases() => Assert.Equal(20, Cases.Value.Length);

    [Theory, MemberData(nameof(CaseIndices))]
    public void Encode_matches_reference_ids(int index)
    {
        var c = Cases.Value[index];
        Assert.Equal(c.Ids, Tok.Encode(c.Text));
    }

    [Theory, MemberData(nameof(CaseIndices))]
    public void Chat_template_and_ids_match_reference(int index)
    {
        var c = Cases.Value[index];
        string chat = Qwen3Tokenizer.ApplyChatTemplate(c.Text);
        Assert.Equal(c.ChatText, chat);
        Assert.Equal(c.ChatIds, Tok.Encode(chat));
    }

    [Fact]
    public void Special_tokens_come_from_added_tokens()
    {
        Assert.Equal(151643, Tok.PadId);
        Assert.Equal(151644, Tok.AddedTokens["<|im_start|>"]);
        Assert.Equal(151645, Tok.AddedTokens["<|im_end|>"]);
        Assert.Equal([151644], Tok.Encode("<|im_start|>"));
        Assert.Equal([151643], Tok.Encode("<|endoftext|>"));
    }

    [Fact]
    public void Decode_round_trips()
    {
        const string s = "a photo of <|im_start|> Ünïcödé 🦊 東京";
        Assert.Equal(s, Tok.Decode(Tok.Encode(s)));
    }

    [Fact]
    public void EncodeForKlein_pads_with_endoftext_and_masks()
    {
        var c = Cases.Value[0];
        var p = Tok.EncodeForKlein(c.Text, 32);
        Assert.Equal(32, p.Length);
        Assert.Equal(c.ChatIds.Length, p.RealTokens);
        Assert.False(p.Truncated);
        Assert.Null(p.Warning);
        Assert.Equal(c.ChatIds, p.Ids[..p.RealTokens]);
        Assert.All(p.Ids[p.RealTokens..], id => Assert.Equal(151643, id));
        Assert.All(p.AttentionMask[..p.RealTokens], m => Assert.Equal(1, m));
        Assert.All(p.AttentionMask[p.RealTokens..], m => Assert.Equal(0, m));
        Assert.Equal(Qwen3Tokenizer.KleinMaxLength, Tok.EncodeForKlein(c.Text).Length);
    }

    [Fact]
    public void EncodeForKlein_truncates_with_warning()
    {
        var c = Cases.Value[1];
        var p = Tok.EncodeForKlein(c.Text, 10);
        Assert.True(p.Truncated);
        Assert.Equal(10, p.RealTokens);
        Assert.Equal(c.ChatIds[..10], p.Ids);
        Assert.All(p.AttentionMask, m => Assert.Equal(1, m));
        Assert.Contains("only the first 10", p.Warning);
        Assert.Contains($"{c.ChatIds.Length} tokens", p.Warning);

        // Exactly maxLength tokens is not a truncation.
        var exact = Tok.EncodeForKlein(c.Text, c.ChatIds.Length);
        Assert.False(exact.Truncated);
        Assert.Equal(c.ChatIds, exact.Ids);
    }

    [Fact]
    public void EncodeForKlein_rejects_empty_prompt()
    {
        var e = Assert.Throws<ArgumentException>(() => Tok.EncodeForKlein(""));
        Assert.Contains("prompt is empty", e.Message);
        Assert.Throws<ArgumentException>(() => Tok.EncodeForKlein("   "));
        Assert.Throws<ArgumentException>(() => Tok.EncodeForKlein("x", 0));
    }

    [Fact]
    public void Missing_file_names_the_file()
    {
        string path = Path.Combine(Path.GetTempPath(), "pureflux-no-such-dir", "tokenizer.json");
        var e = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData("{ not json", "not a valid")]
    [InlineData("[1,2]", "top level")]
    [InlineData("{\"model\": {\"type\": \"WordPiece\"}}", "only \"BPE\"")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "Split regex")]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "model.vocab entry")]
    public void Invalid_file_gives_one_clear_error(string json, string expected)
    {
        string path = Path.Combine(Path.GetTempPath(), $"pureflux-bad-tokenizer-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try
        {
            var e = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(path));
            Assert.Contains(path, e.Message);
            Assert.Contains(expected, e.Message);
        }
        finally { File.Delete(path); }
    }
}
