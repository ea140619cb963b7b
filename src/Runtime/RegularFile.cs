namespace PureFlux.Runtime;

/// <summary>
/// Paths as a user's file system holds them: a Hugging Face cache snapshot (<c>snapshots/&lt;rev&gt;/</c>) is a tree of
/// relative symbolic links to <c>../../blobs/&lt;hash&gt;</c>, so every size and type check must look at the link's
/// final target, never at the link itself (whose size is the length of the target's name).
/// </summary>
public static class RegularFile
{
    /// <summary>
    /// The file <paramref name="path"/> finally names: every symbolic link followed (relative targets resolve from the
    /// link's own directory). Returns the path itself when it is not a link. The result may not exist (a dangling link).
    /// </summary>
    /// <exception cref="IOException">A link loop or an unreadable link.</exception>
    public static FileSystemInfo Target(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is null) return info;
        return info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
    }

    /// <summary>
    /// Why <paramref name="path"/> cannot be read as a data file, or null when it is a regular, non-empty file (after
    /// following links); <paramref name="length"/> is then the target's size. The reason is a phrase to put after the
    /// path ("symbolic link to /dev/zero, which is empty or not a regular file").
    /// </summary>
    public static string? Problem(string path, out long length)
    {
        length = 0;
        FileSystemInfo target;
        try { target = Target(path); }
        catch (IOException e) { return $"cannot follow its symbolic link ({e.Message})"; }
        catch (UnauthorizedAccessException e) { return $"cannot follow its symbolic link ({e.Message})"; }
        string via = target.FullName == Path.GetFullPath(path) ? "" : $"symbolic link to {target.FullName}, which ";
        if (Directory.Exists(target.FullName)) return via + "is a directory, not a file";
        var file = new FileInfo(target.FullName);
        if (!file.Exists) return via.Length > 0 ? via + "does not exist (dangling link)" : "file not found";
        // Devices, pipes and sockets report size 0 (st_size); so does an empty file. Neither holds data we can map.
        if (file.Length == 0)
            return via + (target.FullName.StartsWith("/dev/", StringComparison.Ordinal) || target.FullName.StartsWith("/proc/", StringComparison.Ordinal)
                ? "is not a regular file (a device or special file)" : $"{(via.Length > 0 ? "has " : "")}0 bytes: too short for any data (an empty file, or not a regular file)");
        length = file.Length;
        return null;
    }

    /// <summary>Throws an <see cref="IOException"/> "&lt;shown&gt;: &lt;problem&gt;" unless <see cref="Problem"/> finds none; returns the length.</summary>
    public static long Require(string path, string? shown = null)
    {
        if (Problem(path, out long length) is { } problem) throw new IOException($"{shown ?? path}: {problem}");
        return length;
    }
}
