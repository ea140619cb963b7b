using PureFlux.Model.Image;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// A snapshot as the Hugging Face cache holds it (blobs/ + snapshots/&lt;rev&gt;/ of relative links, for configs, weights,
/// the tokenizer and a sharded text encoder's index and shards alike) loads and generates exactly what the same
/// snapshot as plain files does; links to special files are one-line errors naming the link.
/// </summary>
public sealed class HfCacheSnapshotTests
{
    private static string[] Generate(string model, string outPng) =>
        ["generate", "--model", model, "--prompt", "a lighthouse at dawn", "--width", "64", "--height", "64", "--steps", "2",
         "--seed", "5", "--device", "cpu", "--no-prompt-cache", "--out", outPng];

    [Fact]
    public void Generates_from_a_hugging_face_cache_snapshot()
    {
        using var tmp = new ScratchDir();
        string src = tmp["download"];
        // The tiny model with a sharded text encoder (index + 2 shards), as klein 4B ships it.
        RandomSnapshot.Write(src, SnapshotPreset.Tiny with { Name = "tiny-sharded", TextShards = 2 }, 0);
        string snap = HfCache.Make(src, tmp["hub"]);
        foreach (var rel in new[] { "model_index.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
                     "text_encoder/model.safetensors.index.json", "text_encoder/model-00001-of-00002.safetensors", "vae/config.json",
                     "tokenizer/tokenizer.json", "scheduler/scheduler_config.json" })
        {
            var info = new FileInfo(Path.Combine(snap, rel));
            Assert.True(info.LinkTarget is { } t && t.StartsWith("../", StringComparison.Ordinal), $"{rel} is not a relative link");
        }

        var (code, o, e) = CliRunner.Run(Generate(snap, tmp["hf.png"]));
        Assert.True(code == 0, o + e);
        var (code2, o2, e2) = CliRunner.Run(Generate(TinySnapshot.Dir, tmp["plain.png"]));
        Assert.True(code2 == 0, o2 + e2);
        var a = ImageFile.Load(tmp["hf.png"]);
        var b = ImageFile.Load(tmp["plain.png"]);
        Assert.Equal(b.Rgb, a.Rgb);

        using var s = ModelSnapshot.Open(snap);
        Assert.True(s.TextEncoder.IsSharded);
        Assert.Equal(Path.Combine(snap, "tokenizer", "tokenizer.json"), s.TokenizerFile);
    }

    /// <summary>The golden tiny model (no tokenizer) laid out as a cache snapshot: cheap to make per test.</summary>
    private static string GoldenAsCache(ScratchDir tmp)
    {
        ScratchDir.CopyTree(Path.Combine(Golden.Dir, "model"), tmp["download"]);
        return HfCache.Make(tmp["download"], tmp["hub"]);
    }

    [Fact]
    public void The_golden_model_opens_from_cache_links()
    {
        using var tmp = new ScratchDir();
        string snap = GoldenAsCache(tmp);
        using var s = ModelSnapshot.Open(snap);
        using var plain = ModelSnapshot.Open(Path.Combine(Golden.Dir, "model"));
        Assert.Equal(plain.Transformer.Names.Order(), s.Transformer.Names.Order());
        Assert.True(plain.Vae.Bytes("decoder.conv_out.weight").SequenceEqual(s.Vae.Bytes("decoder.conv_out.weight")));
    }

    /// <summary>The prompt cache's encoder identity follows the links: it sizes the blob, not the link, so a
    /// re-downloaded (changed) blob is a different encoder and its cached prompts are not reused.</summary>
    [Fact]
    public void The_prompt_cache_identity_sizes_the_blob_not_the_link()
    {
        using var tmp = new ScratchDir();
        string snap = GoldenAsCache(tmp);
        string link = Path.Combine(snap, "text_encoder", "model.safetensors");
        string blob = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(link)!, new FileInfo(link).LinkTarget!));
        string first;
        using (var s = ModelSnapshot.Open(snap)) first = PureFlux.Model.Pipeline.PromptCache.EncoderIdentity(s, [1, 2, 3], PureFlux.Model.Layers.QuantMode.None);
        Assert.Contains($";{new FileInfo(blob).Length};", first);
        Assert.True(new FileInfo(blob).Length > 4096, "the blob, not the link's few bytes, must be sized");
        File.SetLastWriteTimeUtc(blob, new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc)); // a re-downloaded blob behind the same link
        string second;
        using (var s = ModelSnapshot.Open(snap)) second = PureFlux.Model.Pipeline.PromptCache.EncoderIdentity(s, [1, 2, 3], PureFlux.Model.Layers.QuantMode.None);
        Assert.NotEqual(first, second);
    }

    [Theory]
    [InlineData("vae/diffusion_pytorch_model.safetensors", "/dev/zero", "not a regular file")]
    [InlineData("transformer/config.json", "/dev/zero", "not a regular file")]
    [InlineData("model_index.json", "/dev/null", "not a regular file")]
    [InlineData("text_encoder/model.safetensors", "../../../blobs/no-such-blob", "does not exist")]
    [InlineData("vae/config.json", "..", "is a directory")]
    public void A_bad_link_is_one_line_naming_it(string rel, string target, string expected)
    {
        using var tmp = new ScratchDir();
        string snap = GoldenAsCache(tmp);
        HfCache.Relink(Path.Combine(snap, rel), target);
        var (code, o, e) = CliRunner.Run("generate", "--model", snap, "--prompt", "x", "--width", "32", "--height", "32", "--steps", "1",
            "--no-prompt-cache", "--device", "cpu", "--out", tmp["x.png"]);
        Assert.Equal(1, code);
        Assert.Single(e.TrimEnd().Split('\n'));
        Assert.Contains(rel, e);
        Assert.Contains(expected, e);
        Assert.DoesNotContain("Exception", e);
        Assert.False(File.Exists(tmp["x.png"]));
    }
}
