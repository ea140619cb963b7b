using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.ZImage;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>The Z-Image family from the command line on a random zimage-tiny snapshot (real layout, real Qwen3 tokenizer).</summary>
public sealed class ZImageCliTests : IDisposable
{
    private static readonly Lazy<string> Tiny = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-tests-zimage-tiny-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model_index.json"))) ZImageRandomSnapshot.Write(dir, ZImagePreset.Tiny, 0);
        return dir;
    });

    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"pureflux-zimage-cli-{Environment.ProcessId}-{Guid.NewGuid():N}");
    public ZImageCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    private static void SkipUnderBackendFilter()
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS")))
            Assert.Skip("host-side engine and CLI tests run in the main pass only");
    }

    [Fact]
    public void Generate_writes_a_png_and_repeats_exactly()
    {
        SkipUnderBackendFilter();
        var (code, o, e) = Run("generate", "--model", Tiny.Value, "--prompt", "a red fox", "-W", "64", "-H", "48", "--steps", "3", "--out", P("a.png"), "--no-prompt-cache");
        Assert.True(code == 0, e);
        Assert.Contains("a.png", o);
        (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "a red fox", "-W", "64", "-H", "48", "--steps", "3", "--out", P("b.png"), "--no-prompt-cache");
        Assert.True(code == 0, e);
        var a = ImageFile.Load(P("a.png"));
        Assert.Equal((64, 48), (a.Width, a.Height));
        Assert.Equal(a.Rgb, ImageFile.Load(P("b.png")).Rgb);
    }

    [Fact]
    public void Guidance_above_zero_runs_cfg_with_truncation_in_both_modes_and_they_agree()
    {
        SkipUnderBackendFilter();
        string[] common = ["generate", "--model", Tiny.Value, "--prompt", "a red fox", "--negative-prompt", "blurry", "-g", "2.5",
            "--guidance-truncation", "0.6", "-W", "32", "-H", "32", "--steps", "4", "--no-prompt-cache"];
        var (code, _, e) = Run([.. common, "--out", P("seq.png")]);
        Assert.True(code == 0, e);
        (code, _, e) = Run([.. common, "--cfg-mode", "batched", "--out", P("bat.png")]);
        Assert.True(code == 0, e);
        var s = ImageFile.Load(P("seq.png")).Rgb;
        var b = ImageFile.Load(P("bat.png")).Rgb;
        // The ragged batch computes each item as alone; GEMMs over more rows may round differently by a level at most.
        Assert.True(s.Zip(b).Max(p => Math.Abs(p.First - p.Second)) <= 1);
    }

    [Fact]
    public void Engine_runs_cfg_only_above_zero_and_other_samplers_run()
    {
        SkipUnderBackendFilter();
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Tiny.Value, cpu);
        Assert.IsType<ZImageModel>(model);
        Assert.Equal(8, model.Defaults.Steps);
        var off = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a fox"], Width = 32, Height = 32, Steps = 2 });
        Assert.False(off.UsedCfg);
        var on = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a fox"], Width = 32, Height = 32, Steps = 2, Guidance = 0.5f });
        Assert.True(on.UsedCfg);
        Assert.Equal(2, on.UncondPasses);
        foreach (var sampler in new[] { PureFlux.Model.Scheduler.SamplerKind.DpmPP2M, PureFlux.Model.Scheduler.SamplerKind.UniPC, PureFlux.Model.Scheduler.SamplerKind.Heun })
        {
            var r = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a fox"], Width = 32, Height = 32, Steps = 3, Sampler = sampler });
            Assert.True(r.Decoded.All(float.IsFinite), $"{sampler}");
        }
    }

    [Fact]
    public void Quantize_writes_an_int8_snapshot_that_generates_like_load_time_int8()
    {
        SkipUnderBackendFilter();
        var (code, _, e) = Run("quantize", "--model", Tiny.Value, "--quant", "int8", "--out", P("q8"));
        Assert.True(code == 0, e);
        (code, _, e) = Run("generate", "--model", P("q8"), "--prompt", "a red fox", "-W", "32", "-H", "32", "--steps", "2", "--out", P("q.png"), "--no-prompt-cache");
        Assert.True(code == 0, e);
        (code, _, e) = Run("generate", "--model", Tiny.Value, "--quant", "int8", "--prompt", "a red fox", "-W", "32", "-H", "32", "--steps", "2", "--out", P("l.png"), "--no-prompt-cache");
        Assert.True(code == 0, e);
        Assert.Equal(ImageFile.Load(P("l.png")).Rgb, ImageFile.Load(P("q.png")).Rgb);
    }

    [Fact]
    public void F32_transformer_loads_as_bf16_on_request_and_matches_the_bf16_snapshot()
    {
        // The F32 snapshot holds the BF16 snapshot's values widened: converting back is exact, so the images are equal.
        SkipUnderBackendFilter();
        string f32 = P("f32"), bf16 = P("bf16");
        ZImageRandomSnapshot.Write(f32, ZImagePreset.Tiny, 3, f32Transformer: true);
        ZImageRandomSnapshot.Write(bf16, ZImagePreset.Tiny, 3);
        using var cpu = new CpuDevice();
        var job = new GenerationJob { Prompts = ["a fox"], Width = 32, Height = 32, Steps = 2 };
        using var a = ModelFamilies.Open(f32, cpu, new ModelOptions { WeightsBf16 = true });
        using var b = ModelFamilies.Open(bf16, cpu);
        Assert.True(((ZImageModel)a).TransformerAsBf16);
        Assert.Equal(GenerationEngine.Run(b, job).Decoded, GenerationEngine.Run(a, job).Decoded);
    }

    [Fact]
    public void Bad_requests_fail_in_one_line_before_any_work()
    {
        SkipUnderBackendFilter();
        var (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "x", "--ref-image", "/nonexistent.png", "--out", P("r.png"));
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("   at ", e);
        // A real image is refused before the text encoder runs: no "text encoding" stage, one line.
        string png = P("ref.png");
        PngWriter.Save(png, new byte[32 * 32 * 3], 32, 32);
        using (var cpu = new CpuDevice())
        using (var model = ModelFamilies.Open(Tiny.Value, cpu))
        {
            var timer = new StageTimer(cpu);
            var ex = Assert.Throws<NotSupportedException>(() => GenerationEngine.Run(model,
                new GenerationJob { Prompts = ["x"], Width = 32, Height = 32, ReferenceImages = [ImageFile.Load(png)] }, new GenerationHooks { Timer = timer }));
            Assert.Contains("--ref-image", ex.Message);
            Assert.Empty(timer.Stages);
        }
        (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "x", "--text-layers", "1,2", "--out", P("t.png"));
        Assert.Equal(2, code);
        Assert.Contains("--text-layers", e);
        (code, _, e) = Run("generate", "--model", Tiny.Value, "--prompt", "x", "-g", "2", "--guidance-truncation", "-1", "--out", P("u.png"));
        Assert.Equal(2, code);
        Assert.Contains("--guidance-truncation", e);
        Assert.False(File.Exists(P("r.png")) || File.Exists(P("t.png")) || File.Exists(P("u.png")));
    }
}
