using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using PureFlux.Model.Image;
using PureFlux.Tests.Support;
using StbImageWriteSharp;

namespace PureFlux.Tests.Model;

/// <summary>
/// Reference-image input (image editing): file decoding, Pillow's LANCZOS resize and diffusers' Flux2ImageProcessor
/// preprocessing, against tests/golden/sampling (diffusers 58eb52c, Pillow 11.1.0; see that folder's README).
/// Tolerance everywhere: none. Pillow's resampler is integer arithmetic after float64 coefficients and the [-1, 1]
/// scaling is two float32 operations, so every byte and every float must be identical.
/// </summary>
public class ReferenceImageTests
{
    private static string SamplingDir => Path.Combine(Golden.Dir, "sampling");

    private static readonly Lazy<SafetensorsFile> Preprocess = new(() => Open("image_preprocess.safetensors"));
    private static readonly Lazy<SafetensorsFile> Ref1 = new(() => Open("ref1.safetensors"));
    private static readonly Lazy<SafetensorsFile> Ref2 = new(() => Open("ref2_h48_w64.safetensors"));

    private static SafetensorsFile Open(string name) => SafetensorsFile.Open(Path.Combine(SamplingDir, name));

    private static SafetensorsFile File(string name) => name switch
    {
        "ref1" => Ref1.Value,
        "ref2_h48_w64" => Ref2.Value,
        _ => Preprocess.Value,
    };

    /// <summary>A stored uint8 HWC image.</summary>
    private static RgbImage Image(SafetensorsFile f, string name)
    {
        var e = f.Entry(name);
        Assert.Equal(DType.U8, e.DType);
        int[] d = e.Shape.ToArray();
        Assert.Equal(3, d.Length);
        Assert.Equal(3, d[2]);
        return new RgbImage(f.Bytes(name).ToArray(), d[1], d[0]);
    }

    private static JsonElement LargeNotes()
    {
        using var doc = JsonDocument.Parse(System.IO.File.ReadAllBytes(Path.Combine(SamplingDir, "manifest.json")));
        string json = doc.RootElement.GetProperty("notes").GetProperty("image_preprocess.safetensors").GetProperty("large").GetString()!;
        return JsonDocument.Parse(json).RootElement.Clone();
    }

    private static string Sha256(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void SameImage(RgbImage expected, RgbImage actual, string what)
    {
        Assert.True(expected.Width == actual.Width && expected.Height == actual.Height,
            $"{what}: {actual.Width}x{actual.Height}, expected {expected.Width}x{expected.Height} (W x H)");
        int diffs = 0, maxDiff = 0, first = -1;
        for (int i = 0; i < expected.Rgb.Length; i++)
        {
            int d = Math.Abs(expected.Rgb[i] - actual.Rgb[i]);
            if (d == 0) continue;
            if (first < 0) first = i;
            diffs++;
            maxDiff = Math.Max(maxDiff, d);
        }
        Assert.True(diffs == 0,
            $"{what}: {diffs} of {expected.Rgb.Length} bytes differ (max |diff| {maxDiff}); first at byte {first}: {actual.Rgb[Math.Max(first, 0)]} vs {expected.Rgb[Math.Max(first, 0)]}");
    }

    private static void SameFloats(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R} (bit-exact comparison)");
    }

    // ---- golden: area-limiting resize (small target area 7680) --------------------------------------------------

    [Fact]
    public void Area_resize_size_is_pythons_float64_rule()
    {
        // s = sqrt(7680 / 16500), (int(150 s), int(110 s)) = (102, 75); 1040x1024 at 1024² -> 1031x1016.
        Assert.Equal((102, 75), ReferenceImagePreprocessor.TargetAreaSize(150, 110, 7680));
        Assert.Equal((1031, 1016), ReferenceImagePreprocessor.TargetAreaSize(1040, 1024, 1024 * 1024));
    }

    [Fact]
    public void Area_resize_matches_pillow_lanczos_byte_for_byte()
    {
        var f = Preprocess.Value;
        RgbImage input = Image(f, "area_resize.input_uint8");
        Assert.Equal((150, 110), (input.Width, input.Height));
        SameImage(Image(f, "area_resize.resized_uint8"), LanczosResize.Resize(input, 102, 75), "LANCZOS 150x110 -> 102x75");
        SameImage(Image(f, "area_resize.resized_uint8"), ReferenceImagePreprocessor.ResizeToTargetArea(input, 7680), "_resize_to_target_area(7680)");
    }

    [Fact]
    public void Area_resize_preprocess_matches_every_stage()
    {
        var f = Preprocess.Value;
        var p = ReferenceImagePreprocessor.Preprocess(Image(f, "area_resize.input_uint8"), "area_resize", targetArea: 7680);
        SameImage(Image(f, "area_resize.resized_uint8"), p.Resized, "resized");
        SameImage(Image(f, "area_resize.cropped_uint8"), p.Cropped, "cropped 96x64");
        Assert.Equal((64, 96), (p.Height, p.Width));
        Assert.Equal([1, 3, 64, 96], f.Entry("area_resize.preprocessed").Shape.ToArray());
        SameFloats(f.ReadFloats("area_resize.preprocessed"), p.Data, "preprocessed [1,3,64,96]");
    }

    [Fact]
    public void Area_limit_is_not_applied_at_or_below_the_target_area()
    {
        // 16500 px with target 16500: the pipeline keeps the image (resize only when w·h > target).
        var input = Image(Preprocess.Value, "area_resize.input_uint8");
        var p = ReferenceImagePreprocessor.Preprocess(input, "area_resize", targetArea: 150 * 110);
        Assert.Same(input, p.Resized);
        Assert.Equal((144, 96), (p.Width, p.Height));
        SameImage(ReferenceImagePreprocessor.CenterCrop(input, 144, 96), p.Cropped, "crop without resize");
    }

    // ---- golden: a > 1024² image through the pipeline's preprocessing ------------------------------------------

    private static RgbImage LargeInput()
    {
        // large.base_uint8 (65x64, W x H) with every pixel repeated 16x16 -> 1040x1024.
        RgbImage b = Image(Preprocess.Value, "large.base_uint8");
        Assert.Equal((65, 64), (b.Width, b.Height));
        int w = b.Width * 16, h = b.Height * 16;
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                    rgb[(y * w + x) * 3 + c] = b[x / 16, y / 16, c];
        return new RgbImage(rgb, w, h);
    }

    [Fact]
    public void Large_image_matches_manifest_sha256_of_every_stage()
    {
        Assert.True(BitConverter.IsLittleEndian);
        var notes = LargeNotes();
        var p = ReferenceImagePreprocessor.Preprocess(LargeInput(), "large");
        Assert.Equal((1031, 1016), (p.Resized.Width, p.Resized.Height));
        Assert.Equal((1024, 1008), (p.Cropped.Width, p.Cropped.Height));
        Assert.Equal((1008, 1024), (p.Height, p.Width));
        Assert.Equal(notes.GetProperty("sha256_resized_uint8_hwc").GetString(), Sha256(p.Resized.Rgb));
        Assert.Equal(notes.GetProperty("sha256_cropped_uint8_hwc").GetString(), Sha256(p.Cropped.Rgb));
        Assert.Equal(notes.GetProperty("sha256_preprocessed_float32_le").GetString(), Sha256(MemoryMarshal.AsBytes(p.Data.AsSpan())));
    }

    [Fact]
    public void Large_image_matches_stored_windows()
    {
        var f = Preprocess.Value;
        var p = ReferenceImagePreprocessor.Preprocess(LargeInput(), "large");
        var origin = LargeNotes().GetProperty("center_16x16_origin_yx");
        int cy = origin[0].GetInt32(), cx = origin[1].GetInt32();
        Assert.Equal((496, 504), (cy, cx));
        SameFloats(f.ReadFloats("large.preprocessed.top_left_16x16"), Window(p, 0, 0), "top-left 16x16");
        SameFloats(f.ReadFloats("large.preprocessed.center_16x16"), Window(p, cy, cx), "centre 16x16 at (496, 504)");
    }

    private static float[] Window(PreprocessedImage p, int y0, int x0)
    {
        var w = new float[3 * 16 * 16];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++)
                    w[(c * 16 + y) * 16 + x] = p.Data[((long)c * p.Height + y0 + y) * p.Width + x0 + x];
        return w;
    }

    // ---- golden: the reference images of the two pipeline runs -------------------------------------------------

    public static TheoryData<string, int, int, int> RefImages() => new()
    {
        // file, index, cropped W, cropped H
        { "ref1", 0, 80, 64 },          // 90x70 -> 80x64 at left 5, top 3
        { "ref2_h48_w64", 0, 64, 96 },  // 64x100 -> 64x96 at top 2
        { "ref2_h48_w64", 1, 80, 64 },
    };

    [Theory, MemberData(nameof(RefImages))]
    public void Pipeline_reference_image_crop_and_scale_match(string file, int index, int width, int height)
    {
        var f = File(file);
        RgbImage input = Image(f, $"ref.{index}.input_uint8");
        var p = ReferenceImagePreprocessor.Preprocess(input, $"{file} ref.{index}");
        Assert.Same(input, p.Resized); // small images are not resampled
        Assert.Equal((width, height), (p.Width, p.Height));
        SameImage(Image(f, $"ref.{index}.cropped_uint8"), p.Cropped, $"{file} ref.{index} cropped");
        Assert.Equal([1, 3, height, width], f.Entry($"ref.{index}.preprocessed").Shape.ToArray());
        SameFloats(f.ReadFloats($"ref.{index}.preprocessed"), p.Data, $"{file} ref.{index} preprocessed");
    }

    [Fact]
    public void Preprocess_all_keeps_list_order()
    {
        var f = Ref2.Value;
        var all = ReferenceImagePreprocessor.PreprocessAll([(Image(f, "ref.0.input_uint8"), "a"), (Image(f, "ref.1.input_uint8"), "b")]);
        Assert.Equal(2, all.Count);
        SameFloats(f.ReadFloats("ref.0.preprocessed"), all[0].Data, "list item 0");
        SameFloats(f.ReadFloats("ref.1.preprocessed"), all[1].Data, "list item 1");
    }

    [Fact]
    public void Preprocessed_image_uploads_as_nchw_tensor()
    {
        var f = Ref1.Value;
        var p = ReferenceImagePreprocessor.Preprocess(Image(f, "ref.0.input_uint8"), "ref1");
        using var device = new CpuDevice();
        using var t = p.ToTensor(device);
        Assert.Equal([1, 3, 64, 80], t.Shape.ToArray());
        SameFloats(f.ReadFloats("ref.0.preprocessed"), t.ToArray<float>(), "tensor");
    }

    // ---- LANCZOS against Pillow on more shapes (tests/golden/image, made by tools/golden/pillow_lanczos.py) -----

    private static readonly Lazy<SafetensorsFile> PillowCases = new(() => SafetensorsFile.Open(Path.Combine(Golden.Dir, "image", "pillow_lanczos.safetensors")));

    public static TheoryData<string, int> PillowCaseNames()
    {
        var d = new TheoryData<string, int>();
        for (int i = 0; i < 8; i++) d.Add("rgb", i);
        for (int i = 0; i < 4; i++) d.Add("rgba", i);
        return d;
    }

    [Fact]
    public void Pillow_case_file_has_every_case()
    {
        Assert.Equal(2 * PillowCaseNames().Count, PillowCases.Value.Names.Count());
    }

    [Theory, MemberData(nameof(PillowCaseNames))]
    public void Lanczos_matches_pillow_on_up_down_and_one_axis_resizes(string kind, int index)
    {
        var f = PillowCases.Value;
        int[] di = f.Entry($"{kind}.{index}.input").Shape.ToArray(), dout = f.Entry($"{kind}.{index}.output").Shape.ToArray();
        byte[] input = f.Bytes($"{kind}.{index}.input").ToArray(), expected = f.Bytes($"{kind}.{index}.output").ToArray();
        RgbImage src = kind == "rgb" ? new RgbImage(input, di[1], di[0]) : SplitAlpha(input, di[1], di[0]);
        RgbImage r = LanczosResize.Resize(src, dout[1], dout[0]);
        string what = $"{kind}.{index}: {di[1]}x{di[0]} -> {dout[1]}x{dout[0]}";
        if (kind == "rgb")
        {
            SameImage(new RgbImage(expected, dout[1], dout[0]), r, what);
            return;
        }
        RgbImage want = SplitAlpha(expected, dout[1], dout[0]);
        SameImage(want, r, what + " (RGB of premultiplied RGBA)");
        Assert.NotNull(r.Alpha);
        Assert.Equal(want.Alpha, r.Alpha);
    }

    [Fact]
    public void Rgba_resize_differs_from_resizing_the_rgb_alone()
    {
        // Guards the premultiplied path: dropping alpha before the resize gives other bytes.
        var f = PillowCases.Value;
        int[] di = f.Entry("rgba.0.input").Shape.ToArray();
        RgbImage src = SplitAlpha(f.Bytes("rgba.0.input").ToArray(), di[1], di[0]);
        byte[] withAlpha = LanczosResize.Resize(src, 13, 7).Rgb;
        byte[] without = LanczosResize.Resize(src with { Alpha = null }, 13, 7).Rgb;
        Assert.NotEqual(withAlpha, without);
    }

    private static RgbImage SplitAlpha(byte[] rgba, int w, int h)
    {
        var rgb = new byte[w * h * 3];
        var a = new byte[w * h];
        for (int i = 0; i < w * h; i++)
        {
            rgb[3 * i] = rgba[4 * i];
            rgb[3 * i + 1] = rgba[4 * i + 1];
            rgb[3 * i + 2] = rgba[4 * i + 2];
            a[i] = rgba[4 * i + 3];
        }
        return new RgbImage(rgb, w, h) { Alpha = a };
    }

    // ---- LANCZOS properties beyond the goldens -------------------------------------------------------------------

    [Theory]
    [InlineData(150, 110, 47, 200)] // down x, up y
    [InlineData(64, 64, 200, 17)]
    [InlineData(90, 70, 90, 33)]    // one axis unchanged: that axis is not resampled
    public void Lanczos_keeps_a_flat_image_flat(int w, int h, int ow, int oh)
    {
        // Coefficients are normalised per output sample, so a constant image stays constant (up and down).
        var rgb = new byte[w * h * 3];
        for (int i = 0; i < rgb.Length; i += 3) { rgb[i] = 200; rgb[i + 1] = 7; rgb[i + 2] = 255; }
        var r = LanczosResize.Resize(new RgbImage(rgb, w, h), ow, oh);
        Assert.Equal((ow, oh), (r.Width, r.Height));
        for (int i = 0; i < r.Rgb.Length; i += 3)
            Assert.True(r.Rgb[i] == 200 && r.Rgb[i + 1] == 7 && r.Rgb[i + 2] == 255, $"pixel {i / 3}: {r.Rgb[i]},{r.Rgb[i + 1]},{r.Rgb[i + 2]}");
    }

    [Fact]
    public void Lanczos_to_the_same_size_is_an_exact_copy()
    {
        var input = Image(Preprocess.Value, "area_resize.input_uint8");
        var r = LanczosResize.Resize(input, input.Width, input.Height);
        Assert.NotSame(input.Rgb, r.Rgb);
        SameImage(input, r, "identity resize");
    }

    // ---- ImageFile: decoding ------------------------------------------------------------------------------------

    private sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("pureflux-refimg-").FullName;
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
    }

    private static byte[] Noise(int w, int h, int channels, int seed)
    {
        var rgb = new byte[w * h * channels];
        new Random(seed).NextBytes(rgb);
        return rgb;
    }

    private static byte[] Encode(Action<ImageWriter, Stream> write)
    {
        using var ms = new MemoryStream();
        write(new ImageWriter(), ms);
        return ms.ToArray();
    }

    [Fact]
    public void Png_round_trip_is_exact()
    {
        using var dir = new TempDir();
        string path = dir.File("noise.png");
        byte[] rgb = Noise(97, 66, 3, 1);
        PngWriter.Save(path, rgb, 97, 66, new Dictionary<string, string> { ["prompt"] = "x" });
        var img = ImageFile.Load(path);
        Assert.Equal((97, 66), (img.Width, img.Height));
        Assert.Equal(rgb, img.Rgb);
    }

    [Fact]
    public void Grey_png_is_replicated_and_alpha_is_dropped()
    {
        using var dir = new TempDir();
        byte[] grey = Noise(70, 65, 1, 2), rgba = Noise(70, 65, 4, 3);
        System.IO.File.WriteAllBytes(dir.File("g.png"), Encode((w, s) => w.WritePng(grey, 70, 65, ColorComponents.Grey, s)));
        System.IO.File.WriteAllBytes(dir.File("a.png"), Encode((w, s) => w.WritePng(rgba, 70, 65, ColorComponents.RedGreenBlueAlpha, s)));
        var g = ImageFile.Load(dir.File("g.png"));
        var a = ImageFile.Load(dir.File("a.png"));
        for (int i = 0; i < 70 * 65; i++)
        {
            Assert.True(g.Rgb[3 * i] == grey[i] && g.Rgb[3 * i + 1] == grey[i] && g.Rgb[3 * i + 2] == grey[i], $"grey pixel {i}");
            Assert.True(a.Rgb[3 * i] == rgba[4 * i] && a.Rgb[3 * i + 1] == rgba[4 * i + 1] && a.Rgb[3 * i + 2] == rgba[4 * i + 2], $"RGBA pixel {i}: alpha must be dropped, not composited");
            Assert.Equal(rgba[4 * i + 3], a.Alpha![i]);
        }
        Assert.Null(g.Alpha);
    }

    [Fact]
    public void Jpeg_decodes_close_to_its_source()
    {
        using var dir = new TempDir();
        const int w = 96, h = 80;
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                rgb[(y * w + x) * 3] = (byte)(x * 255 / (w - 1));
                rgb[(y * w + x) * 3 + 1] = (byte)(y * 255 / (h - 1));
                rgb[(y * w + x) * 3 + 2] = 128;
            }
        string path = dir.File("gradient.jpg");
        System.IO.File.WriteAllBytes(path, Encode((wr, s) => wr.WriteJpg(rgb, w, h, ColorComponents.RedGreenBlue, s, 95)));
        Assert.Equal(0xFF, System.IO.File.ReadAllBytes(path)[0]); // really a JPEG (SOI marker FF D8)
        var img = ImageFile.Load(path);
        Assert.Equal((w, h), (img.Width, img.Height));
        double mean = 0;
        int max = 0;
        for (int i = 0; i < rgb.Length; i++)
        {
            int d = Math.Abs(rgb[i] - img.Rgb[i]);
            mean += d;
            max = Math.Max(max, d);
        }
        mean /= rgb.Length;
        Assert.True(mean < 2.0 && max < 24, $"JPEG q95 of a smooth gradient: mean |diff| {mean:F2}, max {max}");
    }

    // ---- bad inputs: one line naming the file -------------------------------------------------------------------

    private static void OneLineNaming(Exception? e, string path, string expect)
    {
        Assert.NotNull(e);
        Assert.True(e is ImageFileException or ArgumentException, $"{e.GetType().Name}: {e.Message}");
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains(expect, e.Message);
    }

    [Fact]
    public void Missing_file_is_one_line()
    {
        using var dir = new TempDir();
        string path = dir.File("nope.png");
        OneLineNaming(Record.Exception(() => ImageFile.Load(path)), path, "not found");
    }

    [Fact]
    public void Text_file_named_png_is_one_line()
    {
        using var dir = new TempDir();
        string path = dir.File("notes.png");
        System.IO.File.WriteAllText(path, "this is not an image\nsecond line\n");
        var e = Record.Exception(() => ImageFile.Load(path));
        OneLineNaming(e, path, "cannot decode");
        Assert.IsType<ImageFileException>(e);
        Assert.Contains("PNG or JPEG", e.Message);
    }

    [Fact]
    public void Empty_file_is_one_line()
    {
        using var dir = new TempDir();
        string path = dir.File("empty.jpg");
        System.IO.File.WriteAllBytes(path, []);
        OneLineNaming(Record.Exception(() => ImageFile.Load(path)), path, "empty");
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.9)]
    [InlineData(0.02)]
    public void Truncated_png_is_one_line(double keep)
    {
        using var dir = new TempDir();
        byte[] png = Encode((w, s) => w.WritePng(Noise(80, 80, 3, 4), 80, 80, ColorComponents.RedGreenBlue, s));
        string path = dir.File("cut.png");
        System.IO.File.WriteAllBytes(path, png[..(int)(png.Length * keep)]);
        var e = Record.Exception(() => ImageFile.Load(path));
        OneLineNaming(e, path, "cannot decode");
        Assert.IsType<ImageFileException>(e);
    }

    [Fact]
    public void Image_63_px_wide_is_refused_naming_file_and_size()
    {
        using var dir = new TempDir();
        string path = dir.File("narrow.png");
        PngWriter.Save(path, Noise(63, 100, 3, 5), 63, 100);
        var e = Record.Exception(() => ReferenceImagePreprocessor.LoadAll([path]));
        OneLineNaming(e, path, "63x100");
        Assert.Contains("at least 64", e!.Message);
        // 64 wide is accepted (boundary)
        PngWriter.Save(path, Noise(64, 100, 3, 5), 64, 100);
        Assert.Equal((64, 96), (ReferenceImagePreprocessor.LoadAll([path])[0].Width, ReferenceImagePreprocessor.LoadAll([path])[0].Height));
    }

    [Fact]
    public void Aspect_9_to_1_is_refused_naming_file_and_size()
    {
        using var dir = new TempDir();
        string ok = dir.File("ok.png"), wide = dir.File("wide.png");
        PngWriter.Save(ok, Noise(80, 80, 3, 6), 80, 80);
        PngWriter.Save(wide, Noise(576, 64, 3, 7), 576, 64);
        // every image is validated before any is processed; the error names the offending one
        var e = Record.Exception(() => ReferenceImagePreprocessor.LoadAll([ok, wide]));
        OneLineNaming(e, wide, "576x64");
        Assert.Contains("9.0:1", e!.Message);
        Assert.DoesNotContain(ok, e.Message);
        // exactly 8:1 is accepted (boundary)
        PngWriter.Save(wide, Noise(512, 64, 3, 7), 512, 64);
        Assert.Equal(512, ReferenceImagePreprocessor.LoadAll([ok, wide])[1].Width);
    }

    [Fact]
    public void Tall_aspect_over_8_is_refused_too()
    {
        var img = new RgbImage(new byte[64 * 600 * 3], 64, 600);
        var e = Record.Exception(() => ReferenceImagePreprocessor.Preprocess(img, "reference image 2"));
        OneLineNaming(e, "reference image 2", "64x600");
    }
}
