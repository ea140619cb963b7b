using System.Runtime.InteropServices;
using System.Text;

namespace PureFlux.Runtime;

/// <summary>
/// Reads small structured files (JSON configs, tokenizer.json, golden-set descriptions) whole, with a size cap, and
/// refuses what is not a regular file (a device such as /dev/zero, a FIFO, a socket, a directory) before reading a
/// byte of it. Symlinks are followed (a Hugging Face cache snapshot is made of links to blobs). Every problem becomes
/// one line naming the file, built by the caller's exception factory so each reader keeps its own exception type.
/// </summary>
public static class BoundedFile
{
    /// <summary>Reads all of <paramref name="path"/>; <paramref name="what"/> names the kind of file in messages ("config file").</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what, Func<string, Exception> error)
    {
        if (TryStat(path, out int mode, out long statSize))
        {
            string? kind = (mode & 0xF000) switch
            {
                0x8000 => null,
                0x4000 => "a directory",
                0x2000 => "a character device",
                0x6000 => "a block device",
                0x1000 => "a FIFO",
                0xC000 => "a socket",
                _ => "not a regular file",
            };
            if (kind is not null) throw error($"{path}: is {kind}, not a regular file; expected a {what}");
            if (statSize > maxBytes) throw error(TooLarge(path, statSize, maxBytes, what));
        }
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

    // statx (Linux ≥ 4.11, glibc ≥ 2.28) has one layout on every architecture: stx_mode (u16) at 28, stx_size (u64) at 40.
    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern unsafe int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);

    private static bool _noStatx;

    /// <summary>The file type bits and size of what <paramref name="path"/> finally points to; false when that cannot be told here.</summary>
    private static unsafe bool TryStat(string path, out int mode, out long size)
    {
        mode = 0;
        size = 0;
        if (_noStatx || !OperatingSystem.IsLinux()) return false;
        byte* buf = stackalloc byte[256];
        try
        {
            const int AtFdCwd = -100;
            const uint StatxType = 0x1, StatxSize = 0x200;
            if (Statx(AtFdCwd, path, 0, StatxType | StatxSize, buf) != 0) return false; // let the open report it
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _noStatx = true;
            return false;
        }
        mode = *(ushort*)(buf + 28);
        size = *(long*)(buf + 40);
        return true;
    }
}
