using PureFlux.Model.Verification;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// <c>pureflux verify</c> checks a golden set against its manifest.json: a missing file, a missing tensor or case, a
/// shape that differs from the listing and NaN/Inf on either side are failing rows (exit 1) that name what is wrong.
/// </summary>
public sealed class VerifyManifestTests
{
    private static readonly string[] RootFiles =
        ["manifest.json", "scheduler.json", "text_encoder_forward.safetensors", "transformer_forward.safetensors", "vae_forward.safetensors",
         "pipeline_h64_w64.safetensors", "pipeline_h64_w96.safetensors", "ops.safetensors"];

    /// <summary>The public golden set (root files + model/) copied to a scratch directory, less <paramref name="skip"/>.</summary>
    private static ScratchDir CopyRoot(params string[] skip)
    {
        var g = new ScratchDir();
        foreach (var f in RootFiles.Except(skip)) File.Copy(Path.Combine(Golden.Dir, f), g[f]);
        ScratchDir.CopyTree(Path.Combine(Golden.Dir, "model"), g["model"]);
        return g;
    }

    private static IReadOnlyList<VerifyRow> Rows(string dir) => new GoldenVerifier(dir, Backends.Get("cpu")).Run();

    [Fact]
    public void Verify_fails_and_names_a_deleted_golden_file()
    {
        using var g = CopyRoot("transformer_forward.safetensors");
        var (code, o, e) = CliRunner.Run("verify", g.Dir, "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("transformer_forward.safetensors", o);
        Assert.Contains("file missing (listed in manifest.json)", o);
        Assert.Matches(@"\d+ passed, 1 failed", o);
    }

    /// <summary>A reason longer than the table's column (here: a weight file replaced by the text of a symlink, as a copy
    /// that does not keep links leaves it) is printed whole after the table.</summary>
    [Fact]
    public void Verify_prints_why_a_file_was_not_verified_in_full()
    {
        // The FLUX.1 set verifies file by file (a klein set opens its one snapshot up front and stops at such an error).
        using var g = new ScratchDir();
        foreach (var f in new[] { "manifest.json", "scheduler.json" }) File.Copy(Path.Combine(Golden.Dir, "flux1", f), g[f]);
        ScratchDir.CopyTree(Path.Combine(Golden.Dir, "flux1", "model"), g["model"]);
        string clip = g["model/FLUX.1-schnell/text_encoder/model.safetensors"];
        File.Delete(clip);
        // A link flattened into a text file (as the shared copy of this set ships) is followed (FlattenedLinkTests); one
        // whose target is missing is the failure, and its long reason must be printed whole.
        File.WriteAllText(clip, "../../FLUX.1-dev/text_encoder/a-file-that-is-not-there.safetensors");
        var (code, o, _) = CliRunner.Run("verify", g.Dir, "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("scheduler.json: not verified: ", o);
        Assert.Contains("holds only the text '../../FLUX.1-dev/text_encoder/a-file-that-is-not-there.safetensors' (a symbolic link flattened by a copy?)", o);
        Assert.Contains("a-file-that-is-not-there.safetensors does not exist", o);
    }

    [Fact]
    public void A_deleted_tensor_fails_whether_or_not_it_is_compared()
    {
        // pipeline: text_ids is an input never compared; vae: dec.up.1 is compared. Both must fail as missing.
        using var g = CopyRoot("transformer_forward.safetensors", "text_encoder_forward.safetensors", "ops.safetensors", "pipeline_h64_w96.safetensors");
        SnapshotEdit.Rewrite(g["pipeline_h64_w64.safetensors"], t => t.Remove("text_ids"));
        SnapshotEdit.Rewrite(g["vae_forward.safetensors"], t => t.Remove("dec.up.1"));
        var rows = Rows(g.Dir);
        Assert.Contains(rows, r => r.Component == "pipeline_h64_w64.safetensors" && r.Tensor == "text_ids: tensor missing (listed in manifest.json)" && !r.Passed);
        Assert.Contains(rows, r => r.Component == "vae_forward.safetensors" && r.Tensor == "dec.up.1: tensor missing (listed in manifest.json)" && !r.Passed);
        Assert.Contains(rows, r => r.Component == "ops.safetensors" && r.Tensor.Contains("file missing") && !r.Passed);
        Assert.Contains(rows, r => r.Component == "scheduler" && r.Passed); // the intact parts still run
    }

    [Fact]
    public void A_nan_in_the_golden_data_fails()
    {
        using var g = CopyRoot("transformer_forward.safetensors", "text_encoder_forward.safetensors", "ops.safetensors", "pipeline_h64_w96.safetensors", "pipeline_h64_w64.safetensors");
        SnapshotEdit.Poison(g["vae_forward.safetensors"], "dec.mid", float.NaN, index: 3);
        var rows = Rows(g.Dir);
        Assert.Contains(rows, r => r.Component == "vae_forward.safetensors" && r.Tensor == "dec.mid: golden data contains 1 NaN values" && !r.Passed);
        Assert.Contains(rows, r => r.Component == "vae decode" && r.Tensor == "dec.mid (NaN/Inf: 1 in the golden data)" && !r.Passed);
    }

    [Fact]
    public void A_missing_case_or_manifest_fails()
    {
        using var g = CopyRoot("transformer_forward.safetensors", "text_encoder_forward.safetensors", "ops.safetensors", "pipeline_h64_w96.safetensors", "pipeline_h64_w64.safetensors", "vae_forward.safetensors");
        SnapshotEdit.Replace(g["scheduler.json"], "\"num_inference_steps\": 28", "\"num_inference_steps\": 27");
        var rows = Rows(g.Dir);
        Assert.Contains(rows, r => r.Component == "scheduler.json" && r.Tensor == "case '28x1024x1024' missing (listed in manifest.json)" && !r.Passed);
        File.Delete(g["manifest.json"]);
        rows = Rows(g.Dir);
        Assert.Contains(rows, r => r.Component == "manifest.json" && !r.Passed);
    }

    [Fact]
    public void The_sampling_set_fails_on_a_missing_tensor()
    {
        using var g = new ScratchDir();
        Directory.CreateDirectory(g["sampling"]);
        foreach (var f in new[] { "manifest.json", "schedulers.json", "schedulers.safetensors" })
            File.Copy(Path.Combine(Golden.Dir, "sampling", f), g["sampling/" + f]);
        ScratchDir.CopyTree(Path.Combine(Golden.Dir, "model"), g["model"]);
        SnapshotEdit.Rewrite(g["sampling/schedulers.safetensors"], t => t.Remove("euler_klein.n4.sigmas"));
        var rows = Rows(g["sampling"]);
        Assert.Contains(rows, r => r.Component == "schedulers.safetensors" && r.Tensor == "euler_klein.n4.sigmas: tensor missing (listed in manifest.json)" && !r.Passed);
        Assert.Contains(rows, r => r.Component == "cfg_h64_w64.safetensors" && !r.Passed);
    }
}
