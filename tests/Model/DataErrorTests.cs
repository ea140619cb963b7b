using System.Text;
using PureFlux.Model.Config;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// Issue 10, defect 9: bad data never reaches the user as a raw .NET exception, and exits 1 (2 is for a bad command
/// line only). Each case here used to give IndexOutOfRange, KeyNotFound, OutOfMemory, Overflow or InvalidOperation.
/// </summary>
public sealed class DataErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-data-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("""{ "sample_size": [] }""", "field 'sample_size' has 0 entries; expected 1 to 2")]
    [InlineData("""{ "layers_per_block": 2147483647 }""", "field 'layers_per_block' is 2147483647; expected an integer <= 64")]
    [InlineData("""{ "block_out_channels": [128, 256, 512, 512, 512, 512, 512, 512, 512] }""", "field 'block_out_channels' has 9 entries; expected at most 8")]
    [InlineData("""{ "batch_norm_eps": 1e999 }""", "field 'batch_norm_eps' is 1e999 (a number); expected a finite number")]
    [InlineData("""{ "patch_size": [2] }""", "field 'patch_size' has 1 entries; expected 2")]
    [InlineData("""{ "latent_channels": 1e12 }""", "field 'latent_channels' is 1e12 (a number); expected an integer")]
    public void Vae_config_sizes_are_bounded(string json, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => VaeConfig.Parse(json, "v.json"));
        Assert.Equal("v.json: " + expected, e.Message);
    }

    [Theory]
    [InlineData("""{ "num_layers": 2147483647 }""", "field 'num_layers' is 2147483647; expected an integer <= 1024")]
    [InlineData("""{ "num_single_layers": 2147483648 }""", "field 'num_single_layers' is 2147483648 (a number); expected an integer")]
    [InlineData("""{ "eps": 1e999 }""", "field 'eps' is 1e999 (a number); expected a finite number")]
    [InlineData("""{ "mlp_ratio": 1e300 }""", "field 'mlp_ratio' is 1E+300; expected a number <= 64")]
    [InlineData("""{ "num_attention_heads": 1024, "attention_head_dim": 4096, "axes_dims_rope": [1024, 1024, 1024, 1024] }""", "field 'num_attention_heads' × attention_head_dim = 4194304; expected at most 1048576")]
    [InlineData("""{ "axes_dims_rope": [] }""", "field 'axes_dims_rope' has 0 entries; expected 1 to 16")]
    public void Transformer_config_sizes_are_bounded(string json, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => Flux2TransformerConfig.Parse(json, "t.json"));
        Assert.Equal("t.json: " + expected, e.Message);
    }

    [Theory]
    [InlineData("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 2147483647", "field 'num_hidden_layers' is 2147483647; expected an integer <= 1024")]
    [InlineData("\"vocab_size\": 100", "\"vocab_size\": 1000000000", "field 'vocab_size' is 1000000000; expected an integer <= 16777216")]
    [InlineData("\"rms_norm_eps\": 1e-6", "\"rms_norm_eps\": -1e999", "field 'rms_norm_eps' is -1e999 (a number); expected a finite number")]
    public void Qwen3_config_sizes_are_bounded(string from, string to, string expected)
    {
        const string json = """{ "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "rms_norm_eps": 1e-6 }""";
        Assert.Contains(from, json);
        var e = Assert.Throws<ModelConfigException>(() => Qwen3Config.Parse(json.Replace(from, to), "te.json"));
        Assert.Equal("te.json: " + expected, e.Message);
    }

    [Fact]
    public void Invalid_utf8_and_undecodable_strings_in_configs_are_named()
    {
        var bytes = Encoding.UTF8.GetBytes("""{ "_class_name": "Flux2KleinPipeline", "x": "ab" }""");
        bytes[^4] = 0xFF;
        var e = Assert.Throws<ModelConfigException>(() => ModelIndex.Load(Write("mi.json", bytes)));
        Assert.Contains("mi.json: not valid UTF-8 text (byte", e.Message);
        e = Assert.Throws<ModelConfigException>(() => ModelIndex.Parse("""{ "_class_name": "\ud800" }""", "mi.json"));
        Assert.StartsWith("mi.json: field '_class_name' holds text that is not valid Unicode", e.Message);
        e = Assert.Throws<ModelConfigException>(() => ModelIndex.Parse("""{ "_class_name": "X", "vae": ["diffusers", "\udc00"] }""", "mi.json"));
        Assert.StartsWith("mi.json: field 'vae[1]' holds text", e.Message);
    }

    [Fact]
    public void Safetensors_header_with_invalid_utf8_or_a_lone_surrogate_names_the_file()
    {
        string Raw(string name, byte[] header)
        {
            string p = Path.Combine(_dir, name);
            File.WriteAllBytes(p, [.. BitConverter.GetBytes((ulong)header.Length), .. header]);
            return p;
        }
        var header = Encoding.UTF8.GetBytes("""{"ab":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}""");
        header[3] = 0xC3; // a lead byte followed by '"': invalid UTF-8
        string bad = Raw("utf8.safetensors", header);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(bad));
        Assert.Equal($"{bad}: header is not valid UTF-8 (byte 11 of the file): corrupt or not a safetensors file", e.Message);

        string lone = Raw("surrogate.safetensors", Encoding.UTF8.GetBytes("""{"\ud800":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"""));
        e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(lone));
        Assert.StartsWith($"{lone}: header holds a name or string that is not valid text", e.Message);

        string meta = Raw("meta.safetensors", Encoding.UTF8.GetBytes("""{"__metadata__":{"k":"\udfff"}}"""));
        Assert.StartsWith($"{meta}: header holds", Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(meta)).Message);

        string newline = Raw("newline.safetensors", Encoding.UTF8.GetBytes("""{"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"""));
        var m = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(newline)).Message;
        Assert.DoesNotContain('\n', m);
    }

    [Theory]
    [InlineData("{}", "expected an object with a \"cases\" array")]
    [InlineData("""{ "cases": {} }""", "expected an object with a \"cases\" array")]
    [InlineData("""{ "cases": [] }""", "field 'cases' is empty")]
    [InlineData("""{ "cases": [ { "width": 64, "height": 64 } ] }""", "field 'cases[0].num_inference_steps' is missing; expected an integer in 1..1000")]
    [InlineData("""{ "cases": [ { "num_inference_steps": 4, "width": 64, "height": 1e12 } ] }""", "field 'cases[0].height' is 1e12; expected an integer in 16..16384")]
    [InlineData("""{ "cases": [ { "num_inference_steps": 4, "width": 64, "height": 64, "sigmas": [1, "x"] } ] }""", "field 'cases[0].sigmas[1]' is \"x\"; expected a finite number")]
    [InlineData("[1, 2", "not valid JSON")]
    public void Verify_reports_a_bad_scheduler_json_in_one_line_and_exits_1(string json, string expected)
    {
        string golden = Path.Combine(_dir, "golden");
        CopyDirectory(Golden.Dir + "/model", Path.Combine(golden, "model"));
        string path = Path.Combine(golden, "scheduler.json");
        File.WriteAllText(path, json);
        var (code, _, e) = Run("verify", golden, "--device", "cpu");
        Assert.Equal(1, code);
        string last = e.TrimEnd().Split('\n')[^1]; // after "verifying DIR on cpu"
        Assert.StartsWith($"error: {path}: ", last);
        Assert.Contains(expected, last);
        Assert.Single(e.Split('\n'), l => l.StartsWith("error:"));
        Assert.DoesNotContain("Exception", e);
    }

    [Fact]
    public void Unsupported_config_values_are_data_errors_exit_1_not_usage()
    {
        string snap = Path.Combine(_dir, "snap");
        CopyDirectory(TinySnapshot.Dir, snap);
        string cfg = Path.Combine(snap, "transformer", "config.json");
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"guidance_embeds\": false", "\"guidance_embeds\": true"));
        Assert.Contains("\"guidance_embeds\": true", File.ReadAllText(cfg));
        var (code, _, e) = Run("generate", "--model", snap, "-p", "a cat", "-W", "64", "-H", "64", "--device", "cpu", "--no-prompt-cache",
            "--out", Path.Combine(_dir, "x.png"));
        Assert.Equal(1, code);
        Assert.Contains("transformer/config.json: field 'guidance_embeds' is true", e);

        // Usage errors stay 2.
        (code, _, e) = Run("generate", "--model", snap, "-p", "a cat", "--text-layers", "0", "--out", Path.Combine(_dir, "x.png"));
        Assert.Equal(2, code);
        Assert.Contains("--text-layers", e);
    }

    [Fact]
    public void Tokenizer_json_that_is_not_text_or_not_bpe_is_a_load_error()
    {
        var t = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(Write("tok.json", [0x7B, 0xFF, 0x7D])));
        Assert.Contains("not valid UTF-8 text (byte 1)", t.Message);
        t = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(Write("tok2.json", Encoding.UTF8.GetBytes("""{"model": {"type": "BPE", "vocab": {"\ud800": 1}, "merges": []}}"""))));
        Assert.Contains("tok2.json: not a valid byte-level BPE tokenizer.json", t.Message);
    }

    [Theory]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 2147483647}, "merges": []}}""", "model.vocab entry \"a\" must map to an integer id in 0..4194303")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 2000000000, "content": "<x>"}]}""", "needs \"content\" and an integer \"id\" in 0..4194303")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [7]}""", "added_tokens entry 7 needs")]
    public void Tokenizer_ids_are_bounded_before_tables_are_sized_by_them(string json, string expected)
    {
        // A 2^31 id made the BPE builder allocate by the largest id: minutes, then OutOfMemoryException (found by FuzzTests).
        var t = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(Write("ids.json", Encoding.UTF8.GetBytes(json))));
        Assert.Contains(expected, t.Message);
    }

    private string Write(string name, byte[] bytes)
    {
        string p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    internal static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
