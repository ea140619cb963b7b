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

    /// <summary>Reads the tEXt chunks of a PNG file (for tests and tools).</summary>
    public static Dictionary<string, string> ReadText(byte[] png)
    {
        var result = new Dictionary<string, string>();
        int pos = 8;
        while (pos + 8 <= png.Length)
        {
            int len = ReadBigEndian(png, pos);
            string type = Encoding.ASCII.GetString(png, pos + 4, 4);
            if (type == "tEXt")
            {
                var data = png.AsSpan(pos + 8, len);
                int zero = data.IndexOf((byte)0);
                if (zero > 0) result[Encoding.Latin1.GetString(data[..zero])] = Encoding.Latin1.GetString(data[(zero + 1)..]);
            }
            pos += 12 + len;
        }
        return result;
    }

    private static byte[] InsertText(byte[] png, IReadOnlyDictionary<string, string> text)
    {
        // IEND is the last 12 bytes of a well-formed PNG.
        int iend = png.Length - 12;
        using var ms = new MemoryStream();
        ms.Write(png, 0, iend);
        foreach (var (key, value) in text)
        {
            // tEXt is Latin-1; characters outside it become '?'.
            byte[] data = Encoding.Latin1.GetBytes(key + "\0" + value);
            byte[] typeAndData = new byte[4 + data.Length];
            Encoding.ASCII.GetBytes("tEXt").CopyTo(typeAndData, 0);
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
