using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.QwenImage;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// Qwen-Image image-to-image beyond the golden file (which pins the numbers): the engine's conventions on a random
/// qwen-image-tiny snapshot (strength 1 with given noise is text-to-image, a batch equals single runs with seed + b) and
/// <c>generate --init-image --strength</c> from the command line.
/// </summary>
public sealed class QwenImageImg2ImgTests : IDisposable
{
    private static readonly Lazy<string> Tiny = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-qwenimage-i2i-tiny-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model_index.json"))) QwenImageRandomSnapshot.Write(dir, QwenImagePreset.Tiny, seed: 4);
        return dir;
    });

    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"pureflux-qwenimage-i2i-{Environment.ProcessId}-{Guid.NewGuid():N}");
    public QwenImageImg2ImgTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    private static void SkipUnderBackendFilter()
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS")))
            Assert.Skip("host-side engine and CLI tests run in the main pass only");
    }

    /// <summary>x → red, y → green, blue 128: an image whose encoding differs from place to place.</summary>
    private static RgbImage Gradient(int w, int h)
    {
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = (y * w + x) * 3;
                (rgb[i], rgb[i + 1], rgb[i + 2]) = ((byte)(x * 255 / w), (byte)(y * 255 / h), 128);
            }
        return new RgbImage(rgb, w, h);
    }

    [Fact]
    public void Strength_one_with_given_noise_is_text_to_image_and_lower_strength_starts_later()
    {
        SkipUnderBackendFilter();
        using var cpu = new CpuDevice();
        using var model = (QwenImageModel)ModelFamilies.Open(Tiny.Value, cpu);
        using var noise = Tensor.FromSpan<float>(cpu, Enumerable.Range(0, 16 * 4 * 6).Select(i => MathF.Sin(i * 0.37f)).ToArray(), new Shape(1, 16, 4, 6));
        var t2i = new GenerationJob { Prompts = ["a red fox"], Width = 48, Height = 32, Steps = 4, Noise = noise };
        var plain = GenerationEngine.Run(model, t2i);
        // σ[0] = 1: σ·noise + (1 − σ)·z is the noise exactly, and the whole schedule runs.
        int calls = 0;
        var full = GenerationEngine.Run(model, t2i with { InitImage = Gradient(48, 32), Strength = 1.0 }, new GenerationHooks { OnStep = _ => calls++ });
        Assert.Equal(4, calls);
        Assert.Equal(plain.Decoded, full.Decoded);
        // Strength 0.5 of 4 steps: t_start 2, two steps from σ[2] (the image shows through).
        var traced = new Dictionary<string, float[]>();
        calls = 0;
        var half = GenerationEngine.Run(model, t2i with { InitImage = Gradient(48, 32), Strength = 0.5 },
            new GenerationHooks { OnStep = _ => calls++, Trace = (n, t) => traced[n] = t.ToFloatArray() });
        Assert.Equal(2, calls);
        Assert.NotEqual(plain.Decoded, half.Decoded);
        using var sampler = model.CreateSampler(PureFlux.Model.Scheduler.SamplerKind.Euler, 4, model.Layout(48, 32));
        float sigma = sampler.Sigmas[2];
        var z = traced["img2img.image_latents"];
        var nz = noise.ToFloatArray();
        var noisy = traced["img2img.noisy_latents"];
        for (int i = 0; i < z.Length; i++) Assert.Equal(sigma * nz[i] + (1f - sigma) * z[i], noisy[i], 6);
    }

    [Fact]
    public void A_batch_equals_single_runs_with_seed_plus_b()
    {
        SkipUnderBackendFilter();
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Tiny.Value, cpu);
        var job = new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 3, Seed = 7, InitImage = Gradient(40, 36), Strength = 0.7 };
        var batch = GenerationEngine.Run(model, job with { ImagesPerPrompt = 2 });
        var first = GenerationEngine.Run(model, job);
        var second = GenerationEngine.Run(model, job with { Seed = 8 });
        int n = first.Decoded.Length;
        Assert.Equal(first.Decoded, batch.Decoded[..n]);
        Assert.Equal(second.Decoded, batch.Decoded[n..]);
        Assert.NotEqual(first.Decoded, second.Decoded);
    }

    [Fact]
    public void Generate_with_init_image_and_strength_from_the_cli_matches_the_engine()
    {
        SkipUnderBackendFilter();
        var init = Gradient(50, 40);
        PngWriter.Save(P("init.png"), init.Rgb, init.Width, init.Height);
        var (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "a red fox", "--init-image", P("init.png"), "--strength", "0.5",
            "--steps", "4", "--seed", "3", "--out", P("out.png"), "--no-prompt-cache");
        Assert.True(code == 0, e);
        var png = ImageFile.Load(P("out.png"));
        Assert.Equal((48, 32), (png.Width, png.Height)); // the init image's size rounded down to 16
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Tiny.Value, cpu);
        var r = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], InitImage = init, Strength = 0.5, Steps = 4, Seed = 3 });
        Assert.Equal(r.Image(0).Rgb, png.Rgb);

        (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "x", "--init-image", P("missing.png"), "--out", P("m.png"), "--no-prompt-cache");
        Assert.NotEqual(0, code);
        Assert.Contains("missing.png", e);
        Assert.Single(e.Trim().Split('\n'));
        (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "x", "--init-image", P("init.png"), "--strength", "1.5", "--steps", "4", "--out", P("s.png"), "--no-prompt-cache");
        Assert.NotEqual(0, code);
        Assert.Contains("--strength", e);
        Assert.Single(e.Trim().Split('\n'));
    }
}
