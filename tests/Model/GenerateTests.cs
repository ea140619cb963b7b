using PureFlux.Model.Image;
using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>End-to-end generation on the "tiny" random snapshot (real tokenizer, klein architecture).</summary>
public class GenerateTests
{

    [Fact]
    public void Same_seed_gives_same_bytes_and_another_seed_does_not()
    {
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        var dev = Backends.Get("cpu");
        using var model = new Flux2KleinModel(snapshot, dev);
        RgbImage Make(ulong seed) => GenerationEngine.Run(model, new GenerationJob { Prompts = ["a red fox"], Width = 64, Height = 48, Steps = 2, Seed = seed }).Image(0);
        var a = Make(7);
        var b = Make(7);
        var c = Make(8);
        Assert.Equal(64 * 48 * 3, a.Rgb.Length);
        Assert.Equal(a.Rgb, b.Rgb);
        Assert.NotEqual(a.Rgb, c.Rgb);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Steady_state_denoising_allocates_nothing_after_the_first_step(string backend)
    {
        Backends.Get(backend); // skips when absent
        // A private device: the shared ones serve tests running in parallel, whose rentals would move the counters.
        using var dev = Devices.Open(backend);
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        using var model = new Flux2KleinModel(snapshot, dev);
        var tokens = model.Tokenizer.EncodeForKlein("steady state", 32);
        var embeds = model.EncodePrompt(tokens.Ids, tokens.AttentionMask);
        using var text = new TextConditioning(embeds.Reshape(1, embeds.Shape[0], embeds.Shape[1]));
        var counts = new List<long>();
        GenerationEngine.Run(model, new GenerationJob { PromptEmbeds = text, Width = 64, Height = 64, Steps = 4, Seed = 1 },
            new GenerationHooks { OnStep = _ => counts.Add(dev.Pool.Snapshot().Allocations) });
        Assert.Equal(4, counts.Count);
        Assert.True(counts[1] == counts[0] && counts[3] == counts[0],
            $"pool allocations after each step: {string.Join(", ", counts)} (steps after the first must reuse buffers)");
        Assert.True(dev.Pool.Snapshot().ReuseHits > 0);
    }

    [Fact]
    public void Cli_generate_writes_a_png_with_metadata()
    {
        string png = Path.Combine(Path.GetTempPath(), $"pureflux-gen-{Environment.ProcessId}.png");
        var (code, o, e) = Run("generate", "--model", TinySnapshot.Dir, "--prompt", "a lighthouse", "--width", "48", "--height", "32",
            "--steps", "2", "--seed", "5", "--out", png, "-v");
        Assert.True(code == 0, e);
        Assert.Contains("wrote", o);
        Assert.Contains("step 1", o);
        Assert.Contains("peak RSS", o);
        var bytes = File.ReadAllBytes(png);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, bytes[..4]);
        var text = PngWriter.ReadText(bytes);
        Assert.Equal("a lighthouse", text["prompt"]);
        Assert.Equal("5", text["seed"]);
        Assert.Equal("2", text["steps"]);
        Assert.Equal("48x32", text["size"]);
        File.Delete(png);
    }

    [Theory]
    [InlineData("--width", "100", "multiples of 16")]
    [InlineData("--prompt", "  ", "prompt is empty")]
    [InlineData("--quant", "int3", "expected none, int8, int4, fp8-e4m3, fp8-e5m2")]
    [InlineData("--device", "tpu", "unknown device 'tpu'")]
    public void Cli_generate_rejects_bad_input_with_one_line(string option, string value, string message)
    {
        string png = Path.Combine(Path.GetTempPath(), $"pureflux-bad-{Environment.ProcessId}-{option.Trim('-')}.png");
        var args = new List<string> { "generate", "--model", TinySnapshot.Dir, "--out", png, "--height", "64" };
        if (option != "--prompt") args.AddRange(["--prompt", "x"]);
        if (option != "--width") args.AddRange(["--width", "64"]);
        args.AddRange([option, value]);
        var (code, _, e) = Run(args.ToArray());
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: ", e);
        Assert.Contains(message, e);
        Assert.DoesNotContain("   at ", e);
        Assert.False(File.Exists(png), "no PNG may be written on bad input");
    }

    [Fact]
    public void Cli_generate_fails_before_computing_when_the_output_is_unwritable()
    {
        var (code, _, e) = Run("generate", "--model", TinySnapshot.Dir, "--prompt", "x", "--out", "/nonexistent-dir/x.png");
        Assert.Equal(1, code);
        Assert.Contains("cannot write '/nonexistent-dir/x.png'", e);
        Assert.DoesNotContain("step", e);
    }

    [Fact]
    public void Cli_generate_names_a_missing_snapshot_part()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-broken-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "model_index.json"), "{}");
        // (--out outside the snapshot: a path inside the model directory is refused before the model is read)
        var (code, _, e) = Run("generate", "--model", dir, "--prompt", "x", "--out", dir + "-x.png");
        Assert.NotEqual(0, code);
        Assert.Contains("missing", e);
        Assert.Single(e.TrimEnd().Split('\n'));
    }

    [Fact]
    public void Cli_verify_passes_on_the_public_golden_set()
    {
        var (code, o, e) = Run("verify", Golden.Dir, "--device", "cpu");
        Assert.True(code == 0, o + e);
        Assert.Matches(@"\d+ passed, 0 failed", o);
        Assert.Contains("transformer", o);
        Assert.Contains("pipeline_h64_w96", o);
    }
}
