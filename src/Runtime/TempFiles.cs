namespace PureFlux.Runtime;

/// <summary>
/// The temporary files and directories this process is writing (a PNG before its rename, a safetensors file, a
/// snapshot directory being filled). Their writers delete them on every failure; <see cref="DeleteAll"/> is for the
/// exits no writer sees — SIGINT, SIGTERM, process exit (see the CLI's Program.cs) — and, once called, refuses new
/// registrations, so nothing is left behind by a write that starts while the process is going down.
/// </summary>
public sealed class TempFileRegistry
{
    /// <summary>The process-wide registry that every writer uses unless given another (tests make their own).</summary>
    public static TempFileRegistry Default { get; } = new();

    private readonly object _gate = new();
    private readonly Dictionary<string, bool> _paths = new(StringComparer.Ordinal); // path → is a directory
    private volatile bool _closing;

    /// <summary>Whether <see cref="DeleteAll"/> has run: new temporary files are refused.</summary>
    public bool Closing => _closing;

    /// <summary>Paths registered and not yet released (deleted or renamed into place).</summary>
    public IReadOnlyCollection<string> Pending
    {
        get { lock (_gate) return _paths.Keys.ToArray(); }
    }

    /// <summary>
    /// A fresh temporary name beside <paramref name="finalPath"/> (same directory, so the final rename is atomic and never
    /// crosses file systems), unique across processes and threads: <c>DIR/.NAME.PID-RANDOM.partial</c>.
    /// </summary>
    public static string UniqueSibling(string finalPath)
    {
        string full = Path.GetFullPath(finalPath).TrimEnd(Path.DirectorySeparatorChar);
        string dir = Path.GetDirectoryName(full) ?? ".";
        string name = Path.GetFileName(full);
        if (name.Length > 150) name = name[..150];
        return Path.Combine(dir, $".{name}.{Environment.ProcessId}-{Random.Shared.NextInt64():x16}.partial");
    }

    /// <summary>Records <paramref name="path"/> as temporary (before it is created); dispose the result once it is renamed or deleted.</summary>
    public Registration Register(string path, bool directory = false)
    {
        string full = Path.GetFullPath(path);
        lock (_gate)
        {
            if (_closing) throw new IOException($"{full}: not written, the process is being interrupted");
            _paths[full] = directory;
        }
        return new Registration(this, full);
    }

    /// <summary>Throws when the process is going down (call after creating a registered path: it is then deleted by the caller).</summary>
    public void ThrowIfClosing(string path)
    {
        if (_closing) throw new IOException($"{path}: interrupted");
    }

    private void Release(string path)
    {
        lock (_gate) _paths.Remove(path);
    }

    /// <summary>
    /// Deletes every registered path (directories recursively), best effort, and refuses registrations from now on.
    /// A second sweep after <paramref name="settle"/> catches files a writer thread created during the first.
    /// Returns the number of paths that existed and were deleted.
    /// </summary>
    public int DeleteAll(TimeSpan settle = default)
    {
        int deleted = 0;
        for (int sweep = 0; sweep < 2; sweep++)
        {
            KeyValuePair<string, bool>[] paths;
            lock (_gate)
            {
                _closing = true;
                paths = _paths.ToArray();
            }
            foreach (var (path, _) in paths)
                if (TryDelete(path)) deleted++;
            if (settle <= TimeSpan.Zero) break;
            if (sweep == 0) Thread.Sleep(settle);
        }
        return deleted;
    }

    /// <summary>Deletes a file or directory tree if present; true when something was deleted. Never throws.</summary>
    public static bool TryDelete(string path)
    {
        for (int attempt = 0; attempt < 3; attempt++)
        {
            try
            {
                var info = new FileInfo(path);
                if (info.LinkTarget is null && Directory.Exists(path)) { Directory.Delete(path, recursive: true); return true; }
                if (info.Exists || info.LinkTarget is not null) { File.Delete(path); return true; }
                return false;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // a writer may be adding files to the directory at this moment: try again
            }
        }
        return false;
    }

    /// <summary>Keeps a path registered until disposed; disposing does not delete (call <see cref="TryDelete"/> for that).</summary>
    public readonly struct Registration(TempFileRegistry owner, string path) : IDisposable
    {
        public string Path { get; } = path;
        public void Dispose() => owner?.Release(Path);
    }
}

/// <summary>
/// Whole-file writes that are never seen half-done: the bytes go to a unique temporary file in the target's directory
/// (registered with <see cref="TempFileRegistry"/>), are flushed, and the file is renamed over the target — an atomic
/// replacement on POSIX file systems, so concurrent writers of one path each install a complete file and readers see
/// the old file or a new one, never a mix. On any failure the temporary file is deleted.
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, Action<FileStream> write, TempFileRegistry? registry = null)
    {
        registry ??= TempFileRegistry.Default;
        string full = Path.GetFullPath(path);
        string tmp = TempFileRegistry.UniqueSibling(full);
        using var reg = registry.Register(tmp);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                registry.ThrowIfClosing(tmp);
                write(fs);
                fs.Flush(flushToDisk: false);
            }
            registry.ThrowIfClosing(tmp);
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            TempFileRegistry.TryDelete(tmp);
            throw;
        }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes, TempFileRegistry? registry = null)
    {
        byte[] copy = bytes.ToArray();
        Write(path, fs => fs.Write(copy), registry);
    }
}
