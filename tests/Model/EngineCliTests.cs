using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// The engine from the command line on the tiny random snapshots: batches and several prompts, klein base CFG in both
/// modes, the guidance interval, samplers, reference images, and bad combinations (one line, nothing written).
/// </summary>
public sealed class EngineCliTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"pureflux-engine-cli-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public EngineCliTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private static int MaxLevelDiff(RgbImage a, RgbImage b)
    {
        Assert.Equal((a.Width, a.Height), (b.Width, b.Height));
        int m = 0;
        for (int i = 0; i < a.Rgb.Length; i++) m = Math.Max(m, Math.Abs(a.Rgb[i] - b.Rgb[i]));
        return m;
    }

    [Fact]
    public void Two_prompts_times_two_images_write_four_pngs_and_image_b_equals_a_single_run_with_seed_plus_b()
    {
        var (code, o, e) = Run("generate", "--model", TinySnapshot.Dir, "--prompt", "a red fox", "--prompt", "a blue boat",
            "--batch-size", "2", "-W", "48", "-H", "32", "--steps", "2", "--seed", "10", "--out", P("batch.png"));
        Assert.True(code == 0, e);
        for (int i = 0; i < 4; i++) Assert.Contains($"batch-{i}.png", o);
        var text = PngWriter.ReadText(File.ReadAllBytes(P("batch-3.png")));
        Assert.Equal("a blue boat", text["prompt"]);
        Assert.Equal("13", text["seed"]);
        Assert.Equal("3 of 4", text["batch-index"]);

        Assert.Equal(0, Run("generate", "--model", TinySnapshot.Dir, "--prompt", "a blue boat", "-W", "48", "-H", "32", "--steps", "2",
            "--seed", "13", "--out", P("single.png")).Code);
        // Batched GEMMs may sum in another order: one 8-bit level at most.
        Assert.True(MaxLevelDiff(ImageFile.Load(P("batch-3.png")), ImageFile.Load(P("single.png"))) <= 1);
        Assert.True(MaxLevelDiff(ImageFile.Load(P("batch-0.png")), ImageFile.Load(P("batch-2.png"))) > 10, "different prompts must give different images");
    }

    [Fact]
    public void Klein_base_runs_cfg_and_batched_equals_sequential()
    {
        string[] common = ["generate", "--model", TinyBaseSnapshot.Dir, "--prompt", "a lighthouse", "-W", "48", "-H", "48", "--steps", "3", "-v"];
        var seq = Run([.. common, "--out", P("seq.png")]);
        Assert.True(seq.Code == 0, seq.Err);
        var bat = Run([.. common, "--cfg-mode", "batched", "--out", P("bat.png")]);
        Assert.True(bat.Code == 0, bat.Err);
        var off = Run([.. common, "--guidance", "1", "--out", P("off.png")]);
        Assert.True(off.Code == 0, off.Err);
        var text = PngWriter.ReadText(File.ReadAllBytes(P("seq.png")));
        Assert.Equal("4", text["guidance"]); // klein base default
        Assert.Equal("sequential", text["cfg-mode"]);
        Assert.Equal("batched", PngWriter.ReadText(File.ReadAllBytes(P("bat.png")))["cfg-mode"]);
        Assert.Equal("off", PngWriter.ReadText(File.ReadAllBytes(P("off.png")))["guidance"]);
        Assert.True(MaxLevelDiff(ImageFile.Load(P("seq.png")), ImageFile.Load(P("bat.png"))) <= 1);
        Assert.True(MaxLevelDiff(ImageFile.Load(P("seq.png")), ImageFile.Load(P("off.png"))) > 3, "CFG must change the image");
        // Two text encodings (prompt and negative prompt) and two passes per step.
        Assert.Equal(2, seq.Out.Split('\n').Count(l => l.TrimStart().StartsWith("text encoding", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_guidance_interval_skips_the_uncond_pass_outside_it()
    {
        using var dev = Devices.Open("cpu");
        using var model = ModelFamilies.Open(TinyBaseSnapshot.Dir, dev);
        var job = new GenerationJob { Prompts = ["x"], Width = 32, Height = 32, Steps = 6 };
        var full = GenerationEngine.Run(model, job);
        var sigmas = new List<float>();
        var part = GenerationEngine.Run(model, job with { GuidanceInterval = (0.9f, 1f) },
            new GenerationHooks { OnStep = r => { if (r.Uncond is not null) sigmas.Add(r.Sigma); } });
        Assert.Equal(6, full.UncondPasses);
        Assert.True(part.UncondPasses is > 0 and < 6, $"{part.UncondPasses} uncond passes");
        Assert.All(sigmas, s => Assert.InRange(s, 0.9f, 1f));
    }

    [Fact]
    public void A_distilled_snapshot_warns_and_ignores_guidance()
    {
        var (code, _, e) = Run("generate", "--model", TinySnapshot.Dir, "--prompt", "x", "-W", "32", "-H", "32", "--steps", "1",
            "--guidance", "4", "--out", P("d.png"));
        Assert.True(code == 0, e);
        Assert.Contains("guidance-distilled", e);
        Assert.Equal("off", PngWriter.ReadText(File.ReadAllBytes(P("d.png")))["guidance"]);
    }

    [Theory]
    [InlineData("dpm++2m")]
    [InlineData("unipc")]
    [InlineData("heun")]
    public void Every_sampler_runs_from_the_cli(string sampler)
    {
        var (code, o, e) = Run("generate", "--model", TinyBaseSnapshot.Dir, "--prompt", "x", "-W", "32", "-H", "32", "--steps", "3",
            "--sampler", sampler, "--cfg-rescale", "0.7", "--out", P("s.png"), "-v");
        Assert.True(code == 0, e);
        Assert.Equal(sampler, PngWriter.ReadText(File.ReadAllBytes(P("s.png")))["sampler"]);
        Assert.Equal("0.7", PngWriter.ReadText(File.ReadAllBytes(P("s.png")))["cfg-rescale"]);
        if (sampler == "heun") Assert.Contains("call 5", o); // 2N − 1 model calls
    }

    [Fact]
    public void A_reference_image_sets_the_output_size_and_changes_the_image()
    {
        // 90x70 → rounded down to 80x64 and centre-cropped, as diffusers does.
        var rgb = new byte[90 * 70 * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7 % 251);
        PngWriter.Save(P("ref.png"), rgb, 90, 70);
        var (code, o, e) = Run("generate", "--model", TinySnapshot.Dir, "--prompt", "edit", "--steps", "2", "--ref-image", P("ref.png"),
            "--out", P("edit.png"));
        Assert.True(code == 0, e);
        Assert.Contains("(80x64)", o);
        Assert.Equal(0, Run("generate", "--model", TinySnapshot.Dir, "--prompt", "edit", "--steps", "2", "-W", "80", "-H", "64", "--out", P("plain.png")).Code);
        Assert.True(MaxLevelDiff(ImageFile.Load(P("edit.png")), ImageFile.Load(P("plain.png"))) > 0, "the reference must condition the image");
        Assert.Contains("ref-images", PngWriter.ReadText(File.ReadAllBytes(P("edit.png"))).Keys);
    }

    [Theory]
    [InlineData("--guidance-interval", "0.2,1.5", "--guidance-interval")]
    [InlineData("--guidance-interval", "0.8,0.2", "--guidance-interval")]
    [InlineData("--guidance-interval", "half", "--guidance-interval")]
    [InlineData("--sampler", "ddim", "unknown sampler")]
    [InlineData("--cfg-mode", "parallel", "--cfg-mode")]
    [InlineData("--cfg-rescale", "2", "--cfg-rescale")]
    [InlineData("--batch-size", "0", "--batch-size")]
    [InlineData("--text-layers", "1,x", "--text-layers")]
    [InlineData("--text-layers", "1,2,99", "--text-layers")]
    [InlineData("--ref-image", "/nonexistent/ref.png", "/nonexistent/ref.png")]
    [InlineData("--ref-image", "SMALL", "64")]
    [InlineData("--ref-image", "TEXT", "TEXT")]
    public void Bad_combinations_get_one_line_and_write_nothing(string option, string value, string message)
    {
        if (value == "SMALL")
        {
            value = P("small.png");
            PngWriter.Save(value, new byte[48 * 80 * 3], 48, 80);
            message = "small.png";
        }
        if (value == "TEXT")
        {
            value = P("text.png");
            File.WriteAllText(value, "not an image");
            message = "text.png";
        }
        string png = P("bad.png");
        var (code, _, e) = Run("generate", "--model", TinyBaseSnapshot.Dir, "--prompt", "x", "-W", "32", "-H", "32", "--steps", "1",
            "--out", png, option, value);
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: ", e);
        Assert.Contains(message, e);
        Assert.Single(e.TrimEnd().Split('\n'));
        Assert.DoesNotContain("   at ", e);
        Assert.False(File.Exists(png), "nothing may be written on bad input");
    }

    [Fact]
    public void An_unknown_pipeline_class_names_the_supported_ones()
    {
        string dir = P("other");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "model_index.json"), """{ "_class_name": "StableDiffusionPipeline" }""");
        var (code, _, e) = Run("generate", "--model", dir, "--prompt", "x", "--out", P("o.png"));
        Assert.NotEqual(0, code);
        Assert.Contains("StableDiffusionPipeline", e);
        Assert.Contains("Flux2KleinPipeline", e);
        Assert.Single(e.TrimEnd().Split('\n'));
    }
}
