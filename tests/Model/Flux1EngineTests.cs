using PureFlux.Model.Engine;
using PureFlux.Model.Flux1;
using PureFlux.Model.Image;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// FLUX.1 through the engine with the real tokenizers (random tiny snapshots from <see cref="Flux1RandomSnapshot"/>, real
/// vocabularies): dev / schnell / Kontext / img2img run, the guidance conventions (embedded guidance vs. true CFG), the
/// img2img start-step rule, and one-line snapshot errors. The numerics are pinned by <see cref="Flux1GoldenTests"/>.
/// </summary>
public class Flux1EngineTests
{
    private static readonly Lazy<(string Dev, string Schnell, string Kontext)> Snapshots = new(() =>
    {
        string root = Path.Combine(Path.GetTempPath(), $"pureflux-flux1-{Environment.ProcessId}");
        string Make(Flux1Preset p)
        {
            string d = Path.Combine(root, p.Name);
            if (!Directory.Exists(d)) Flux1RandomSnapshot.Write(d, p, 7);
            return d;
        }
        return (Make(Flux1Preset.TinyDev), Make(Flux1Preset.TinySchnell), Make(Flux1Preset.TinyKontext));
    });

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

    [Theory]
    [InlineData(4, 0.6, 1)]
    [InlineData(5, 0.6, 2)]  // 5·0.6 = 3.0 exactly in float64
    [InlineData(4, 0.1, 3)]
    [InlineData(28, 1.0, 0)]
    [InlineData(3, 0.7, 0)]  // int(3 − 2.1) = int(0.9) = 0
    public void Img2img_start_step_is_diffusers_get_timesteps(int steps, double strength, int start) =>
        Assert.Equal(start, ImageToImage.StartStep(steps, strength));

    /// <summary>Any strength above 0 runs at least one step (int(N − ε) = N − 1); 0 and values above 1 are refused.</summary>
    [Theory]
    [InlineData(0.0)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void Img2img_strength_outside_0_1_is_refused(double strength)
    {
        Assert.Equal(3, ImageToImage.StartStep(4, 0.01));
        var e = Assert.Throws<ArgumentException>(() => ImageToImage.StartStep(4, strength));
        Assert.Contains("expected a value in (0, 1]", e.Message);
        var job = new GenerationJob { Prompts = ["x"], InitImage = Gradient(32, 32), Strength = strength };
        Assert.StartsWith("--strength", Assert.Throws<ArgumentException>(job.Validate).Message);
    }

    [Fact]
    public void Snapshots_are_detected_as_flux1_with_their_kinds()
    {
        var (dev, schnell, kontext) = Snapshots.Value;
        Assert.Equal("flux1", ModelFamilies.Detect(dev).Name);
        using var s = Flux1Snapshot.Open(schnell);
        using var k = Flux1Snapshot.Open(kontext);
        Assert.Equal((Flux1Kind.Schnell, 256, Flux1Kind.Kontext, 512), (s.Kind, s.T5Length, k.Kind, k.T5Length));
    }

    [Fact]
    public void Dev_uses_guidance_as_the_embedded_input_and_true_cfg_only_with_a_negative_prompt()
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshots.Value.Dev, cpu);
        Assert.Equal((28, true, 3.5f), (model.Defaults.Steps, model.Defaults.TrueCfg, model.Defaults.EmbeddedGuidance!.Value));
        var plain = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 2, Guidance = 2.5f });
        Assert.Equal((2.5f, false, 2, 0), (plain.EmbeddedGuidance!.Value, plain.UsedCfg, plain.ModelCalls, plain.UncondPasses));
        var noNegative = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 2, TrueCfgScale = 4 });
        Assert.False(noNegative.UsedCfg);
        Assert.Contains(noNegative.Warnings, w => w.Contains("--true-cfg 4 has no effect without --negative-prompt"));
        var cfg = GenerationEngine.Run(model, new GenerationJob
        {
            Prompts = ["a red fox"], NegativePrompts = ["blurry"], Width = 32, Height = 32, Steps = 2, TrueCfgScale = 4,
        });
        Assert.Equal((true, 4f, 2, 3.5f), (cfg.UsedCfg, cfg.Guidance, cfg.UncondPasses, cfg.EmbeddedGuidance!.Value));
        Assert.NotEqual(plain.Decoded, cfg.Decoded);
    }

    [Fact]
    public void Schnell_ignores_guidance_with_a_warning_and_runs_4_steps()
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshots.Value.Schnell, cpu);
        var r = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 48, Guidance = 3.5f });
        Assert.Equal((4, (float?)null, 32, 48), (r.Steps, r.EmbeddedGuidance, r.Width, r.Height));
        Assert.Contains(r.Warnings, w => w.Contains("no guidance embedding (FLUX.1 schnell)"));
    }

    [Fact]
    public void A_batch_equals_single_runs_with_seed_plus_b()
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshots.Value.Schnell, cpu);
        var both = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], ImagesPerPrompt = 2, Width = 32, Height = 32, Steps = 2, Seed = 5 });
        var second = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 2, Seed = 6 });
        int per = 3 * 32 * 32;
        var b1 = both.Decoded.AsSpan(per, per).ToArray();
        Assert.True(Compare.RelMaxError(second.Decoded, b1) < 1e-5, "image 1 of the batch differs from a single run with seed + 1");
    }

    [Fact]
    public void Img2img_runs_the_tail_of_the_schedule_from_the_init_image()
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshots.Value.Dev, cpu);
        int calls = 0;
        var r = GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], InitImage = Gradient(50, 40), Strength = 0.6, Steps = 4 },
            new GenerationHooks { OnStep = _ => calls++ });
        Assert.Equal((3, 48, 32), (calls, r.Width, r.Height)); // t_start 1 of 4; size: the image's, floored to 16
    }

    [Fact]
    public void Kontext_refits_the_output_and_appends_the_reference()
    {
        using var cpu = new CpuDevice();
        using var snapshot = Flux1Snapshot.Open(Snapshots.Value.Kontext);
        using var model = new Flux1Model(snapshot, cpu) { KontextMaxArea = 64 * 64, KontextAutoResize = false };
        var r = GenerationEngine.Run(model, new GenerationJob { Prompts = ["make it red"], ReferenceImages = [Gradient(72, 40)], Width = 96, Height = 80, Steps = 2 });
        Assert.Equal((64, 48), (r.Width, r.Height));
        Assert.Equal((1168, 880), Flux1Model.KontextOutputSize(1024, 768, 1024 * 1024));
        Assert.Equal((1328, 800), Flux1Model.KontextReferenceSize(1000, 600, autoResize: true));
        using var dev = ModelFamilies.Open(Snapshots.Value.Dev, cpu);
        var e = Assert.Throws<NotSupportedException>(() => GenerationEngine.Run(dev, new GenerationJob { Prompts = ["x"], ReferenceImages = [Gradient(64, 64)], Steps = 1 }));
        Assert.Contains("FluxPipeline takes no reference images", e.Message);
    }

    [Fact]
    public void Max_area_and_keep_ref_size_reach_Kontext_through_the_options_and_other_families_refuse_them()
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshots.Value.Kontext, cpu, new ModelOptions { MaxArea = 64 * 64, ReferenceAutoResize = false });
        var kontext = Assert.IsType<Flux1Model>(model);
        Assert.Equal((64L * 64, false), (kontext.KontextMaxArea, kontext.KontextAutoResize));
        var r = GenerationEngine.Run(model, new GenerationJob { Prompts = ["make it red"], ReferenceImages = [Gradient(72, 40)], Width = 96, Height = 80, Steps = 1 });
        Assert.Equal((64, 48), (r.Width, r.Height));
        using (var defaults = ModelFamilies.Open(Snapshots.Value.Kontext, cpu))
            Assert.Equal((1024L * 1024, true), (((Flux1Model)defaults).KontextMaxArea, ((Flux1Model)defaults).KontextAutoResize));

        var tooSmall = Assert.Throws<ArgumentException>(() => ModelFamilies.Open(Snapshots.Value.Kontext, cpu, new ModelOptions { MaxArea = 10 }));
        Assert.Contains("--max-area 10: expected a pixel count", tooSmall.Message);
        var schnell = Assert.Throws<ArgumentException>(() => ModelFamilies.Open(Snapshots.Value.Schnell, cpu, new ModelOptions { MaxArea = 64 * 64 }));
        Assert.Contains("--max-area applies to FLUX.1 Kontext", schnell.Message);
        var klein = Assert.Throws<ArgumentException>(() => ModelFamilies.Open(TinyBaseSnapshot.Dir, cpu, new ModelOptions { ReferenceAutoResize = false }));
        Assert.Contains("--keep-ref-size applies to FLUX.1 Kontext", klein.Message);
    }

    [Fact]
    public void The_cli_takes_max_area_and_keep_ref_size_for_Kontext_and_refuses_them_elsewhere()
    {
        using var tmp = new ScratchDir();
        var g = Gradient(96, 64); // the CLI takes references of at least 64 px a side
        PngWriter.Save(tmp["ref.png"], g.Rgb, g.Width, g.Height);
        var (code, _, e) = CliRunner.Run("generate", "--model", Snapshots.Value.Kontext, "-p", "make it red", "--ref-image", tmp["ref.png"],
            "-W", "96", "-H", "80", "-s", "1", "--max-area", "4096", "--keep-ref-size", "--no-prompt-cache", "--device", "cpu", "--out", tmp["k.png"]);
        Assert.True(code == 0, e);
        var img = ImageFile.Load(tmp["k.png"]);
        Assert.Equal((64, 48), (img.Width, img.Height));
        var (code2, _, e2) = CliRunner.Run("generate", "-p", "x", "-W", "32", "-H", "32", "-s", "1", "--max-area", "4096", "--no-prompt-cache",
            "--device", "cpu", "--out", tmp["klein.png"]);
        Assert.Equal(2, code2);
        Assert.Contains("--max-area applies to FLUX.1 Kontext", e2);
        Assert.False(File.Exists(tmp["klein.png"]));
    }

    [Fact]
    public void A_guidance_config_that_contradicts_the_weights_is_one_line()
    {
        using var scratch = new ScratchDir(Snapshots.Value.Schnell);
        string cfg = scratch["transformer/config.json"];
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"guidance_embeds\": false", "\"guidance_embeds\": true"));
        var e = Assert.Throws<SnapshotException>(() => Flux1Snapshot.Open(scratch.Dir));
        Assert.Contains("field 'guidance_embeds' is true but transformer/diffusion_pytorch_model.safetensors has no time_text_embed.guidance_embedder.* tensors", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
