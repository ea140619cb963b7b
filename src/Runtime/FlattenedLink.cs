using System.Text;

namespace PureFlux.Runtime;

/// <summary>
/// A symbolic link that a copy turned into a small text file holding the link's target ("../../FLUX.1-dev/vae/x.safetensors"):
/// git checkouts with core.symlinks=false, some archive tools and sync services do this to snapshots whose variants
/// share files through relative links. Weight readers follow such a file to its target instead of failing on it.
/// A real safetensors file is never mistaken for one: its first 8 bytes are a binary header length (with NUL bytes).
/// </summary>
public static class FlattenedLink
{
    /// <summary>Longest file taken as a flattened link (a path, not data).</summary>
    public const int MaxBytes = 1024;

    private const int MaxHops = 8;

    /// <summary>
    /// <paramref name="path"/> itself, or — when it is a flattened link — the file its text names (relative to its own
    /// directory), followed through up to 8 such hops. A text that names a missing file is reported by
    /// <paramref name="problem"/> (and <paramref name="path"/> is returned unchanged), so the caller's message can say so.
    /// </summary>
    public static string Resolve(string path, out string? problem)
    {
        problem = null;
        string current = path;
        for (int hop = 0; hop < MaxHops; hop++)
        {
            string? text = LinkText(current);
            if (text is null) return current;
            string target = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(current)) ?? ".", text));
            if (!File.Exists(target))
            {
                problem = $"holds only the text '{text}' (a symbolic link flattened by a copy?), and {target} does not exist";
                return path;
            }
            current = target;
        }
        problem = $"more than {MaxHops} flattened links in a row";
        return path;
    }

    /// <summary>The target text when the file is a small, single-line, printable UTF-8 path; otherwise null.</summary>
    private static string? LinkText(string path)
    {
        // Only a regular file (after following real links) is read: a pipe would block, a device never end.
        if (RegularFile.Problem(path, out long length) is not null || length == 0 || length > MaxBytes) return null;
        byte[] bytes = new byte[MaxBytes + 1];
        int n = 0;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
            for (int r; n < bytes.Length && (r = stream.Read(bytes, n, bytes.Length - n)) > 0;) n += r;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        if (n == 0 || n > MaxBytes) return null;
        bytes = bytes[..n];
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
        catch (DecoderFallbackException) { return null; }
        text = text.TrimEnd('\n', '\r');
        if (text.Length == 0 || text.Any(char.IsControl)) return null;
        return text;
    }
}
