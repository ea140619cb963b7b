using System.Collections.Concurrent;
using PureFlux.Cli.Commands;
using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// The on-disk caches trust nothing they did not verify: a prompt-cache entry carries the SHA-256 of its data, a bad
/// entry is a miss that gets rewritten, concurrent writers never corrupt an entry; the built-in model cache is checked
/// against its completion marker and rebuilt when bad, once, however many runs start at the same time.
/// </summary>
public sealed class CacheIntegrityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-cache-integrity-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    private const int Tokens = 16, Dim = 24;

    private static float[] Data(int salt = 0) => Enumerable.Range(0, Tokens * Dim).Select(i => MathF.Sin(i + salt) * 3).ToArray();

    [Fact]
    public void A_flipped_data_byte_is_a_miss_not_a_different_embedding()
    {
        var cache = new PromptCache(_dir);
        var data = Data();
        Assert.True(cache.Store(Key, data, Tokens, Dim));
        Assert.Equal(data, cache.TryLoad(Key, Tokens, Dim));
        string path = cache.PathOf(Key);
        var bytes = File.ReadAllBytes(path);
        long dataStart = bytes.Length - data.Length * 4L;
        foreach (long at in new[] { dataStart, dataStart + 1001, bytes.Length - 1 })
        {
            var bad = (byte[])bytes.Clone();
            bad[at] ^= 0x01;
            File.WriteAllBytes(path, bad);
            Assert.Null(cache.TryLoad(Key, Tokens, Dim));
        }
        // The miss is rewritten and then hits again.
        Assert.True(cache.Store(Key, data, Tokens, Dim));
        Assert.Equal(data, cache.TryLoad(Key, Tokens, Dim));
    }

    [Fact]
    public void No_corruption_of_the_header_or_size_of_an_entry_throws_each_is_a_miss_or_the_true_data()
    {
        var cache = new PromptCache(_dir);
        var data = Data(1);
        Assert.True(cache.Store(Key, data, Tokens, Dim));
        string path = cache.PathOf(Key);
        var bytes = File.ReadAllBytes(path);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(bytes, 0);
        foreach (byte value in new byte[] { 0x00, 0xFF, (byte)'"', 0xC3 })
            for (int at = 0; at < headerEnd; at++)
            {
                if (bytes[at] == value) continue;
                var bad = (byte[])bytes.Clone();
                bad[at] = value;
                File.WriteAllBytes(path, bad);
                var got = cache.TryLoad(Key, Tokens, Dim); // must not throw
                if (got is not null) Assert.Equal(data, got); // e.g. a changed padding space
            }
        foreach (int length in new[] { 0, 7, 8, headerEnd, bytes.Length - 1 })
        {
            File.WriteAllBytes(path, bytes[..length]);
            Assert.Null(cache.TryLoad(Key, Tokens, Dim));
        }
        File.WriteAllBytes(path, [.. bytes, 0]); // trailing garbage: the data still matches its hash, or a miss
        if (cache.TryLoad(Key, Tokens, Dim) is { } trailing) Assert.Equal(data, trailing);
        // Not a file at all.
        File.Delete(path);
        Directory.CreateDirectory(path);
        Assert.Null(cache.TryLoad(Key, Tokens, Dim));
        Directory.Delete(path);
        // An entry stored under another key (a renamed file) is a miss too.
        string other = Key.Replace('0', '1');
        Assert.True(cache.Store(other, data, Tokens, Dim));
        File.Move(cache.PathOf(other), path);
        Assert.Null(cache.TryLoad(Key, Tokens, Dim));
    }

    [Fact]
    public void Concurrent_writers_and_readers_of_one_entry_never_see_a_corrupt_entry()
    {
        var data = Data(2);
        var failures = new ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 8).Select(t => new Thread(() =>
        {
            var cache = new PromptCache(_dir);
            for (int k = 0; k < 25; k++)
            {
                if (t % 2 == 0 && !cache.Store(Key, data, Tokens, Dim)) failures.Add(cache.LastWriteError ?? "store failed");
                var got = cache.TryLoad(Key, Tokens, Dim);
                if (got is not null && !got.AsSpan().SequenceEqual(data)) failures.Add("a reader got other data");
            }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Empty(failures);
        Assert.Equal(data, new PromptCache(_dir).TryLoad(Key, Tokens, Dim));
        Assert.Equal([Path.GetFileName(new PromptCache(_dir).PathOf(Key))], Directory.GetFileSystemEntries(_dir).Select(p => Path.GetFileName(p)));
    }

    [Fact]
    public void A_model_with_a_corrupt_entry_re_encodes_and_rewrites_it()
    {
        var dev = Backends.Get("cpu");
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        var t = snapshot.LoadTokenizer().EncodeForKlein("a corrupted cache entry");
        float[] truth;
        using (var first = new Flux2KleinModel(snapshot, dev, new ModelOptions { PromptCache = new PromptCache(_dir) }))
        using (var e = first.EncodePrompt(t.Ids, t.AttentionMask))
            truth = e.ToFloatArray();
        string file = Assert.Single(Directory.GetFiles(_dir, "*.safetensors"));
        var good = File.ReadAllBytes(file);
        // One flipped data byte (the header intact), then a bad header byte as well: each time the encoder runs again.
        foreach (var corrupt in new Action<byte[]>[] { b => b[^5] ^= 0x40, b => { b[^5] ^= 0x40; b[12] = (byte)'!'; } })
        {
            var bytes = (byte[])good.Clone();
            corrupt(bytes);
            File.WriteAllBytes(file, bytes);
            using var model = new Flux2KleinModel(snapshot, dev, new ModelOptions { PromptCache = new PromptCache(_dir) });
            using var e = model.EncodePrompt(t.Ids, t.AttentionMask);
            Assert.Equal(truth, e.ToFloatArray());
            Assert.Null(model.CacheWarning);
        }
        string key = Path.GetFileNameWithoutExtension(file);
        Assert.Equal(truth, new PromptCache(_dir).TryLoad(key, t.Ids.Length, snapshot.TransformerConfig.JointAttentionDim));
    }

    // ------------------------------------------------------------------ the built-in model cache

    [Fact]
    public void The_built_in_model_is_verified_and_a_truncated_or_altered_file_is_rebuilt()
    {
        string root = Path.Combine(_dir, "cache");
        string dir = BuiltInModel.Ensure(root);
        Assert.Null(BuiltInModel.Verify(dir));
        Assert.True(File.Exists(Path.Combine(dir, BuiltInModel.MarkerName)));
        string weights = Path.Combine(dir, "transformer", ModelSnapshot.TransformerWeights);
        var original = File.ReadAllBytes(weights);

        // Truncated: found, named, rebuilt.
        File.WriteAllBytes(weights, original[..(original.Length / 3)]);
        Assert.Contains(weights, BuiltInModel.Verify(dir));
        Assert.Equal(dir, BuiltInModel.Ensure(root));
        Assert.Equal(original, File.ReadAllBytes(weights));

        // One flipped byte in the tokenizer, and a cache without its marker (an older or unfinished one): rebuilt too.
        string tok = Directory.GetFiles(Path.Combine(dir, "tokenizer")).First();
        var tokBytes = File.ReadAllBytes(tok);
        tokBytes[tokBytes.Length / 2] ^= 1;
        File.WriteAllBytes(tok, tokBytes);
        Assert.NotNull(BuiltInModel.Verify(dir));
        BuiltInModel.Ensure(root);
        Assert.Null(BuiltInModel.Verify(dir));
        File.Delete(Path.Combine(dir, BuiltInModel.MarkerName));
        Assert.NotNull(BuiltInModel.Verify(dir));
        BuiltInModel.Ensure(root);
        Assert.Null(BuiltInModel.Verify(dir));
        using (ModelSnapshot.Open(dir)) { }
        Assert.DoesNotContain(Directory.GetFileSystemEntries(root), e => e.EndsWith(".partial", StringComparison.Ordinal));
    }

    [Fact]
    public void Two_first_runs_at_once_build_the_built_in_model_once_and_both_succeed()
    {
        string root = Path.Combine(_dir, "race");
        var results = new ConcurrentBag<string>();
        var errors = new ConcurrentBag<Exception>();
        using var start = new Barrier(3);
        var threads = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                results.Add(BuiltInModel.Ensure(root));
            }
            catch (Exception e) { errors.Add(e); }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Empty(errors);
        Assert.Single(results.Distinct());
        Assert.Null(BuiltInModel.Verify(results.First()));
        // Only the model directory and its lock file: no temporary directories left.
        Assert.Equal(
            [Path.GetFileName(results.First()), Path.GetFileName(results.First()) + ".lock"],
            Directory.GetFileSystemEntries(root).Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void An_unwritable_built_in_cache_is_one_line_naming_the_path()
    {
        string blocker = Path.Combine(_dir, "a-file");
        File.WriteAllText(blocker, "x");
        string root = Path.Combine(blocker, "cache");
        var e = Assert.Throws<IOException>(() => BuiltInModel.Ensure(root));
        Assert.Contains(blocker, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Two_writers_of_one_snapshot_do_not_collide_on_their_temporary_directory()
    {
        // make-model twice at once on one --out: each writes its own temporary tree; one installs a complete snapshot,
        // the other (if it loses) says so in one line naming the path; nothing temporary remains.
        string target = Path.Combine(_dir, "m");
        var errors = new ConcurrentBag<string>();
        using var start = new Barrier(2);
        var threads = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
        {
            try { start.SignalAndWait(); RandomSnapshot.Write(target, SnapshotPreset.Tiny, 0); }
            catch (Exception e) { errors.Add(e.GetType().Name + ": " + e.Message); }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.True(errors.Count <= 1, string.Join(" | ", errors));
        foreach (var e in errors) Assert.StartsWith("IOException: " + target, e);
        using (ModelSnapshot.Open(target)) { }
        Assert.Equal(["m"], Directory.GetFileSystemEntries(_dir).Select(p => Path.GetFileName(p)));
    }
}
