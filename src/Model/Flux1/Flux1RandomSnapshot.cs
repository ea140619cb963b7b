using PureFlux.Model.Clip;
using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Model.T5;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Flux1;

/// <summary>Sizes of a random FLUX.1 snapshot; the vocabularies are always the real ones (49408 CLIP, 32128 T5) so the built-in tokenizers fit.</summary>
public sealed record Flux1Preset(string Name, Flux1Kind Kind, int Heads, int HeadDim, int Layers, int SingleLayers, int[] AxesDims,
    int ClipHidden, int ClipLayers, int ClipHeads, int T5Model, int T5Kv, int T5Heads, int T5Ff, int T5Layers, int[] VaeChannels, int VaeGroups, int Shards)
{
    public const int ClipVocab = 49408, T5Vocab = 32128;

    /// <summary>FLUX.1 [dev] at its true shapes (11.9 B transformer parameters, CLIP-L, T5-XXL).</summary>
    public static readonly Flux1Preset Dev = new("flux1-dev", Flux1Kind.Dev, 24, 128, 19, 38, [16, 56, 56], 768, 12, 12, 4096, 64, 64, 10240, 24, [128, 256, 512, 512], 32, 3);
    public static readonly Flux1Preset Schnell = Dev with { Name = "flux1-schnell", Kind = Flux1Kind.Schnell };
    public static readonly Flux1Preset Kontext = Dev with { Name = "flux1-kontext", Kind = Flux1Kind.Kontext };
    /// <summary>Toy sizes (mostly the embedding tables), for quick CLI runs and tests.</summary>
    public static readonly Flux1Preset TinyDev = new("flux1-tiny", Flux1Kind.Dev, 2, 32, 1, 2, [4, 14, 14], 32, 2, 2, 32, 8, 4, 64, 2, [8, 16, 32, 32], 4, 1);
    public static readonly Flux1Preset TinySchnell = TinyDev with { Name = "flux1-tiny-schnell", Kind = Flux1Kind.Schnell };
    public static readonly Flux1Preset TinyKontext = TinyDev with { Name = "flux1-tiny-kontext", Kind = Flux1Kind.Kontext };

    public static IReadOnlyList<Flux1Preset> All => [Dev, Schnell, Kontext, TinyDev, TinySchnell, TinyKontext];
    public static Flux1Preset? Find(string name) => All.FirstOrDefault(p => p.Name == name);
}

/// <summary>
/// Writes a FLUX.1 snapshot in the real Hugging Face layout with seeded random BF16 weights (uniform, variance 1/fan_in;
/// norms 1, biases 0), for benchmarks at true shapes without the download. The tensor list is what the family's own
/// constructors ask for (recorded over placeholders), so it cannot drift from the loader. Written beside the target and
/// renamed into place. No tokenizer folders: the built-in CLIP-L and T5-XXL tokenizers are the real repos' files.
/// </summary>
public static class Flux1RandomSnapshot
{
    public static void Write(string dir, Flux1Preset p, ulong seed, Action<string>? log = null)
    {
        string full = Path.GetFullPath(dir);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any()) throw new IOException($"{dir}: directory exists and is not empty");
        if (File.Exists(full) || new FileInfo(full).LinkTarget is not null) throw new IOException($"{dir}: exists and is not a directory; expected an absent or empty directory");
        string tmp = TempFileRegistry.UniqueSibling(full);
        using var reg = TempFileRegistry.Default.Register(tmp, directory: true);
        try
        {
            WriteInto(tmp, p, seed, log);
            TempFileRegistry.Default.ThrowIfClosing(tmp);
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(tmp, full);
        }
        finally { TempFileRegistry.TryDelete(tmp); }
    }

    private static void WriteInto(string dir, Flux1Preset p, ulong seed, Action<string>? log)
    {
        foreach (var sub in new[] { "transformer", "text_encoder", "text_encoder_2", "vae", "scheduler" })
            Directory.CreateDirectory(Path.Combine(dir, sub));
        bool schnell = p.Kind == Flux1Kind.Schnell;
        RandomSnapshot.WriteJson(Path.Combine(dir, "model_index.json"), new Dictionary<string, object?>
        {
            ["_class_name"] = p.Kind == Flux1Kind.Kontext ? Flux1Snapshot.KontextPipelineClass : Flux1Snapshot.PipelineClass, ["_diffusers_version"] = "0.40.0.dev0",
            ["feature_extractor"] = new object?[] { null, null }, ["image_encoder"] = new object?[] { null, null },
            ["scheduler"] = new[] { "diffusers", "FlowMatchEulerDiscreteScheduler" }, ["text_encoder"] = new[] { "transformers", "CLIPTextModel" },
            ["text_encoder_2"] = new[] { "transformers", "T5EncoderModel" }, ["tokenizer"] = new[] { "transformers", "CLIPTokenizer" },
            ["tokenizer_2"] = new[] { "transformers", "T5TokenizerFast" }, ["transformer"] = new[] { "diffusers", "FluxTransformer2DModel" },
            ["vae"] = new[] { "diffusers", "AutoencoderKL" },
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "scheduler", "scheduler_config.json"), new Dictionary<string, object>
        {
            ["_class_name"] = "FlowMatchEulerDiscreteScheduler", ["base_image_seq_len"] = 256, ["base_shift"] = 0.5, ["max_image_seq_len"] = 4096,
            ["max_shift"] = 1.15, ["num_train_timesteps"] = 1000, ["shift"] = schnell ? 1.0 : 3.0, ["use_dynamic_shifting"] = !schnell,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "transformer", "config.json"), new Dictionary<string, object?>
        {
            ["_class_name"] = "FluxTransformer2DModel", ["attention_head_dim"] = p.HeadDim, ["axes_dims_rope"] = p.AxesDims, ["guidance_embeds"] = !schnell,
            ["in_channels"] = 64, ["joint_attention_dim"] = p.T5Model, ["num_attention_heads"] = p.Heads, ["num_layers"] = p.Layers,
            ["num_single_layers"] = p.SingleLayers, ["out_channels"] = null, ["patch_size"] = 1, ["pooled_projection_dim"] = p.ClipHidden,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "text_encoder", "config.json"), new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "CLIPTextModel" }, ["model_type"] = "clip_text_model", ["bos_token_id"] = 0, ["eos_token_id"] = 2, ["pad_token_id"] = 1,
            ["hidden_act"] = "quick_gelu", ["hidden_size"] = p.ClipHidden, ["intermediate_size"] = 4 * p.ClipHidden, ["layer_norm_eps"] = 1e-5,
            ["max_position_embeddings"] = 77, ["num_attention_heads"] = p.ClipHeads, ["num_hidden_layers"] = p.ClipLayers, ["projection_dim"] = p.ClipHidden,
            ["torch_dtype"] = "bfloat16", ["vocab_size"] = Flux1Preset.ClipVocab,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "text_encoder_2", "config.json"), new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "T5EncoderModel" }, ["model_type"] = "t5", ["d_ff"] = p.T5Ff, ["d_kv"] = p.T5Kv, ["d_model"] = p.T5Model,
            ["dense_act_fn"] = "gelu_new", ["feed_forward_proj"] = "gated-gelu", ["is_gated_act"] = true, ["layer_norm_epsilon"] = 1e-6,
            ["num_heads"] = p.T5Heads, ["num_layers"] = p.T5Layers, ["relative_attention_max_distance"] = 128, ["relative_attention_num_buckets"] = 32,
            ["torch_dtype"] = "bfloat16", ["vocab_size"] = Flux1Preset.T5Vocab,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "vae", "config.json"), new Dictionary<string, object?>
        {
            ["_class_name"] = "AutoencoderKL", ["act_fn"] = "silu", ["block_out_channels"] = p.VaeChannels, ["force_upcast"] = true, ["in_channels"] = 3,
            ["latent_channels"] = 16, ["latents_mean"] = null, ["latents_std"] = null, ["layers_per_block"] = 2, ["mid_block_add_attention"] = true,
            ["norm_num_groups"] = p.VaeGroups, ["out_channels"] = 3, ["sample_size"] = 1024, ["scaling_factor"] = 0.3611, ["shift_factor"] = 0.1159,
            ["down_block_types"] = Enumerable.Repeat("DownEncoderBlock2D", p.VaeChannels.Length).ToArray(),
            ["up_block_types"] = Enumerable.Repeat("UpDecoderBlock2D", p.VaeChannels.Length).ToArray(),
            ["use_post_quant_conv"] = false, ["use_quant_conv"] = false,
        });

        using var cpu = new CpuDevice(1);
        var transformer = RandomSnapshot.RecordTensors(load => new Flux1Transformer(Flux1TransformerConfig.Load(Path.Combine(dir, "transformer", "config.json")), load), cpu);
        var clip = RandomSnapshot.RecordTensors(load => new ClipTextEncoder(ClipTextConfig.Load(Path.Combine(dir, "text_encoder", "config.json")), load), cpu);
        var t5 = RandomSnapshot.RecordTensors(load => new T5Encoder(T5Config.Load(Path.Combine(dir, "text_encoder_2", "config.json")), load), cpu);
        var vae = RandomSnapshot.RecordTensors(load => new AutoencoderKL(VaeConfig.Load(Path.Combine(dir, "vae", "config.json")), load, withEncoder: true), cpu);

        log?.Invoke("writing transformer (BF16)...");
        var t = RandomSnapshot.FillRandom(new RandomSnapshot.TensorList(seed), transformer);
        if (p.Shards > 1) t.WriteSharded(Path.Combine(dir, "transformer"), "diffusion_pytorch_model", p.Shards);
        else t.WriteSingle(Path.Combine(dir, "transformer", "diffusion_pytorch_model.safetensors"));
        log?.Invoke("writing text_encoder (CLIP, BF16)...");
        RandomSnapshot.FillRandom(new RandomSnapshot.TensorList(seed + 1), clip).WriteSingle(Path.Combine(dir, "text_encoder", "model.safetensors"));
        log?.Invoke("writing text_encoder_2 (T5, BF16)...");
        var e = RandomSnapshot.FillRandom(new RandomSnapshot.TensorList(seed + 2), t5);
        if (p.Shards > 1) e.WriteSharded(Path.Combine(dir, "text_encoder_2"), "model", 2);
        else e.WriteSingle(Path.Combine(dir, "text_encoder_2", "model.safetensors"));
        log?.Invoke("writing vae...");
        RandomSnapshot.FillRandom(new RandomSnapshot.TensorList(seed + 3), vae).WriteSingle(Path.Combine(dir, "vae", "diffusion_pytorch_model.safetensors"));
    }
}
