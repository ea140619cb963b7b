using StbImageSharp;

namespace PureFlux.Model.Image;

/// <summary>An image file that is missing, unreadable, corrupt or of an unsupported format; one line naming the file.</summary>
public sealed class ImageFileException(string message) : Exception(message);

/// <summary>Reads image files into <see cref="RgbImage"/>.</summary>
public static class ImageFile
{
    private const string Expected = "expected a PNG or JPEG image (BMP, GIF, TGA and PSD also load)";

    /// <summary>
    /// Decodes PNG, JPEG, BMP, GIF (first frame), TGA or PSD with stb_image (StbImageSharp) and converts it to RGB the
    /// way PIL's <c>Image.convert("RGB")</c> does: grey is replicated to three channels, palettes are expanded and an
    /// alpha channel is dropped (not composited onto a background). 16-bit PNGs are reduced to 8 bits per channel.
    /// </summary>
    /// <exception cref="ImageFileException">The file is missing, unreadable, not an image or corrupt.</exception>
    public static RgbImage Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new ImageFileException($"image '{path}': is a directory; {Expected}");
        if (!File.Exists(path)) throw new ImageFileException($"image '{path}': file not found; {Expected}");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ImageFileException($"image '{path}': cannot read ({OneLine(e.Message)}); {Expected}");
        }
        return Decode(bytes, path);
    }

    /// <summary>Decodes an in-memory image file; <paramref name="name"/> is used in error messages.</summary>
    /// <exception cref="ImageFileException">Not an image of a supported format, or corrupt.</exception>
    public static RgbImage Decode(byte[] bytes, string name)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        if (bytes.Length == 0) throw new ImageFileException($"image '{name}': the file is empty; {Expected}");
        ImageResult result;
        try
        {
            result = ImageResult.FromMemory(bytes, ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // stb reports a short reason ("unknown image type", "bad zlib header", "outofdata", ...); a truncated
            // stream can also surface as an index error from the managed port.
            string why = e is InvalidOperationException or NotSupportedException ? OneLine(e.Message) : "corrupt or truncated data";
            throw new ImageFileException($"image '{name}': cannot decode ({why}); {Expected}");
        }
        if (result is null || result.Data is null || result.Width <= 0 || result.Height <= 0
            || result.Data.LongLength != (long)result.Width * result.Height * 3)
            throw new ImageFileException($"image '{name}': cannot decode (no pixel data); {Expected}");
        return new RgbImage(result.Data, result.Width, result.Height);
    }

    private static string OneLine(string s) => string.Join(' ', s.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries)).Trim();
}
