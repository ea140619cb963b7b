using System.Text;
using StbImageWriteSharp;

namespace PureFlux.Model.Image;

/// <summary>
/// Writes RGB images as PNG with tEXt metadata (prompt, seed, steps, size). stb's encoder writes no text
/// chunks, so they are inserted before IEND. The file is written to a unique temporary name beside it and renamed
/// (<see cref="AtomicFile"/>), so a failure or an interruption never leaves a partial PNG; only a new path or a writable
/// regular file is written over (<see cref="OutputTarget"/>).
/// </summary>
public static class PngWriter
{
    /// <summary>Checks that <paramref name="path"/> may be written (see <see cref="OutputTarget"/>: absent or a writable
    /// regular file, outside <paramref name="protectedDirs"/>), before minutes of compute are spent.</summary>
    public static void EnsureWritable(string path, IEnumerable<string>? protectedDirs = null) =>
        OutputTarget.Check(path, protectedDirs);

    /// <summary>Saves interleaved 8-bit RGB pixels [height, width, 3].</summary>
    public static void Save(string path, byte[] rgb, int width, int height, IReadOnlyDictionary<string, string>? text = null)
    {
        if (rgb.Length != width * height * 3)
            throw new ArgumentException($"PNG '{path}': {rgb.Length} bytes do not make a {width}x{height} RGB image");
        using var ms = new MemoryStream();
        new ImageWriter().WritePng(rgb, width, height, ColorComponents.RedGreenBlue, ms);
        byte[] png = ms.ToArray();
        if (text is { Count: > 0 }) png = InsertText(png, text);
        OutputTarget.CheckExisting(path); // again: the path may have changed during the compute
        AtomicFile.WriteAllBytes(path, png);
    }

    /// <summary>Reads the text chunks of a PNG file (tEXt as Latin-1, iTXt as UTF-8, compressed or not); for tests and tools.</summary>
    public static Dictionary<string, string> ReadText(byte[] png)
    {
        var result = new Dictionary<string, string>();
        int pos = 8;
        while (pos + 12 <= png.Length)
        {
            int len = ReadBigEndian(png, pos);
            if (len < 0 || len > png.Length - pos - 12) break; // a damaged chunk: stop rather than read past the end
            string type = Encoding.ASCII.GetString(png, pos + 4, 4);
            var data = png.AsSpan(pos + 8, len);
            int zero = data.IndexOf((byte)0);
            if (type == "tEXt" && zero > 0)
                result[Encoding.Latin1.GetString(data[..zero])] = Encoding.Latin1.GetString(data[(zero + 1)..]);
            else if (type == "iTXt" && zero > 0 && ReadInternational(data[(zero + 1)..]) is { } text)
                result[Encoding.Latin1.GetString(data[..zero])] = text;
            pos += 12 + len;
        }
        return result;
    }

    /// <summary>iTXt after the keyword: compression flag, method, language tag\0, translated keyword\0, UTF-8 text.</summary>
    private static string? ReadInternational(ReadOnlySpan<byte> rest)
    {
        if (rest.Length < 2) return null;
        bool compressed = rest[0] == 1;
        rest = rest[2..];
        for (int skip = 0; skip < 2; skip++)
        {
            int z = rest.IndexOf((byte)0);
            if (z < 0) return null;
            rest = rest[(z + 1)..];
        }
        if (!compressed) return Encoding.UTF8.GetString(rest);
        try
        {
            using var input = new MemoryStream(rest.ToArray());
            using var inflate = new System.IO.Compression.ZLibStream(input, System.IO.Compression.CompressionMode.Decompress);
            using var output = new MemoryStream();
            inflate.CopyTo(output);
            return Encoding.UTF8.GetString(output.ToArray());
        }
        catch (InvalidDataException) { return null; }
    }

    /// <summary>Text chunks before IEND: tEXt for Latin-1 values, iTXt (UTF-8) for anything else, so no prompt character is lost.</summary>
    private static byte[] InsertText(byte[] png, IReadOnlyDictionary<string, string> text)
    {
        // IEND is the last 12 bytes of a well-formed PNG.
        int iend = png.Length - 12;
        using var ms = new MemoryStream();
        ms.Write(png, 0, iend);
        foreach (var (key, raw) in text)
        {
            if (key.Length is < 1 or > 79 || key.Any(ch => ch is < ' ' or > '~'))
                throw new ArgumentException($"PNG text key '{key}': expected 1 to 79 printable ASCII characters");
            // PNG text may not hold NUL; anything else survives: Latin-1 text as tEXt (read by every tool), the rest
            // (a prompt in Japanese, an emoji, ...) as iTXt, UTF-8 and uncompressed.
            string value = raw.Replace('\0', '\uFFFD');
            bool latin1 = value.All(ch => ch <= '\u00FF');
            byte[] data = latin1
                ? Encoding.Latin1.GetBytes(key + "\0" + value)
                : [.. Encoding.Latin1.GetBytes(key), 0, 0, 0, 0, 0, .. Encoding.UTF8.GetBytes(value)]; // keyword\0, flag 0, method 0, no language\0, no translation\0
            byte[] typeAndData = new byte[4 + data.Length];
            Encoding.ASCII.GetBytes(latin1 ? "tEXt" : "iTXt").CopyTo(typeAndData, 0);
            data.CopyTo(typeAndData, 4);
            WriteBigEndian(ms, data.Length);
            ms.Write(typeAndData);
            WriteBigEndian(ms, (int)Crc32(typeAndData));
        }
        ms.Write(png, iend, 12);
        return ms.ToArray();
    }

    private static int ReadBigEndian(byte[] b, int i) => (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];

    private static void WriteBigEndian(Stream s, int v)
    {
        s.WriteByte((byte)(v >> 24)); s.WriteByte((byte)(v >> 16)); s.WriteByte((byte)(v >> 8)); s.WriteByte((byte)v);
    }

    private static readonly uint[] CrcTable = BuildCrcTable();

    private static uint[] BuildCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
