namespace PureFlux.Model.Image;

/// <summary>
/// Pillow's <c>Image.resize((w, h), Image.LANCZOS)</c> on 8-bit RGB, reproduced byte for byte.
/// </summary>
/// <remarks>
/// The algorithm is Pillow's convolution resampler (src/libImaging/Resample.c, credit to the Pillow authors; this is
/// our own code written from its description). Per axis, output sample i is centred at (i + 0.5)·scale in input
/// coordinates, scale = in/out. The Lanczos-3 kernel sinc(x)·sinc(x/3) is stretched by max(scale, 1), so its support
/// is 3·max(scale, 1) input pixels; the taps run from (int)(centre − support + 0.5) to (int)(centre + support + 0.5)
/// clipped to the image, are evaluated in float64 at (tap − centre + 0.5)/max(scale, 1), divided by their sum, then
/// turned into fixed point with 22 fractional bits (32 − 8 − 2: 8 for the value, 2 for the kernel's overshoot),
/// rounding half away from zero. Each output value is (2^21 + Σ u8·k) >> 22 clamped to 0..255. The horizontal pass
/// runs first (into 8-bit), then the vertical one; an axis whose size does not change is not resampled at all.
/// Plain <c>resize</c> uses neither a box nor <c>reducing_gap</c>, so none of that is modelled.
/// An image with <see cref="RgbImage.Alpha"/> is resized as Pillow resizes RGBA/LA: premultiplied
/// (c·a + 128 + ((c·a + 128) >> 8)) >> 8, the four channels resampled alike, then un-premultiplied
/// min(255, 255·c / a) in integers (a of 0 or 255 left as is).
/// </remarks>
public static class LanczosResize
{
    /// <summary>Fractional bits of the fixed-point coefficients (Pillow's PRECISION_BITS).</summary>
    public const int PrecisionBits = 32 - 8 - 2;

    private const double Support = 3.0;

    /// <summary>Resizes <paramref name="src"/> to <paramref name="width"/> x <paramref name="height"/>.</summary>
    public static RgbImage Resize(RgbImage src, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(src);
        if (width <= 0 || height <= 0)
            throw new ArgumentException($"LANCZOS resize of a {src.Width}x{src.Height} image to {width}x{height} (W x H): sizes must be positive");
        if (width == src.Width && height == src.Height)
            return new RgbImage((byte[])src.Rgb.Clone(), width, height) { Alpha = (byte[]?)src.Alpha?.Clone() };
        if (src.Alpha is null) return new RgbImage(Resample(src.Rgb, 3, src.Width, src.Height, width, height), width, height);

        byte[] rgba = Premultiply(src.Rgb, src.Alpha);
        byte[] outRgba = Resample(rgba, 4, src.Width, src.Height, width, height);
        var (rgb, alpha) = Unpremultiply(outRgba);
        return new RgbImage(rgb, width, height) { Alpha = alpha };
    }

    private static byte[] Resample(byte[] src, int channels, int srcWidth, int srcHeight, int width, int height)
    {

        var (hBounds, hCoeffs, hTaps) = Coefficients(srcWidth, width);
        var (vBounds, vCoeffs, vTaps) = Coefficients(srcHeight, height);

        byte[] data = src;
        int rowOffset = 0;
        if (width != srcWidth)
        {
            // Only the input rows the vertical pass reads are resampled horizontally (as Pillow does).
            int first = vBounds[0], last = vBounds[2 * (height - 1)] + vBounds[2 * (height - 1) + 1];
            if (height == srcHeight) { first = 0; last = srcHeight; }
            data = Horizontal(src, channels, srcWidth, first, last - first, width, hBounds, hCoeffs, hTaps);
            rowOffset = first;
        }
        if (height != srcHeight)
            data = Vertical(data, width * channels, rowOffset, height, vBounds, vCoeffs, vTaps);
        return data;
    }

    private static byte[] Premultiply(byte[] rgb, byte[] alpha)
    {
        var rgba = new byte[alpha.LongLength * 4];
        for (long i = 0; i < alpha.LongLength; i++)
        {
            int a = alpha[i];
            for (int c = 0; c < 3; c++)
            {
                int t = rgb[3 * i + c] * a + 128;
                rgba[4 * i + c] = (byte)(((t >> 8) + t) >> 8);
            }
            rgba[4 * i + 3] = (byte)a;
        }
        return rgba;
    }

    private static (byte[] Rgb, byte[] Alpha) Unpremultiply(byte[] rgba)
    {
        long pixels = rgba.LongLength / 4;
        var rgb = new byte[pixels * 3];
        var alpha = new byte[pixels];
        for (long i = 0; i < pixels; i++)
        {
            int a = rgba[4 * i + 3];
            alpha[i] = (byte)a;
            for (int c = 0; c < 3; c++)
            {
                int v = rgba[4 * i + c];
                rgb[3 * i + c] = a is 0 or 255 ? (byte)v : (byte)Math.Min(255, 255 * v / a);
            }
        }
        return (rgb, alpha);
    }

    private static double Sinc(double x)
    {
        if (x == 0.0) return 1.0;
        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    private static double Lanczos(double x) => -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;

    /// <summary>
    /// Per output sample: first input index and tap count (bounds[2i], bounds[2i+1]) and <c>taps</c> fixed-point
    /// coefficients starting at coeffs[i·taps].
    /// </summary>
    internal static (int[] Bounds, int[] Coeffs, int Taps) Coefficients(int inSize, int outSize)
    {
        // Pillow passes the box edges as float; for whole-image boxes in0 = 0 and in1 = inSize exactly.
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = Support * filterScale;
        int taps = (int)Math.Ceiling(support) * 2 + 1;
        double invFilterScale = 1.0 / filterScale;
        var bounds = new int[outSize * 2];
        var coeffs = new int[outSize * taps];
        var k = new double[taps];
        for (int i = 0; i < outSize; i++)
        {
            double center = (i + 0.5) * scale;
            int min = (int)(center - support + 0.5);
            if (min < 0) min = 0;
            int max = (int)(center + support + 0.5);
            if (max > inSize) max = inSize;
            max -= min;
            double sum = 0.0;
            for (int x = 0; x < max; x++)
            {
                double w = Lanczos((x + min - center + 0.5) * invFilterScale);
                k[x] = w;
                sum += w;
            }
            for (int x = 0; x < max; x++)
            {
                double v = sum != 0.0 ? k[x] / sum : k[x];
                coeffs[i * taps + x] = v < 0 ? (int)(-0.5 + v * (1 << PrecisionBits)) : (int)(0.5 + v * (1 << PrecisionBits));
            }
            bounds[2 * i] = min;
            bounds[2 * i + 1] = max;
        }
        return (bounds, coeffs, taps);
    }

    private static byte Clip8(int acc)
    {
        int v = acc >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    private static byte[] Horizontal(byte[] src, int channels, int inWidth, int firstRow, int rows, int outWidth, int[] bounds, int[] coeffs, int taps)
    {
        var dst = new byte[(long)rows * outWidth * channels];
        Parallel.For(0, rows, y =>
        {
            int inRow = (firstRow + y) * inWidth * channels, outRow = y * outWidth * channels;
            for (int xx = 0; xx < outWidth; xx++)
            {
                int min = bounds[2 * xx], n = bounds[2 * xx + 1], kOff = xx * taps;
                int s0 = 1 << (PrecisionBits - 1), s1 = s0, s2 = s0, s3 = s0;
                int p = inRow + min * channels;
                for (int x = 0; x < n; x++, p += channels)
                {
                    int c = coeffs[kOff + x];
                    s0 += src[p] * c;
                    s1 += src[p + 1] * c;
                    s2 += src[p + 2] * c;
                    if (channels == 4) s3 += src[p + 3] * c;
                }
                int o = outRow + xx * channels;
                dst[o] = Clip8(s0);
                dst[o + 1] = Clip8(s1);
                dst[o + 2] = Clip8(s2);
                if (channels == 4) dst[o + 3] = Clip8(s3);
            }
        });
        return dst;
    }

    /// <summary>Vertical pass over rows of <paramref name="stride"/> bytes (every channel alike).</summary>
    private static byte[] Vertical(byte[] src, int stride, int rowOffset, int outHeight, int[] bounds, int[] coeffs, int taps)
    {
        var dst = new byte[(long)outHeight * stride];
        Parallel.For(0, outHeight, yy =>
        {
            int min = bounds[2 * yy] - rowOffset, n = bounds[2 * yy + 1], kOff = yy * taps;
            int outRow = yy * stride;
            for (int i = 0; i < stride; i++)
            {
                int s = 1 << (PrecisionBits - 1);
                int p = min * stride + i;
                for (int y = 0; y < n; y++, p += stride) s += src[p] * coeffs[kOff + y];
                dst[outRow + i] = Clip8(s);
            }
        });
        return dst;
    }
}
