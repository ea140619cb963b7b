using System.Security.Cryptography;
using System.Text.Json;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary>
/// The model used when no --model is given: the "tiny" random preset (klein architecture, real Qwen3
/// tokenizer), written once to a cache directory and loaded through the normal snapshot loader.
/// <para>
/// The cache is trusted only when complete: the snapshot is written into a unique temporary directory together with a
/// completion marker (<see cref="MarkerName"/>: every file's size and SHA-256), and renamed into place. Each use checks
/// the marker against the files; a missing marker, a truncated, altered or missing file makes the cache be rebuilt.
/// Builders take an exclusive lock file beside the directory, so two first runs at once build it once and both succeed.
/// </para>
/// </summary>
public static class BuiltInModel
{
    private const ulong Seed = 0;
    private const string Version = "v1";

    /// <summary>The completion marker inside the snapshot directory, written last.</summary>
    public const string MarkerName = ".pureflux-complete.json";

    /// <summary>How long a run waits for another process that is building the cache.</summary>
    public static TimeSpan LockTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>$PUREFLUX_CACHE, else $XDG_CACHE_HOME/pureflux, else ~/.cache/pureflux.</summary>
    public static string CacheRoot
    {
        get
        {
            string? root = Environment.GetEnvironmentVariable("PUREFLUX_CACHE");
            if (!string.IsNullOrEmpty(root)) return root;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            return !string.IsNullOrEmpty(xdg) ? Path.Combine(xdg, "pureflux")
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "pureflux");
        }
    }

    public static string Directory => DirectoryIn(CacheRoot);

    public static string DirectoryIn(string cacheRoot) => Path.Combine(Path.GetFullPath(cacheRoot), $"builtin-{SnapshotPreset.Tiny.Name}-{Version}");

    public static string Ensure() => Ensure(CacheRoot);

    /// <summary>The built-in snapshot's directory under <paramref name="cacheRoot"/>, verified, (re)built if needed.</summary>
    public static string Ensure(string cacheRoot, Action<string>? log = null)
    {
        string dir = DirectoryIn(cacheRoot);
        if (Verify(dir) is null) return dir;
        string parent = Path.GetDirectoryName(dir)!;
        try
        {
            System.IO.Directory.CreateDirectory(parent);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"built-in model cache '{parent}': cannot create the directory ({e.Message}); set PUREFLUX_CACHE to a writable directory or pass --model");
        }
        using var _ = AcquireLock(dir + ".lock");
        string? problem = Verify(dir); // another process may have built it while this one waited
        if (problem is null) return dir;
        if (System.IO.Directory.Exists(dir) || File.Exists(dir))
            log?.Invoke($"built-in model cache {dir}: {problem}; rebuilding");
        try
        {
            Build(dir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"built-in model cache '{dir}': {problem}, and it cannot be rebuilt ({e.Message})");
        }
        if (Verify(dir) is { } still)
            throw new IOException($"built-in model cache '{dir}': {still} right after writing it");
        return dir;
    }

    /// <summary>Null when <paramref name="dir"/> holds a complete built-in snapshot (marker present, every listed file of
    /// the recorded size and SHA-256), else what is wrong, naming the file.</summary>
    public static string? Verify(string dir)
    {
        string marker = Path.Combine(dir, MarkerName);
        if (!System.IO.Directory.Exists(dir)) return "not written yet";
        Dictionary<string, FileRecord>? files;
        try
        {
            var info = new FileInfo(marker);
            if (!info.Exists) return $"{marker} is missing (an unfinished or older cache)";
            if (info.Length > 1 << 20) return $"{marker} is {info.Length} bytes, expected a small JSON file";
            files = JsonSerializer.Deserialize<Dictionary<string, FileRecord>>(File.ReadAllText(marker));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return $"{marker} is unreadable ({e.Message})";
        }
        if (files is null || files.Count == 0 || !files.ContainsKey("model_index.json"))
            return $"{marker} lists no files";
        foreach (var (rel, expected) in files)
        {
            if (expected is null || rel.Contains("..", StringComparison.Ordinal) || Path.IsPathRooted(rel))
                return $"{marker}: bad entry '{rel}'";
            string path = Path.Combine(dir, rel);
            try
            {
                var info = new FileInfo(path);
                if (!info.Exists) return $"{path} is missing";
                if (info.Length != expected.Size) return $"{path} is {info.Length} bytes, expected {expected.Size}";
                if (!string.Equals(HashFile(path), expected.Sha256, StringComparison.Ordinal))
                    return $"{path} does not match its SHA-256 in {MarkerName} (altered)";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return $"{path} is unreadable ({e.Message})";
            }
        }
        return null;
    }

    public sealed record FileRecord(long Size, string Sha256);

    /// <summary>Writes the snapshot and its marker into a unique temporary directory, then swaps it into place (the old,
    /// bad directory is renamed aside and deleted). Called with the lock held.</summary>
    private static void Build(string dir)
    {
        string staging = TempFileRegistry.UniqueSibling(dir);
        using var reg = TempFileRegistry.Default.Register(staging, directory: true);
        string aside = TempFileRegistry.UniqueSibling(dir);
        using var asideReg = TempFileRegistry.Default.Register(aside, directory: true);
        try
        {
            RandomSnapshot.Write(staging, SnapshotPreset.Tiny, Seed);
            var records = new SortedDictionary<string, FileRecord>(StringComparer.Ordinal);
            foreach (var file in System.IO.Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
                records[Path.GetRelativePath(staging, file).Replace(Path.DirectorySeparatorChar, '/')] = new FileRecord(new FileInfo(file).Length, HashFile(file));
            AtomicFile.WriteAllBytes(Path.Combine(staging, MarkerName), JsonSerializer.SerializeToUtf8Bytes(records, new JsonSerializerOptions { WriteIndented = true }));
            // A bad cache is renamed aside first (readers that have it mapped keep their copy), then deleted.
            if (System.IO.Directory.Exists(dir)) System.IO.Directory.Move(dir, aside);
            else if (File.Exists(dir)) File.Move(dir, aside);
            System.IO.Directory.Move(staging, dir);
        }
        finally
        {
            TempFileRegistry.TryDelete(staging);
            TempFileRegistry.TryDelete(aside);
        }
    }

    private static string HashFile(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexString(SHA256.HashData(fs)).ToLowerInvariant();
    }

    /// <summary>An exclusive lock on <paramref name="path"/> (flock through FileShare.None), waiting for other builders.</summary>
    private static FileStream AcquireLock(string path)
    {
        var deadline = DateTime.UtcNow + LockTimeout;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline && File.Exists(path))
            {
                Thread.Sleep(100); // another process (or thread) is building the cache
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"built-in model cache: cannot lock '{path}' ({e.Message}); another pureflux may be writing it, or set PUREFLUX_CACHE to a writable directory");
            }
        }
    }
}
