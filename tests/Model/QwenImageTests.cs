using PureFlux.Model.Config;
using PureFlux.Model.Engine;
using PureFlux.Model.QwenImage;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// Qwen-Image beyond the golden files: the engine's true-CFG semantics (guided only with a negative prompt, batched =
/// sequential), a random snapshot written by make-model that opens and generates, and one-line config errors.
/// </summary>
public class QwenImageTests
{
    private static readonly Lazy<string> TinySnapshot = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-qwenimage-tiny-{Environment.ProcessId}");
        if (!Directory.Exists(dir)) QwenImageRandomSnapshot.Write(dir, QwenImagePreset.Tiny, seed: 3);
        return dir;
    });

    private static GenerationResult Run(QwenImageModel model, GenerationJob job, List<string>? warnings = null, List<float[]>? steps = null) =>
        GenerationEngine.Run(model, job, new GenerationHooks { Warning = w => warnings?.Add(w), OnStep = r => steps?.Add(r.Latents.ToFloatArray()) });

    [Fact]
    public void True_cfg_needs_a_negative_prompt_as_in_diffusers()
    {
        using var cpu = new CpuDevice();
        using var model = (QwenImageModel)ModelFamilies.Open(TinySnapshot.Value, cpu);
        Assert.Equal("qwen-image", model.Family.Name);
        Assert.Equal(50, model.Defaults.Steps);
        Assert.Equal(4f, model.Defaults.Guidance);
        var job = new GenerationJob { Prompts = ["a red fox"], Width = 64, Height = 48, Steps = 2, Seed = 1 };
        var warnings = new List<string>();
        var plain = Run(model, job with { Guidance = 4f }, warnings);
        Assert.False(plain.UsedCfg);
        Assert.Contains(warnings, w => w.Contains("--negative-prompt", StringComparison.Ordinal));
        var unguidedDefault = Run(model, job);
        Assert.False(unguidedDefault.UsedCfg);
        Assert.Equal(plain.Decoded, unguidedDefault.Decoded);
        var guided = Run(model, job with { NegativePrompts = [" "] });
        Assert.True(guided.UsedCfg);
        Assert.Equal(2, guided.UncondPasses);
        Assert.NotEqual(plain.Decoded, guided.Decoded);
        // s ≤ 1 with a negative prompt: unguided, as the pipeline's do_true_cfg = s > 1 and a negative prompt.
        Assert.False(Run(model, job with { NegativePrompts = [" "], Guidance = 1f }).UsedCfg);
    }

    [Fact]
    public void Batched_cfg_equals_sequential_with_prompts_of_different_lengths()
    {
        using var cpu = new CpuDevice();
        using var model = (QwenImageModel)ModelFamilies.Open(TinySnapshot.Value, cpu);
        // Two prompts of different token counts and a short negative: padding and masks are exercised on both paths.
        var job = new GenerationJob
        {
            Prompts = ["a red fox", "a watercolor lighthouse at dusk, seen from the sea, soft light"], NegativePrompts = [" "],
            Width = 64, Height = 64, Steps = 2, Seed = 5, Guidance = 3f,
        };
        var seqSteps = new List<float[]>();
        var batSteps = new List<float[]>();
        var seq = Run(model, job, steps: seqSteps);
        var bat = Run(model, job with { CfgMode = CfgMode.Batched }, steps: batSteps);
        Assert.True(seq.UsedCfg && bat.UsedCfg);
        for (int i = 0; i < seqSteps.Count; i++)
            Compare.Close(seqSteps[i], batSteps[i], 1e-4f, 1e-5f, $"latents after step {i} (batched vs sequential)");
        // Each image of a batch equals its own single run (seed + b).
        var single = Run(model, job with { Prompts = [job.Prompts[1]], Seed = 6 }, steps: null);
        var pixels = single.Decoded.Length;
        Compare.Close(single.Decoded, seq.Decoded.AsSpan(pixels, pixels), 1e-4f, 1e-4f, "image 1 of the batch vs a single run with seed + 1");
    }

    [Fact]
    public void Memory_estimate_grows_with_size_and_guidance()
    {
        using var cpu = new CpuDevice();
        using var model = (QwenImageModel)ModelFamilies.Open(TinySnapshot.Value, cpu);
        var small = model.EstimateMemory(new GenerationJob { Prompts = ["x"], Width = 256, Height = 256 }, cfg: false);
        var large = model.EstimateMemory(new GenerationJob { Prompts = ["x"], Width = 1024, Height = 1024 }, cfg: true);
        Assert.Equal(["text encoding", "denoising", "vae decode"], small.Stages.Select(s => s.Name).ToArray());
        Assert.True(large.Peak(false).DeviceBytes > small.Peak(false).DeviceBytes);
        var absurd = model.EstimateMemory(new GenerationJob { Prompts = ["x"], Width = 65536, Height = 65536 }, cfg: true);
        Assert.Throws<ResourceLimitException>(() => absurd.EnsureFits(cpu));
    }

    [Fact]
    public void Config_errors_name_the_file_and_field()
    {
        using var scratch = new ScratchDir(TinySnapshot.Value);
        string t = scratch["transformer/config.json"];
        File.WriteAllText(t, File.ReadAllText(t).Replace("\"axes_dims_rope\": [\n    4,", "\"axes_dims_rope\": [\n    6,"));
        var e = Assert.Throws<ModelConfigException>(() => QwenImageSnapshot.Open(scratch.Dir));
        Assert.Contains("transformer/config.json", e.Message);
        Assert.Contains("axes_dims_rope", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        using var scratch2 = new ScratchDir(TinySnapshot.Value);
        string te = scratch2["text_encoder/config.json"];
        File.WriteAllText(te, File.ReadAllText(te).Replace("\"mrope_section\": [\n      2,", "\"mrope_section\": [\n      5,"));
        var e2 = Assert.Throws<ModelConfigException>(() => QwenImageSnapshot.Open(scratch2.Dir));
        Assert.Contains("text_encoder/config.json", e2.Message);
        Assert.Contains("mrope_section", e2.Message);

        using var scratch3 = new ScratchDir(TinySnapshot.Value);
        string v = scratch3["vae/config.json"];
        File.WriteAllText(v, File.ReadAllText(v).Replace("\"latents_std\"", "\"latents_sd\""));
        var e3 = Assert.Throws<ModelConfigException>(() => QwenImageSnapshot.Open(scratch3.Dir));
        Assert.Contains("vae/config.json", e3.Message);
        Assert.Contains("latents_std", e3.Message);

        using var scratch4 = new ScratchDir(TinySnapshot.Value);
        string tr = scratch4["transformer/config.json"];
        File.WriteAllText(tr, File.ReadAllText(tr).Replace("\"num_layers\": 2", "\"num_layers\": 3"));
        var e4 = Assert.Throws<SnapshotException>(() => QwenImageSnapshot.Open(scratch4.Dir));
        Assert.Contains("num_layers", e4.Message);
    }

    [Fact]
    public void Prompt_template_drops_34_tokens_and_keeps_the_tail()
    {
        var tok = PureFlux.Model.Text.Qwen3Tokenizer.BuiltIn;
        var (ids, kept, warning) = QwenImagePrompt.Tokenize(tok, "");
        Assert.Equal(39, ids.Length); // the empty prompt: 34 + 5 template tail tokens
        Assert.Equal(5, kept);
        Assert.Null(warning);
        var (longIds, longKept, longWarning) = QwenImagePrompt.Tokenize(tok, string.Join(' ', Enumerable.Repeat("fox", 700)));
        Assert.Equal(QwenImagePrompt.MaxSequenceLength, longKept);
        Assert.Equal(QwenImagePrompt.DropTokens + QwenImagePrompt.MaxSequenceLength, longIds.Length);
        Assert.NotNull(longWarning);
    }
}
