using PureFlux.Model.Config;
using PureFlux.Model.Layers;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Vae;

namespace PureFlux.Model.ZImage;

/// <summary>Sizes of a random Z-Image snapshot.</summary>
public sealed record ZImagePreset(string Name, int Dim, int Heads, int Layers, int RefinerLayers, int[] AxesDims,
    int TextHidden, int TextIntermediate, int TextLayers, int TextHeads, int TextKvHeads, int TextHeadDim, int[] VaeChannels, int VaeGroups, int Shards)
{
    /// <summary>Z-Image-Turbo at its true shapes (6.2 B transformer parameters, Qwen3-4B encoder).</summary>
    public static readonly ZImagePreset Turbo = new("zimage-turbo", 3840, 30, 30, 2, [32, 48, 48], 2560, 9728, 36, 32, 8, 128, [128, 256, 512, 512], 32, 3);
    /// <summary>A middle size for benchmarks that finish in seconds.</summary>
    public static readonly ZImagePreset Small = new("zimage-small", 256, 4, 4, 1, [16, 24, 24], 256, 768, 8, 8, 4, 64, [32, 64, 128, 128], 8, 1);
    /// <summary>Toy size (mostly the 151936-token vocabulary), for quick runs and tests.</summary>
    public static readonly ZImagePreset Tiny = new("zimage-tiny", 64, 2, 2, 2, [8, 12, 12], 64, 192, 4, 4, 2, 32, [8, 16, 32, 32], 4, 1);

    public static IReadOnlyList<ZImagePreset> All => [Turbo, Small, Tiny];
    public static ZImagePreset? Find(string name) => All.FirstOrDefault(p => p.Name == name);
}

/// <summary>
/// Writes a Z-Image snapshot in the real Hugging Face layout with seeded random weights (uniform, variance 1/fan_in;
/// norms 1, biases 0) and the real Qwen3 tokenizer, for benchmarks at true shapes without the download. The tensor list
/// is what the family's own constructors ask for (recorded over placeholder tensors), so it cannot drift from the loader.
/// The transformer is BF16, or F32 like the released checkpoint with <c>f32Transformer</c>; written beside the target and
/// renamed into place.
/// </summary>
public static class ZImageRandomSnapshot
{
    public static void Write(string dir, ZImagePreset p, ulong seed, bool f32Transformer = false, Action<string>? log = null)
    {
        string full = Path.GetFullPath(dir);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any()) throw new IOException($"{dir}: directory exists and is not empty");
        if (File.Exists(full) || new FileInfo(full).LinkTarget is not null) throw new IOException($"{dir}: exists and is not a directory; expected an absent or empty directory");
        string tmp = TempFileRegistry.UniqueSibling(full);
        using var reg = TempFileRegistry.Default.Register(tmp, directory: true);
        try
        {
            WriteInto(tmp, p, seed, f32Transformer, log);
            TempFileRegistry.Default.ThrowIfClosing(tmp);
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(tmp, full);
        }
        finally { TempFileRegistry.TryDelete(tmp); }
    }

    private static void WriteInto(string dir, ZImagePreset p, ulong seed, bool f32, Action<string>? log)
    {
        foreach (var sub in new[] { "transformer", "text_encoder", "vae", "scheduler", "tokenizer" })
            Directory.CreateDirectory(Path.Combine(dir, sub));
        RandomSnapshot.WriteJson(Path.Combine(dir, "model_index.json"), new Dictionary<string, object>
        {
            ["_class_name"] = ZImageSnapshot.PipelineClass, ["_diffusers_version"] = "0.40.0.dev0",
            ["scheduler"] = new[] { "diffusers", "FlowMatchEulerDiscreteScheduler" }, ["text_encoder"] = new[] { "transformers", "Qwen3Model" },
            ["tokenizer"] = new[] { "transformers", "Qwen2Tokenizer" }, ["transformer"] = new[] { "diffusers", "ZImageTransformer2DModel" },
            ["vae"] = new[] { "diffusers", "AutoencoderKL" },
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "scheduler", "scheduler_config.json"), new Dictionary<string, object>
        {
            ["_class_name"] = "FlowMatchEulerDiscreteScheduler", ["num_train_timesteps"] = 1000, ["shift"] = 3.0, ["use_dynamic_shifting"] = false,
        });
        var tc = new Dictionary<string, object?>
        {
            ["_class_name"] = "ZImageTransformer2DModel", ["all_f_patch_size"] = new[] { 1 }, ["all_patch_size"] = new[] { 2 },
            ["axes_dims"] = p.AxesDims, ["axes_lens"] = new[] { 1536, 512, 512 }, ["cap_feat_dim"] = p.TextHidden, ["dim"] = p.Dim,
            ["in_channels"] = 16, ["n_heads"] = p.Heads, ["n_kv_heads"] = p.Heads, ["n_layers"] = p.Layers, ["n_refiner_layers"] = p.RefinerLayers,
            ["norm_eps"] = 1e-5, ["qk_norm"] = true, ["rope_theta"] = 256.0, ["siglip_feat_dim"] = null, ["t_scale"] = 1000.0,
        };
        RandomSnapshot.WriteJson(Path.Combine(dir, "transformer", "config.json"), tc);
        RandomSnapshot.WriteJson(Path.Combine(dir, "text_encoder", "config.json"), new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "Qwen3ForCausalLM" }, ["attention_bias"] = false, ["head_dim"] = p.TextHeadDim, ["hidden_act"] = "silu",
            ["hidden_size"] = p.TextHidden, ["intermediate_size"] = p.TextIntermediate, ["max_position_embeddings"] = 40960, ["model_type"] = "qwen3",
            ["num_attention_heads"] = p.TextHeads, ["num_hidden_layers"] = p.TextLayers, ["num_key_value_heads"] = p.TextKvHeads, ["rms_norm_eps"] = 1e-6,
            ["rope_scaling"] = null, ["rope_theta"] = 1000000.0, ["tie_word_embeddings"] = true, ["torch_dtype"] = "bfloat16",
            ["use_sliding_window"] = false, ["vocab_size"] = SnapshotPreset.Vocab,
        });
        var vc = new Dictionary<string, object?>
        {
            ["_class_name"] = "AutoencoderKL", ["act_fn"] = "silu", ["block_out_channels"] = p.VaeChannels, ["force_upcast"] = true, ["in_channels"] = 3,
            ["latent_channels"] = 16, ["latents_mean"] = null, ["latents_std"] = null, ["layers_per_block"] = 2, ["mid_block_add_attention"] = true,
            ["norm_num_groups"] = p.VaeGroups, ["out_channels"] = 3, ["sample_size"] = 1024, ["scaling_factor"] = 0.3611, ["shift_factor"] = 0.1159,
            ["down_block_types"] = Enumerable.Repeat("DownEncoderBlock2D", p.VaeChannels.Length).ToArray(),
            ["up_block_types"] = Enumerable.Repeat("UpDecoderBlock2D", p.VaeChannels.Length).ToArray(),
            ["use_post_quant_conv"] = false, ["use_quant_conv"] = false,
        };
        RandomSnapshot.WriteJson(Path.Combine(dir, "vae", "config.json"), vc);
        File.Copy(Text.Qwen3Tokenizer.BuiltInPath, Path.Combine(dir, "tokenizer", "tokenizer.json"));

        // Every tensor the loaders ask for, recorded over placeholders (nothing of full size is allocated).
        using var cpu = new CpuDevice(1);
        var transformer = Record(load => new ZImageTransformer(ZImageTransformerConfig.Load(Path.Combine(dir, "transformer", "config.json")), load, cpu), cpu);
        var te = Qwen3Config.Load(Path.Combine(dir, "text_encoder", "config.json"));
        var text = Record(load => new Qwen3TextEncoder(te, load, [te.NumHiddenLayers]), cpu);
        text.Add(("model.norm.weight", [te.HiddenSize]));
        var vae = Record(load => new AutoencoderKL(VaeConfig.Load(Path.Combine(dir, "vae", "config.json")), load, withEncoder: true), cpu);

        log?.Invoke($"writing transformer ({(f32 ? "F32" : "BF16")})...");
        var t = Fill(new RandomSnapshot.TensorList(seed) { Storage = f32 ? DType.F32 : DType.BF16 }, transformer);
        if (p.Shards > 1) t.WriteSharded(Path.Combine(dir, "transformer"), "diffusion_pytorch_model", p.Shards);
        else t.WriteSingle(Path.Combine(dir, "transformer", "diffusion_pytorch_model.safetensors"));
        log?.Invoke("writing text_encoder (BF16)...");
        var q = Fill(new RandomSnapshot.TensorList(seed + 1), text);
        if (p.Shards > 1) q.WriteSharded(Path.Combine(dir, "text_encoder"), "model", 2);
        else q.WriteSingle(Path.Combine(dir, "text_encoder", "model.safetensors"));
        log?.Invoke("writing vae...");
        Fill(new RandomSnapshot.TensorList(seed + 2), vae).WriteSingle(Path.Combine(dir, "vae", "diffusion_pytorch_model.safetensors"));
    }

    private static List<(string Name, int[] Shape)> Record(Func<WeightLoader, IDisposable> build, CpuDevice cpu)
    {
        var names = new List<(string, int[])>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        WeightLoader load = (name, shape) =>
        {
            if (seen.Add(name)) names.Add((name, shape));
            return Tensor.Empty(cpu, DType.F32, 1);
        };
        build(load).Dispose();
        return names;
    }

    private static RandomSnapshot.TensorList Fill(RandomSnapshot.TensorList list, List<(string Name, int[] Shape)> tensors)
    {
        foreach (var (name, shape) in tensors)
        {
            switch (shape.Length)
            {
                case 4: list.Conv(name, shape[0], shape[1], shape[2]); break;
                // Embedding tables and learned pad tokens are O(1) values; matrices keep activations O(1) (std 1/√fan_in).
                case 2 when name.EndsWith("embed_tokens.weight", StringComparison.Ordinal) || name.EndsWith("pad_token", StringComparison.Ordinal):
                    list.Matrix(name, shape[0], shape[1], std: 1.0); break;
                case 2: list.Matrix(name, shape[0], shape[1]); break;
                default:
                    if (name.EndsWith(".bias", StringComparison.Ordinal)) list.Zeros(name, shape[0]);
                    else list.Ones(name, shape[0]);
                    break;
            }
        }
        return list;
    }
}
