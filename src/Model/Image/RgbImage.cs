namespace PureFlux.Model.Image;

/// <summary>
/// An 8-bit RGB image, interleaved row-major [Height, Width, 3] (HWC), as PIL's <c>np.array(img.convert("RGB"))</c>.
/// </summary>
/// <remarks>
/// <see cref="Alpha"/> keeps the source file's alpha channel (row-major [Height, Width]) when it had one. It is never
/// part of the pixels handed on (PIL's <c>convert("RGB")</c> drops it), but Pillow resizes RGBA/LA images with
/// premultiplied alpha, so <see cref="LanczosResize"/> needs it to reproduce diffusers on a large transparent image.
/// </remarks>
public sealed record RgbImage(byte[] Rgb, int Width, int Height)
{
    private readonly byte[]? _alpha;

    /// <summary>The source alpha channel [Height, Width], or null for an opaque image.</summary>
    public byte[]? Alpha
    {
        get => _alpha;
        init => _alpha = value is null || value.LongLength == (long)Width * Height ? value
            : throw new ArgumentException($"RGB image: {value.LongLength} alpha bytes do not match {Width}x{Height} (W x H)");
    }

    public byte[] Rgb { get; } = Width > 0 && Height > 0 && Rgb.LongLength == (long)Width * Height * 3 ? Rgb
        : throw new ArgumentException($"RGB image: {Rgb.LongLength} bytes do not make a {Width}x{Height} (W x H) RGB image");

    /// <summary>Pixel (x, y) channel c.</summary>
    public byte this[int x, int y, int c] => Rgb[((long)y * Width + x) * 3 + c];
}
