namespace PureFlux.Model.Image;

/// <summary>
/// What a command may write a result file over. A path is accepted when it is absent, or an existing regular file that
/// is writable; its directory must exist and accept new files; and it must not lie inside a protected directory (the
/// model snapshot being used) or be a file that a link in such a directory points to (a Hugging Face cache blob).
/// Everything else — a directory, a symbolic link, a device node, a named pipe, a socket, a read-only file — is refused
/// with one line naming the path and what was expected, before any compute. The write itself goes to a temporary file
/// in the same directory that is renamed over the target (<see cref="AtomicFile"/>), so the old file stays whole until
/// the new one is complete.
/// </summary>
public static class OutputTarget
{
    /// <summary>Throws <see cref="IOException"/> (or <see cref="ArgumentException"/> for an empty or malformed path)
    /// unless <paramref name="path"/> may be written as described above.</summary>
    public static void Check(string path, IEnumerable<string>? protectedDirs = null, string what = "output")
    {
        string full = CheckExisting(path, what);
        string dir = Path.GetDirectoryName(full)!;

        string real = Path.Combine(RegularFile.RealPath(dir), Path.GetFileName(full));
        foreach (var pd in protectedDirs ?? [])
        {
            string realDir = RegularFile.RealPath(pd);
            if (RegularFile.IsInside(real, realDir))
                throw new IOException($"cannot write '{path}': it is inside the model snapshot '{pd}'; expected a path outside it");
            if (LinkedFiles(realDir).TryGetValue(real, out var link))
                throw new IOException($"cannot write '{path}': it is the model file that '{link}' points to; expected a path outside the model");
        }

        if (!Directory.Exists(dir))
            throw new IOException($"cannot write '{path}': directory '{dir}' does not exist");

        // The directory must accept a new file (the temporary one that will be renamed over the target).
        string probe = TempFileRegistry.UniqueSibling(full);
        using var reg = TempFileRegistry.Default.Register(probe);
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write '{path}': directory '{dir}' does not accept new files ({e.Message})");
        }
        finally
        {
            TempFileRegistry.TryDelete(probe);
        }
    }

    /// <summary>The path-kind checks alone (absent, or a writable regular file); returns the full path. Cheap enough to
    /// repeat right before the write.</summary>
    public static string CheckExisting(string path, string what = "output")
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException($"{what} path is empty; expected a file name");
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ArgumentException($"{what} '{path}': not a valid path ({e.Message})");
        }
        if (path.EndsWith('/') || path.EndsWith("/.", StringComparison.Ordinal) || path.EndsWith("/..", StringComparison.Ordinal) || path is "." or "..")
            throw new IOException($"cannot write '{path}': it names a directory; expected a file name");
        var kind = RegularFile.Kind(full);
        switch (kind)
        {
            case FileKind.Absent:
                break;
            case FileKind.Regular:
                if (IsReadOnly(full))
                    throw new IOException($"cannot write '{path}': it exists and is read-only; expected a new path or a writable regular file (not overwritten)");
                break;
            default:
                throw new IOException($"cannot write '{path}': it is {RegularFile.Describe(kind)}; expected a new path or an existing regular file");
        }
        return full;
    }

    private static bool IsReadOnly(string full)
    {
        try
        {
            var info = new FileInfo(full);
            if (info.IsReadOnly) return true;
            if (!OperatingSystem.IsWindows())
            {
                const UnixFileMode anyWrite = UnixFileMode.UserWrite | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;
                if ((File.GetUnixFileMode(full) & anyWrite) == 0) return true; // even root does not overwrite a 0444 file
            }
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // gone meanwhile: the write decides
        }
    }

    /// <summary>Physical targets of the symbolic links under <paramref name="dir"/> (a snapshot in the Hugging Face
    /// cache is a tree of links into blobs/) → the link's path.</summary>
    private static Dictionary<string, string> LinkedFiles(string dir)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!Directory.Exists(dir)) return result;
        var options = new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 6, IgnoreInaccessible = true, AttributesToSkip = 0 };
        int seen = 0;
        try
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(dir, "*", options))
            {
                if (++seen > 100_000) break;
                if (new FileInfo(entry).LinkTarget is null) continue;
                result.TryAdd(RegularFile.RealPath(entry), entry);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // an unreadable corner of the snapshot: the directory check above still applies
        }
        return result;
    }
}
