using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>Encoded prompts on disk: hits skip the encoder, anything doubtful is a miss, an unwritable cache only warns.</summary>
public sealed class PromptCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-prompts-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int[] Ids, int[] Mask) Tokens(ModelSnapshot snapshot, string prompt)
    {
        var t = snapshot.LoadTokenizer().EncodeForKlein(prompt);
        return (t.Ids, t.AttentionMask);
    }

    [Fact]
    public void A_second_pipeline_reads_the_prompt_from_disk_instead_of_encoding()
    {
        var dev = Backends.Get("cpu");
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        var (ids, mask) = Tokens(snapshot, "a lighthouse at dawn");
        float[] encoded;
        using (var first = new Flux2KleinModel(snapshot, dev, new ModelOptions { PromptCache = new PromptCache(_dir) }))
        {
            Assert.False(first.IsPromptCached(ids, mask));
            using var e = first.EncodePrompt(ids, mask);
            encoded = e.ToFloatArray();
            Assert.Null(first.CacheWarning);
        }
        var file = Assert.Single(Directory.GetFiles(_dir, "*.safetensors"));

        // Replace the stored values with a marker: a second pipeline that returns the marker read the file, not the encoder.
        int s = ids.Length, dim = snapshot.TransformerConfig.JointAttentionDim;
        var marker = encoded.Select((v, i) => v + (i % 7)).ToArray();
        string key = Path.GetFileNameWithoutExtension(file);
        Assert.True(new PromptCache(_dir).Store(key, marker, s, dim));
        using (var second = new Flux2KleinModel(snapshot, dev, new ModelOptions { PromptCache = new PromptCache(_dir) }))
        {
            Assert.True(second.IsPromptCached(ids, mask));
            using var e = second.EncodePrompt(ids, mask);
            Assert.Equal(marker, e.ToFloatArray());
        }

        // A truncated file is a miss: the encoder runs again, the result is the real one and the file is rewritten.
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..(bytes.Length / 2)]);
        using (var third = new Flux2KleinModel(snapshot, dev, new ModelOptions { PromptCache = new PromptCache(_dir) }))
        {
            using var e = third.EncodePrompt(ids, mask);
            Assert.Equal(encoded, e.ToFloatArray());
        }
        Assert.Equal(encoded, new PromptCache(_dir).TryLoad(key, s, dim));
    }

    [Fact]
    public void The_key_depends_on_tokens_layers_quant_and_the_weight_files()
    {
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        var (ids, mask) = Tokens(snapshot, "a red fox");
        int[] layers = [1, 2, 3];
        string k = PromptCache.Key(snapshot, layers, QuantMode.None, ids, mask);
        Assert.Equal(k, PromptCache.Key(snapshot, layers, QuantMode.None, ids, mask));
        Assert.Equal(64, k.Length);
        var otherIds = (int[])ids.Clone();
        otherIds[0]++;
        Assert.NotEqual(k, PromptCache.Key(snapshot, layers, QuantMode.None, otherIds, mask));
        var otherMask = (int[])mask.Clone();
        otherMask[^1] ^= 1;
        Assert.NotEqual(k, PromptCache.Key(snapshot, layers, QuantMode.None, ids, otherMask));
        Assert.NotEqual(k, PromptCache.Key(snapshot, [1, 2], QuantMode.None, ids, mask));
        Assert.NotEqual(k, PromptCache.Key(snapshot, layers, QuantMode.Int8, ids, mask));

        // Another copy of the same snapshot (other path, other time stamps) must not share entries.
        string copy = Path.Combine(_dir, "copy");
        CopyDirectory(TinySnapshot.Dir, copy);
        using var copied = ModelSnapshot.Open(copy);
        Assert.NotEqual(k, PromptCache.Key(copied, layers, QuantMode.None, ids, mask));
    }

    [Fact]
    public void An_unwritable_cache_warns_and_still_returns_the_embeddings()
    {
        var dev = Backends.Get("cpu");
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        var (ids, mask) = Tokens(snapshot, "a quiet harbour");
        string blocker = Path.Combine(_dir, "not-a-directory");
        File.WriteAllText(blocker, "x");
        using var pipe = new Flux2KleinModel(snapshot, dev, new ModelOptions { PromptCache = new PromptCache(Path.Combine(blocker, "prompts")) });
        using var plain = new Flux2KleinModel(snapshot, dev);
        using var e = pipe.EncodePrompt(ids, mask);
        using var reference = plain.EncodePrompt(ids, mask);
        Assert.Equal(reference.ToFloatArray(), e.ToFloatArray());
        Assert.NotNull(pipe.CacheWarning);
        Assert.Contains("prompt cache", pipe.CacheWarning);
    }

    [Fact]
    public void Cli_generate_twice_uses_the_cache_and_writes_the_same_png()
    {
        string cache = Path.Combine(_dir, "cli"), a = Path.Combine(_dir, "a.png"), b = Path.Combine(_dir, "b.png");
        string[] common = ["generate", "--model", TinySnapshot.Dir, "--prompt", "a cached prompt", "--width", "32", "--height", "32",
            "--steps", "1", "--prompt-cache", cache, "-v"];
        var first = Run([.. common, "--out", a]);
        Assert.True(first.Code == 0, first.Err);
        Assert.DoesNotContain("text encoding (cached)", first.Out);
        var second = Run([.. common, "--out", b]);
        Assert.True(second.Code == 0, second.Err);
        Assert.Contains("text encoding (cached)", second.Out);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));

        var off = Run([.. common[..^3], "--no-prompt-cache", "-v", "--out", b]); // without --prompt-cache: the two together are a usage error
        Assert.True(off.Code == 0, off.Err);
        Assert.DoesNotContain("text encoding (cached)", off.Out);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, d)));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(f, Path.Combine(to, Path.GetRelativePath(from, f)));
    }
}
