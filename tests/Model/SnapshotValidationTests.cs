using PureFlux.Model.Config;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// A snapshot whose configs contradict its weights, whose components do not belong together, or which lacks a tensor
/// the model loads, is refused when it is opened — before any compute — with one line naming the config file and field
/// (and the weight file / tensor). generate, verify and quantize all open snapshots through ModelSnapshot.Open.
/// </summary>
public sealed class SnapshotValidationTests
{
    private static string GoldenModel => Path.Combine(Golden.Dir, "model");

    private static SnapshotException Refused(ScratchDir m)
    {
        var e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir));
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void The_golden_and_random_snapshots_pass()
    {
        using (ModelSnapshot.Open(GoldenModel)) { }
        using (ModelSnapshot.Open(TinySnapshot.Dir)) { }
        using (ModelSnapshot.Open(TinyBaseSnapshot.Dir)) { }
    }

    [Fact]
    public void Fewer_single_blocks_than_the_weights_hold()
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m["transformer/config.json"], "\"num_single_layers\": 2", "\"num_single_layers\": 0");
        var e = Refused(m);
        Assert.Equal($"{m["transformer/config.json"]}: field 'num_single_layers' is 0 but transformer/diffusion_pytorch_model.safetensors holds 2 " +
            "single-stream blocks ('single_transformer_blocks.0.*' to 'single_transformer_blocks.1.*'): the config contradicts the weights", e.Message);
    }

    [Fact]
    public void More_double_blocks_than_the_weights_hold()
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m["transformer/config.json"], "\"num_layers\": 2", "\"num_layers\": 3");
        var e = Refused(m);
        Assert.StartsWith($"{m["transformer/config.json"]}: field 'num_layers' is 3 but transformer/diffusion_pytorch_model.safetensors has no 'transformer_blocks.2.*' tensors", e.Message);
    }

    // The golden config lists layer_types (one per layer), which the config reader already holds against
    // num_hidden_layers; the random snapshot's config, like many, has none: only the weights can tell.
    [Theory]
    [InlineData(true, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 2", "field 'num_hidden_layers' is 2 but text_encoder/model.safetensors holds 4 decoder layers")]
    [InlineData(true, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 6", "field 'num_hidden_layers' is 6 but text_encoder/model.safetensors has no 'model.layers.4.*' tensors")]
    [InlineData(false, "\"intermediate_size\": 192", "\"intermediate_size\": 96", "field 'intermediate_size' is 96 but model.layers.0.mlp.gate_proj.weight")]
    [InlineData(false, "\"vocab_size\": 1000", "\"vocab_size\": 2000", "field 'vocab_size' is 2000 but model.embed_tokens.weight")]
    public void Text_encoder_config_against_its_weights(bool tiny, string old, string @new, string expected)
    {
        using var m = new ScratchDir(tiny ? TinySnapshot.Dir : GoldenModel);
        SnapshotEdit.Replace(m["text_encoder/config.json"], old, @new);
        var e = Refused(m);
        Assert.StartsWith(m["text_encoder/config.json"] + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("\"latent_channels\": 32", "\"latent_channels\": 16", "fields 'latent_channels' × 'patch_size' are 16 × 2×2 = 64, but bn.running_mean")]
    [InlineData("\"_class_name\": \"AutoencoderKLFlux2\"", "\"_class_name\": \"AutoencoderKL\"", "field '_class_name' is \"AutoencoderKL\"; Flux2KleinPipeline needs AutoencoderKLFlux2")]
    [InlineData("\"layers_per_block\": 2", "\"layers_per_block\": 1", "field 'layers_per_block' is 1 (a decoder up block has layers_per_block + 1 = 2 resnets) but vae/diffusion_pytorch_model.safetensors holds 3 resnets in decoder up block 0")]
    public void Vae_config_against_its_weights(string old, string @new, string expected)
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m["vae/config.json"], old, @new);
        var e = Refused(m);
        Assert.StartsWith(m["vae/config.json"] + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_transformer_that_does_not_match_the_vae_names_both_configs()
    {
        // A self-consistent 64-channel transformer (config and weights agree) under the 128-channel (32 × 2×2) VAE.
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m["transformer/config.json"], "\"in_channels\": 128", "\"in_channels\": 64");
        SnapshotEdit.Rewrite(m["transformer/diffusion_pytorch_model.safetensors"], t =>
        {
            var (dt, _, _) = t["x_embedder.weight"];
            t["x_embedder.weight"] = (dt, new Shape(64, 64), new byte[dt.ByteCount(64 * 64)]);
            t["proj_out.weight"] = (dt, new Shape(64, 64), new byte[dt.ByteCount(64 * 64)]);
        });
        var e = Refused(m);
        Assert.Equal($"{m["transformer/config.json"]}: field 'in_channels' is 64 but {m["vae/config.json"]} gives latent_channels 32 × patch_size 2×2 = 128 " +
            "packed channels: the VAE does not belong to this transformer", e.Message);
    }

    [Fact]
    public void A_text_encoder_that_does_not_match_the_transformer_names_both_configs()
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m["transformer/config.json"], "\"joint_attention_dim\": 192", "\"joint_attention_dim\": 100");
        SnapshotEdit.Rewrite(m["transformer/diffusion_pytorch_model.safetensors"], t =>
        {
            var (dt, _, _) = t["context_embedder.weight"];
            t["context_embedder.weight"] = (dt, new Shape(64, 100), new byte[dt.ByteCount(64 * 100)]);
        });
        var e = Refused(m);
        Assert.Contains($"{m["transformer/config.json"]}: field 'joint_attention_dim' is 100, not a multiple of hidden_size 64 in {m["text_encoder/config.json"]}", e.Message);
    }

    [Theory]
    [InlineData("transformer/config.json", "\"eps\": 1e-06", "\"eps\": 1e999", "eps")]
    [InlineData("text_encoder/config.json", "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e999", "rms_norm_eps")]
    [InlineData("vae/config.json", "\"batch_norm_eps\": 0.0001", "\"batch_norm_eps\": 1e999", "batch_norm_eps")]
    public void An_infinite_eps_names_file_and_field(string file, string old, string @new, string field)
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m[file], old, @new);
        // Either the config reader or the snapshot check refuses it; both name the file and the field.
        var e = Assert.ThrowsAny<Exception>(() => ModelSnapshot.Open(m.Dir));
        Assert.True(e is SnapshotException or ModelConfigException, e.ToString());
        Assert.StartsWith(m[file] + ": field '" + field + "'", e.Message);
    }

    [Theory]
    [InlineData("\"Qwen3ForCausalLM\"", "\"T5EncoderModel\"", "field 'text_encoder' names class T5EncoderModel; expected Qwen3ForCausalLM or Qwen3Model")]
    [InlineData("\"Qwen2TokenizerFast\"", "\"CLIPTokenizer\"", "field 'tokenizer' names class CLIPTokenizer")]
    [InlineData("\"Flux2KleinPipeline\"", "\"FluxPipeline\"", "field '_class_name' is \"FluxPipeline\"")]
    [InlineData("\"is_distilled\": true,", "\"is_distilled\": true, \"safety_checker\": [\"x\", \"SafetyChecker\"],", "field 'safety_checker' is a component Flux2KleinPipeline does not have")]
    public void Unknown_component_classes_are_refused(string old, string @new, string expected)
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Replace(m["model_index.json"], old, @new);
        var e = Refused(m);
        Assert.StartsWith(m["model_index.json"] + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_missing_or_misshapen_tensor_is_found_at_open()
    {
        using var m = new ScratchDir(GoldenModel);
        SnapshotEdit.Rewrite(m["vae/diffusion_pytorch_model.safetensors"], t => t.Remove("decoder.up_blocks.1.resnets.2.conv2.weight"));
        var e = Refused(m);
        Assert.StartsWith("vae/diffusion_pytorch_model.safetensors: no tensor named 'decoder.up_blocks.1.resnets.2.conv2.weight'", e.Message);
        Assert.EndsWith($"(checked against {m["vae/config.json"]})", e.Message);

        using var n = new ScratchDir(GoldenModel);
        SnapshotEdit.Rewrite(n["transformer/diffusion_pytorch_model.safetensors"], t =>
        {
            var (dt, _, _) = t["single_transformer_blocks.1.attn.norm_k.weight"];
            t["single_transformer_blocks.1.attn.norm_k.weight"] = (dt, new Shape(16), new byte[dt.ByteCount(16)]);
        });
        e = Refused(n);
        Assert.Contains("tensor 'single_transformer_blocks.1.attn.norm_k.weight' has shape [16], config implies [32]", e.Message);
    }

    private static readonly string[] TinyGenerate = ["--prompt", "a cat", "--width", "64", "--height", "64", "--steps", "2", "--device", "cpu", "--no-prompt-cache"];

    [Fact]
    public void Generate_fails_on_a_missing_vae_tensor_before_denoising()
    {
        using var m = new ScratchDir(TinySnapshot.Dir);
        SnapshotEdit.Rewrite(m["vae/diffusion_pytorch_model.safetensors"], t => t.Remove("decoder.conv_out.bias"));
        var (code, o, e) = CliRunner.Run(["generate", "--model", m.Dir, .. TinyGenerate, "--out", m.Out("x.png")]);
        Assert.Equal(1, code);
        Assert.Single(e.TrimEnd().Split('\n'));
        Assert.Contains("vae/diffusion_pytorch_model.safetensors: no tensor named 'decoder.conv_out.bias'", e);
        Assert.DoesNotContain("step 1/", e); // refused at load, not after the denoising steps
        Assert.False(File.Exists(m.Out("x.png")));
    }

    [Fact]
    public void Generate_verify_and_quantize_refuse_a_contradicting_config()
    {
        using var m = new ScratchDir(TinySnapshot.Dir);
        SnapshotEdit.Replace(m["transformer/config.json"], "\"num_single_layers\": 2", "\"num_single_layers\": 0");
        const string expected = "field 'num_single_layers' is 0 but transformer/diffusion_pytorch_model.safetensors holds 2 single-stream blocks";
        var (code, _, e) = CliRunner.Run(["generate", "--model", m.Dir, .. TinyGenerate, "--out", m.Out("x.png")]);
        Assert.Equal(1, code);
        Assert.Contains(expected, e);
        Assert.False(File.Exists(m.Out("x.png")));
        (code, _, e) = CliRunner.Run("quantize", "--model", m.Dir, "--quant", "int8", "--out", m.Out("q"));
        Assert.Equal(1, code);
        Assert.Contains(expected, e);
        Assert.False(Directory.Exists(m.Out("q")));

        using var g = new ScratchDir();
        foreach (var f in new[] { "manifest.json", "scheduler.json" }) File.Copy(Path.Combine(Golden.Dir, f), g[f]);
        ScratchDir.CopyTree(GoldenModel, g["model"]);
        SnapshotEdit.Replace(g["model/transformer/config.json"], "\"num_single_layers\": 2", "\"num_single_layers\": 0");
        (code, _, e) = CliRunner.Run("verify", g.Dir, "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains(expected, e);
    }

    [Fact]
    public void Bench_refuses_an_unwritable_json_path_before_any_work()
    {
        if (!Directory.Exists("/proc/self")) Assert.Skip("needs /proc (a directory nobody can create files in)");
        var (code, o, e) = CliRunner.Run("bench", "e2e", "--preset", "tiny", "--size", "32", "--steps", "1", "--warmup", "false",
            "--json", "/proc/pureflux-bench.json");
        Assert.Equal(1, code);
        Assert.Contains("--json /proc/pureflux-bench.json", e);
        Assert.DoesNotContain("writing random", e);
        Assert.Single(e.TrimEnd().Split('\n'));
    }
}
