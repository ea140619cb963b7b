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
    /// A grey+alpha or RGBA file's alpha is kept in <see cref="RgbImage.Alpha"/> for Pillow-exact resizing.
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
            result = ImageResult.FromMemory(bytes, ColorComponents.RedGreenBlueAlpha);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // stb reports a short reason ("unknown image type", "bad zlib header", "outofdata", ...); a truncated
            // stream can also surface as an index error from the managed port.
            string why = e is InvalidOperationException or NotSupportedException ? OneLine(e.Message) : "corrupt or truncated data";
            throw new ImageFileException($"image '{name}': cannot decode ({why}); {Expected}");
        }
        if (result is null || result.Data is null || result.Width <= 0 || result.Height <= 0
            || result.Data.LongLength != (long)result.Width * result.Height * 4)
            throw new ImageFileException($"image '{name}': cannot decode (no pixel data); {Expected}");
        long pixels = (long)result.Width * result.Height;
        var rgb = new byte[pixels * 3];
        byte[] rgba = result.Data;
        for (long i = 0; i < pixels; i++)
        {
            rgb[3 * i] = rgba[4 * i];
            rgb[3 * i + 1] = rgba[4 * i + 1];
            rgb[3 * i + 2] = rgba[4 * i + 2];
        }
        // stb reports the file's own channel count: 2 = grey+alpha, 4 = RGBA (or a palette with transparency).
        byte[]? alpha = null;
        if (result.SourceComp is ColorComponents.GreyAlpha or ColorComponents.RedGreenBlueAlpha)
        {
            alpha = new byte[pixels];
            for (long i = 0; i < pixels; i++) alpha[i] = rgba[4 * i + 3];
        }
        return new RgbImage(rgb, result.Width, result.Height) { Alpha = alpha };
    }

    private static string OneLine(string s) => string.Join(' ', s.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries)).Trim();
}
