namespace PureFlux.Model.Image;

/// <summary>
/// An 8-bit RGB image, interleaved row-major [Height, Width, 3] (HWC), as PIL's <c>np.array(img.convert("RGB"))</c>.
/// </summary>
public sealed record RgbImage(byte[] Rgb, int Width, int Height)
{
    public byte[] Rgb { get; } = Width > 0 && Height > 0 && Rgb.LongLength == (long)Width * Height * 3 ? Rgb
        : throw new ArgumentException($"RGB image: {Rgb.LongLength} bytes do not make a {Width}x{Height} (W x H) RGB image");

    /// <summary>Pixel (x, y) channel c.</summary>
    public byte this[int x, int y, int c] => Rgb[((long)y * Width + x) * 3 + c];
}
