namespace PureFlux.Model.Image;

/// <summary>
/// A reference image ready for the VAE: float32 CHW [3, Height, Width] in [-1, 1], with the intermediate images.
/// </summary>
/// <param name="Data">3·Height·Width values, channel-major (R plane, G plane, B plane).</param>
/// <param name="Resized">The image after the area limit (the input itself when it was small enough).</param>
/// <param name="Cropped">The centre crop to multiples of 16 that <paramref name="Data"/> was made from.</param>
public sealed record PreprocessedImage(float[] Data, int Height, int Width, RgbImage Resized, RgbImage Cropped)
{
    /// <summary>Uploads the image as a float32 tensor [1, 3, Height, Width].</summary>
    public Tensor ToTensor(Device device, string? name = null) =>
        Tensor.FromSpan<float>(device, Data, new Shape(1, 3, Height, Width), name: name);
}

/// <summary>
/// Reference-image preprocessing of diffusers' <c>Flux2KleinPipeline</c> / <c>Flux2ImageProcessor</c> (image editing):
/// validate (each side ≥ 64 px, aspect ratio ≤ 8), LANCZOS-resize to about 1024² pixels when larger, round width and
/// height down to multiples of 16 and centre-crop (no resampling), then scale to [-1, 1] as 2·(u8/255) − 1.
/// </summary>
public static class ReferenceImagePreprocessor
{
    /// <summary>The pipeline's area limit (pixels) above which a reference image is downscaled.</summary>
    public const long DefaultTargetArea = 1024 * 1024;
    public const int MinSideLength = 64;
    public const int MaxAspectRatio = 8;
    /// <summary>vae_scale_factor · 2 (8 · 2): the VAE downsamples 8x and the latents are patchified 2x2.</summary>
    public const int Multiple = 16;

    /// <summary>
    /// <c>Flux2ImageProcessor.check_image_input</c>: both sides ≥ 64 px and max(w/h, h/w) ≤ 8.
    /// </summary>
    /// <param name="name">How the image is named in the error (its file, or "reference image 2").</param>
    /// <exception cref="ArgumentException">One line naming the image and the size found.</exception>
    public static void Validate(RgbImage image, string name)
    {
        ArgumentNullException.ThrowIfNull(image);
        int w = image.Width, h = image.Height;
        if (w < MinSideLength || h < MinSideLength)
            throw new ArgumentException($"reference image '{name}': {w}x{h} (W x H) is too small; both sides must be at least {MinSideLength} px");
        double aspect = Math.Max((double)w / h, (double)h / w);
        if (aspect > MaxAspectRatio)
            throw new ArgumentException($"reference image '{name}': {w}x{h} (W x H) has aspect ratio {aspect.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)}:1; at most {MaxAspectRatio}:1 is allowed");
    }

    /// <summary>
    /// The size <c>Flux2ImageProcessor._resize_to_target_area</c> resizes to: (int(w·s), int(h·s)) with
    /// s = sqrt(targetArea / (w·h)), all in float64 as Python computes it.
    /// </summary>
    public static (int Width, int Height) TargetAreaSize(int width, int height, long targetArea)
    {
        double scale = Math.Sqrt((double)targetArea / ((double)width * height));
        return ((int)(width * scale), (int)(height * scale));
    }

    /// <summary><c>_resize_to_target_area</c>: LANCZOS to <see cref="TargetAreaSize"/> (always, even when smaller).</summary>
    public static RgbImage ResizeToTargetArea(RgbImage image, long targetArea = DefaultTargetArea)
    {
        ArgumentNullException.ThrowIfNull(image);
        var (w, h) = TargetAreaSize(image.Width, image.Height, targetArea);
        return LanczosResize.Resize(image, w, h);
    }

    /// <summary>The pipeline's rule: resize to the target area only when w·h exceeds it; otherwise the image itself.</summary>
    public static RgbImage ResizeIfExceedsArea(RgbImage image, long targetArea = DefaultTargetArea)
    {
        ArgumentNullException.ThrowIfNull(image);
        return (long)image.Width * image.Height > targetArea ? ResizeToTargetArea(image, targetArea) : image;
    }

    /// <summary>Centre crop (<c>Flux2ImageProcessor._resize_and_crop</c>): left = (W − w) // 2, top = (H − h) // 2.</summary>
    public static RgbImage CenterCrop(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width <= 0 || height <= 0 || width > image.Width || height > image.Height)
            throw new ArgumentException($"centre crop of a {image.Width}x{image.Height} image to {width}x{height} (W x H): the crop must be non-empty and fit inside");
        int left = (image.Width - width) / 2, top = (image.Height - height) / 2;
        var dst = new byte[(long)width * height * 3];
        byte[]? alpha = image.Alpha is null ? null : new byte[(long)width * height];
        for (int y = 0; y < height; y++)
        {
            long row = (long)(top + y) * image.Width + left;
            Array.Copy(image.Rgb, row * 3, dst, (long)y * width * 3, width * 3);
            if (alpha is not null) Array.Copy(image.Alpha!, row, alpha, (long)y * width, width);
        }
        return new RgbImage(dst, width, height) { Alpha = alpha };
    }

    /// <summary>
    /// HWC uint8 → CHW float32 in [-1, 1], bit-identical to diffusers (<c>np.float32(u8) / 255.0</c> in float32, then
    /// torch's <c>2.0 * x - 1.0</c> in float32).
    /// </summary>
    public static float[] ToNormalizedChw(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        // 256 possible inputs: build the table with exactly the float32 operations diffusers performs.
        Span<float> table = stackalloc float[256];
        for (int v = 0; v < 256; v++)
        {
            float x = (float)v / 255f;
            table[v] = 2f * x - 1f;
        }
        int plane = image.Width * image.Height;
        var data = new float[3 * plane];
        byte[] rgb = image.Rgb;
        for (int i = 0; i < plane; i++)
        {
            data[i] = table[rgb[3 * i]];
            data[plane + i] = table[rgb[3 * i + 1]];
            data[2 * plane + i] = table[rgb[3 * i + 2]];
        }
        return data;
    }

    /// <summary>
    /// One reference image as the pipeline prepares it: validate, area limit, round down to multiples of 16,
    /// centre crop, scale to [-1, 1].
    /// </summary>
    /// <param name="name">How the image is named in errors (its file name or "reference image i").</param>
    /// <param name="targetArea">Area limit in pixels; the pipeline uses 1024·1024.</param>
    public static PreprocessedImage Preprocess(RgbImage image, string name, long targetArea = DefaultTargetArea)
    {
        Validate(image, name);
        return PreprocessValidated(image, targetArea);
    }

    /// <summary>
    /// Several reference images in list order. As in the pipeline, every image is validated before any is processed.
    /// </summary>
    public static IReadOnlyList<PreprocessedImage> PreprocessAll(IReadOnlyList<(RgbImage Image, string Name)> images, long targetArea = DefaultTargetArea)
    {
        ArgumentNullException.ThrowIfNull(images);
        foreach (var (image, name) in images) Validate(image, name);
        return [.. images.Select(x => PreprocessValidated(x.Image, targetArea))];
    }

    /// <summary>Loads image files (<see cref="ImageFile.Load"/>) and preprocesses them; errors name the file.</summary>
    /// <exception cref="ImageFileException">A file cannot be read or decoded.</exception>
    /// <exception cref="ArgumentException">An image is too small or too elongated.</exception>
    public static IReadOnlyList<PreprocessedImage> LoadAll(IReadOnlyList<string> paths, long targetArea = DefaultTargetArea)
    {
        ArgumentNullException.ThrowIfNull(paths);
        return PreprocessAll([.. paths.Select(p => (ImageFile.Load(p), p))], targetArea);
    }

    private static PreprocessedImage PreprocessValidated(RgbImage image, long targetArea)
    {
        RgbImage resized = ResizeIfExceedsArea(image, targetArea);
        int w = resized.Width / Multiple * Multiple, h = resized.Height / Multiple * Multiple;
        RgbImage cropped = CenterCrop(resized, w, h);
        return new PreprocessedImage(ToNormalizedChw(cropped), h, w, resized, cropped);
    }
}
