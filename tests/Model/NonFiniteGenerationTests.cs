using PureFlux.Model.Engine;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// NaN/Inf never becomes a silent black PNG: the one generation loop checks the latents after every step and the
/// decoded image, and fails with one line naming the stage and step — or, with --allow-nonfinite, warns once and
/// writes the image.
/// </summary>
public sealed class NonFiniteGenerationTests
{
    private static string[] Args(string model, string png, params string[] extra) =>
        ["generate", "--model", model, "--prompt", "a red bicycle", "--width", "64", "--height", "64", "--steps", "3",
         "--device", "cpu", "--no-prompt-cache", "--out", png, .. extra];

    [Fact]
    public void A_nan_transformer_weight_fails_at_the_first_step()
    {
        using var m = new ScratchDir(TinySnapshot.Dir);
        SnapshotEdit.Poison(m["transformer/diffusion_pytorch_model.safetensors"], "proj_out.weight", float.NaN, index: 5);
        var (code, o, e) = CliRunner.Run(Args(m.Dir, m.Out("x.png")));
        Assert.Equal(1, code);
        string error = e.TrimEnd().Split('\n')[^1];
        Assert.StartsWith("error: step 1 of 3 (σ=1): latents contain ", error);
        Assert.Contains(" NaN values (of 2048)", error);
        Assert.Contains("--allow-nonfinite", error);
        Assert.DoesNotContain("Exception", e);
        Assert.False(File.Exists(m.Out("x.png")));
    }

    [Fact]
    public void Allow_nonfinite_warns_once_and_writes_the_image()
    {
        using var m = new ScratchDir(TinySnapshot.Dir);
        SnapshotEdit.Poison(m["transformer/diffusion_pytorch_model.safetensors"], "proj_out.weight", float.PositiveInfinity, index: 7);
        var (code, o, e) = CliRunner.Run(Args(m.Dir, m.Out("x.png"), "--allow-nonfinite"));
        Assert.True(code == 0, o + e);
        Assert.True(File.Exists(m.Out("x.png")));
        var warnings = e.Split('\n').Where(l => l.StartsWith("warning: ", StringComparison.Ordinal) && l.Contains("latents contain")).ToList();
        Assert.Single(warnings);
        Assert.StartsWith("warning: step 1 of 3 (σ=1): latents contain ", warnings[0]);
        Assert.Contains("continuing as --allow-nonfinite asks", warnings[0]);
    }

    [Fact]
    public void A_nan_vae_weight_is_caught_on_the_decoded_image()
    {
        using var m = new ScratchDir(TinySnapshot.Dir);
        SnapshotEdit.Poison(m["vae/diffusion_pytorch_model.safetensors"], "decoder.conv_out.bias", float.NaN, index: 1);
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(m.Dir, cpu);
        var job = new GenerationJob { Prompts = ["a", "b"], Width = 32, Height = 48, Steps = 1 };
        var e = Assert.Throws<NonFiniteException>(() => GenerationEngine.Run(model, job));
        Assert.StartsWith($"vae decode: the decoded images contain {2 * 32 * 48} NaN values (of {2 * 3 * 32 * 48}) in images 1, 2 of 2; ", e.Message);

        var warned = new List<string>();
        var result = GenerationEngine.Run(model, job with { AllowNonFinite = true }, new GenerationHooks { Warning = warned.Add });
        Assert.Single(warned, w => w.StartsWith("vae decode:", StringComparison.Ordinal));
        Assert.Equal(2, result.Batch);
    }
}
