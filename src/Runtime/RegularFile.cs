using System.Runtime.InteropServices;
using System.Text;

namespace PureFlux.Runtime;

/// <summary>What is at a path: of the path itself (a symbolic link is reported as one) or of its final target.</summary>
public enum FileKind { Absent, Regular, Directory, SymbolicLink, CharDevice, BlockDevice, Fifo, Socket, Other }

/// <summary>
/// Every check this project makes on a path before reading or writing it, in one place, on one primitive
/// (<see cref="Kind(string, bool, out long)"/>: stat or lstat through .NET's own native shim).
/// <para>Paths are taken as a user's file system holds them: a Hugging Face cache snapshot (<c>snapshots/&lt;rev&gt;/</c>)
/// is a tree of relative symbolic links to <c>../../blobs/&lt;hash&gt;</c>, so a data file's size and type are those of
/// the link's final target, never of the link itself (whose size is the length of the target's name).</para>
/// <list type="bullet">
/// <item><see cref="Problem"/> / <see cref="Require"/>: is this (after links) a regular, non-empty file to map — the
/// safetensors reader, snapshot and golden-set files.</item>
/// <item><see cref="ReadAllBytes"/>: small structured files (configs, tokenizer.json, golden descriptions) read whole
/// under a size cap, refusing devices, FIFOs, sockets and directories before a byte is read.</item>
/// <item><see cref="Kind(string, bool)"/>, <see cref="RealPath"/>, <see cref="IsInside"/>: what an output path is (a
/// link is not followed there: it is refused as a link) and whether it lies inside a directory.</item>
/// </list>
/// Problems are phrases or one-line messages naming the path; readers wrap them in their own exception types.
/// </summary>
public static partial class RegularFile
{
    // ------------------------------------------------------------------ the primitive

    /// <summary>The kind of <paramref name="path"/>: of the path itself when <paramref name="followLinks"/> is false
    /// (lstat: a link, dangling or not, is <see cref="FileKind.SymbolicLink"/>), else of its final target (stat: a
    /// dangling link or a loop is <see cref="FileKind.Absent"/>).</summary>
    public static FileKind Kind(string path, bool followLinks = false) => Kind(path, followLinks, out _);

    /// <summary>As <see cref="Kind(string, bool)"/>, with the size that stat reports (st_size: 0 for devices and pipes).</summary>
    public static FileKind Kind(string path, bool followLinks, out long size)
    {
        size = 0;
        string full = Path.GetFullPath(path);
        if (!OperatingSystem.IsWindows() && !_noNative)
        {
            try
            {
                if (!NativeStat(full, followLinks, out int mode, out size)) return FileKind.Absent;
                return (mode & 0xF000) switch
                {
                    0x8000 => FileKind.Regular,
                    0x4000 => FileKind.Directory,
                    0xA000 => FileKind.SymbolicLink,
                    0x2000 => FileKind.CharDevice,
                    0x6000 => FileKind.BlockDevice,
                    0x1000 => FileKind.Fifo,
                    0xC000 => FileKind.Socket,
                    _ => FileKind.Other,
                };
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _noNative = true; // fall through to what FileSystemInfo can tell
            }
        }
        var info = new FileInfo(full);
        if (!followLinks && info.LinkTarget is not null) return FileKind.SymbolicLink;
        if (followLinks && info.LinkTarget is not null)
        {
            try { info = Target(full) as FileInfo ?? info; }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return FileKind.Absent; }
        }
        if (Directory.Exists(info.FullName)) return FileKind.Directory;
        if (!info.Exists) return FileKind.Absent;
        size = info.Length;
        return FileKind.Regular;
    }

    /// <summary>Whether anything but a directory is at <paramref name="path"/>: a file, a device, or a symbolic link even
    /// when it dangles (opening it then says what it points at).</summary>
    public static bool Present(string path) => Kind(path) is not (FileKind.Absent or FileKind.Directory);

    /// <summary>"a regular file", "a character device", ... for messages.</summary>
    public static string Describe(FileKind kind) => kind switch
    {
        FileKind.Regular => "a regular file",
        FileKind.Directory => "a directory",
        FileKind.SymbolicLink => "a symbolic link",
        FileKind.CharDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Fifo => "a named pipe (FIFO)",
        FileKind.Socket => "a socket",
        FileKind.Absent => "absent",
        _ => "a special file",
    };

    // ------------------------------------------------------------------ links

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
    /// The physical path of <paramref name="path"/>: every symbolic link on the way resolved (as realpath(3), but the
    /// last component may be absent). Used to compare an output path with a directory it must stay out of.
    /// </summary>
    public static string RealPath(string path)
    {
        if (OperatingSystem.IsWindows()) return Path.GetFullPath(path);
        string start = Path.IsPathRooted(path) ? path : Directory.GetCurrentDirectory() + "/" + path;
        var pending = new Stack<string>();
        foreach (var c in start.Split('/').Reverse()) pending.Push(c);
        string cur = "/";
        int links = 0;
        while (pending.Count > 0)
        {
            string c = pending.Pop();
            if (c is "" or ".") continue;
            if (c == "..") { cur = Path.GetDirectoryName(cur) ?? "/"; continue; }
            string next = cur == "/" ? "/" + c : cur + "/" + c;
            string? target = null;
            try { target = new FileInfo(next).LinkTarget; }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            if (target is null || ++links > 64) { cur = next; continue; }
            if (target.StartsWith('/')) cur = "/";
            foreach (var t in target.Split('/').Reverse()) pending.Push(t);
        }
        return cur;
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="dir"/> or lies under it (both physical paths).</summary>
    public static bool IsInside(string path, string dir)
    {
        dir = dir.TrimEnd('/');
        return path == dir || dir.Length == 0 || path.StartsWith(dir + "/", StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ data files (mapped)

    /// <summary>
    /// Why <paramref name="path"/> cannot be read as a data file, or null when it is a regular, non-empty file (after
    /// following links); <paramref name="length"/> is then the target's size. The reason is a phrase to put after the
    /// path ("symbolic link to /dev/zero, which is a character device, not a regular file").
    /// </summary>
    public static string? Problem(string path, out long length)
    {
        length = 0;
        FileSystemInfo target;
        try { target = Target(path); }
        catch (IOException e) { return $"cannot follow its symbolic link ({e.Message})"; }
        catch (UnauthorizedAccessException e) { return $"cannot follow its symbolic link ({e.Message})"; }
        string via = target.FullName == Path.GetFullPath(path) ? "" : $"symbolic link to {target.FullName}, which ";
        var kind = Kind(target.FullName, followLinks: true, out long size);
        switch (kind)
        {
            case FileKind.Absent:
                return via.Length > 0 ? via + "does not exist (dangling link)" : "file not found";
            case FileKind.Directory:
                return via + "is a directory, not a file";
            case FileKind.Regular when size > 0:
                length = size;
                return null;
            case FileKind.Regular:
                // /proc and /sys files report size 0 and hold data anyway; a device seen through FileSystemInfo alone too.
                return via + (IsSpecialTree(target.FullName)
                    ? "is not a regular file (a device or special file)"
                    : $"{(via.Length > 0 ? "has " : "")}0 bytes: too short for any data (an empty file)");
            default:
                return via + $"is {Describe(kind)}, not a regular file";
        }
    }

    /// <summary>Throws an <see cref="IOException"/> "&lt;shown&gt;: &lt;problem&gt;" unless <see cref="Problem"/> finds none; returns the length.</summary>
    public static long Require(string path, string? shown = null)
    {
        if (Problem(path, out long length) is { } problem) throw new IOException($"{shown ?? path}: {problem}");
        return length;
    }

    private static bool IsSpecialTree(string full) =>
        full.StartsWith("/dev/", StringComparison.Ordinal) || full.StartsWith("/proc/", StringComparison.Ordinal) || full.StartsWith("/sys/", StringComparison.Ordinal);

    // ------------------------------------------------------------------ small files (read whole)

    /// <summary>
    /// Reads all of <paramref name="path"/> (links followed), at most <paramref name="maxBytes"/>, refusing what is not a
    /// regular file before reading a byte of it; <paramref name="what"/> names the kind of file in messages ("config
    /// file"). Every problem is one line naming the file, built by <paramref name="error"/> so each reader keeps its own
    /// exception type.
    /// </summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what, Func<string, Exception> error)
    {
        var kind = Kind(path, followLinks: true, out long statSize);
        if (kind is not (FileKind.Regular or FileKind.Absent)) // absent (or unreadable): the open below says why
            throw error($"{path}: is {Describe(kind)}, not a regular file; expected a {what}");
        if (statSize > maxBytes) throw error(TooLarge(path, statSize, maxBytes, what));
        string? problem = null;
        byte[]? result = null;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            long length = fs.CanSeek ? fs.Length : -1;
            if (length < 0) problem = $"{path}: is not a regular file (it cannot seek); expected a {what}";
            else if (length > maxBytes) problem = TooLarge(path, length, maxBytes, what);
            else
            {
                var buffer = new byte[length];
                int read = 0;
                while (read < buffer.Length)
                {
                    int n = fs.Read(buffer, read, buffer.Length - read);
                    if (n == 0) break;
                    read += n;
                }
                // A regular file has no more bytes than its size says; a device or a /proc file does.
                Span<byte> probe = stackalloc byte[1];
                if (fs.Read(probe) != 0) problem = $"{path}: is not a regular file (it holds more data than its size of {length} bytes); expected a {what}";
                else result = read == buffer.Length ? buffer : buffer[..read];
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            problem = $"{path}: cannot read {what} ({e.Message})";
        }
        return result ?? throw error(problem!);
    }

    private static string TooLarge(string path, long size, long max, string what) =>
        $"{path}: {size} bytes is larger than the {max}-byte limit for a {what}; is it the right file?";

    /// <summary>Offset of the first byte that is not valid UTF-8, or -1 when all of <paramref name="bytes"/> is.</summary>
    public static long InvalidUtf8Offset(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return -1;
        long at = 0;
        while (!bytes.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(bytes, out _, out int used) != System.Buffers.OperationStatus.Done) return at;
            bytes = bytes[used..];
            at += used;
        }
        return -1;
    }

    // ------------------------------------------------------------------ native

    private static volatile bool _noNative;

    // .NET's own native shim, shipped with every runtime on Linux and macOS. Its FileStatus starts int32 Flags, int32 Mode,
    // uint32 Uid, uint32 Gid, int64 Size (a layout the runtime keeps fixed for managed callers); the buffer is far larger
    // than the whole struct, so later additions cannot overrun it. Mode's type bits are the POSIX S_IF* values.
    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_Stat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int SystemNativeStat(string path, byte* output);

    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_LStat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int SystemNativeLStat(string path, byte* output);

    private static unsafe bool NativeStat(string path, bool followLinks, out int mode, out long size)
    {
        byte* buf = stackalloc byte[512];
        new Span<byte>(buf, 512).Clear();
        int rc = followLinks ? SystemNativeStat(path, buf) : SystemNativeLStat(path, buf);
        mode = rc == 0 ? *(int*)(buf + 4) : 0;
        size = rc == 0 ? *(long*)(buf + 16) : 0;
        return rc == 0;
    }
}
