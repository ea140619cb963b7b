using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.QwenImage;

/// <summary>Sizes of a random Qwen-Image snapshot.</summary>
public sealed record QwenImagePreset(string Name, int Heads, int HeadDim, int Layers, int[] AxesDims,
    int TextHidden, int TextIntermediate, int TextLayers, int TextHeads, int TextKvHeads, int[] MropeSection, int VaeBase, int Shards)
{
    /// <summary>Qwen-Image's vocabulary (Qwen2.5-VL-7B: 152064 rows, the tokenizer's 151665 ids padded).</summary>
    public const int Vocab = 152064;
    /// <summary>Qwen-Image at its true shapes: 20.4 B transformer parameters (60 blocks, 24 × 128), the 7 B Qwen2.5-VL language model.</summary>
    public static readonly QwenImagePreset Full = new("qwen-image", 24, 128, 60, [16, 56, 56], 3584, 18944, 28, 28, 4, [16, 24, 24], 96, 9);
    /// <summary>A middle size for benchmarks that finish in seconds.</summary>
    public static readonly QwenImagePreset Small = new("qwen-image-small", 4, 64, 4, [8, 28, 28], 256, 768, 4, 8, 2, [4, 6, 6], 16, 1);
    /// <summary>Toy size (mostly the vocabulary), for quick runs and tests.</summary>
    public static readonly QwenImagePreset Tiny = new("qwen-image-tiny", 2, 32, 2, [4, 14, 14], 64, 160, 3, 4, 2, [2, 3, 3], 4, 1);

    public static IReadOnlyList<QwenImagePreset> All => [Full, Small, Tiny];
    public static QwenImagePreset? Find(string name) => All.FirstOrDefault(p => p.Name == name);
}

/// <summary>
/// Writes a Qwen-Image snapshot in the real Hugging Face layout with seeded random BF16 weights (uniform, variance
/// 1/fan_in; norms 1, biases 0), the real scheduler config and VAE latent statistics, and the real Qwen tokenizer. The
/// tensor list is what the family's own constructors ask for (recorded over placeholders), so it cannot drift from the
/// loader; the vision tower is not written (text-to-image never loads it). Written beside the target and renamed into place.
/// </summary>
public static class QwenImageRandomSnapshot
{
    private static readonly double[] LatentsMean = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921];
    private static readonly double[] LatentsStd = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916];

    /// <summary>
    /// Writes the snapshot; with <paramref name="quant"/> int8 / int4 the transformer's and the language model's linears are
    /// stored quantized as <c>pureflux quantize</c> writes them (equal tensors), each generated and quantized one at a time,
    /// so the BF16 model is never held in memory or on disk.
    /// </summary>
    public static void Write(string dir, QwenImagePreset p, ulong seed, Action<string>? log = null, QuantMode quant = QuantMode.None)
    {
        string full = Path.GetFullPath(dir);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any()) throw new IOException($"{dir}: directory exists and is not empty");
        if (File.Exists(full) || new FileInfo(full).LinkTarget is not null) throw new IOException($"{dir}: exists and is not a directory; expected an absent or empty directory");
        string tmp = TempFileRegistry.UniqueSibling(full);
        using var reg = TempFileRegistry.Default.Register(tmp, directory: true);
        try
        {
            WriteInto(tmp, p, seed, log, quant);
            TempFileRegistry.Default.ThrowIfClosing(tmp);
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(tmp, full);
        }
        finally { TempFileRegistry.TryDelete(tmp); }
    }

    private static void WriteInto(string dir, QwenImagePreset p, ulong seed, Action<string>? log, QuantMode quant)
    {
        foreach (var sub in new[] { "transformer", "text_encoder", "vae", "scheduler", "tokenizer" })
            Directory.CreateDirectory(Path.Combine(dir, sub));
        RandomSnapshot.WriteJson(Path.Combine(dir, "model_index.json"), new Dictionary<string, object>
        {
            ["_class_name"] = QwenImageSnapshot.PipelineClass, ["_diffusers_version"] = "0.40.0.dev0",
            ["scheduler"] = new[] { "diffusers", "FlowMatchEulerDiscreteScheduler" }, ["text_encoder"] = new[] { "transformers", "Qwen2_5_VLForConditionalGeneration" },
            ["tokenizer"] = new[] { "transformers", "Qwen2Tokenizer" }, ["transformer"] = new[] { "diffusers", "QwenImageTransformer2DModel" },
            ["vae"] = new[] { "diffusers", "AutoencoderKLQwenImage" },
        });
        // The real Qwen-Image scheduler config.
        RandomSnapshot.WriteJson(Path.Combine(dir, "scheduler", "scheduler_config.json"), new Dictionary<string, object>
        {
            ["_class_name"] = "FlowMatchEulerDiscreteScheduler", ["base_image_seq_len"] = 256, ["base_shift"] = 0.5, ["invert_sigmas"] = false,
            ["max_image_seq_len"] = 8192, ["max_shift"] = 0.9, ["num_train_timesteps"] = 1000, ["shift"] = 1.0, ["shift_terminal"] = 0.02,
            ["stochastic_sampling"] = false, ["time_shift_type"] = "exponential", ["use_beta_sigmas"] = false, ["use_dynamic_shifting"] = true,
            ["use_exponential_sigmas"] = false, ["use_karras_sigmas"] = false,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "transformer", "config.json"), new Dictionary<string, object>
        {
            ["_class_name"] = "QwenImageTransformer2DModel", ["attention_head_dim"] = p.HeadDim, ["axes_dims_rope"] = p.AxesDims, ["guidance_embeds"] = false,
            ["in_channels"] = 64, ["joint_attention_dim"] = p.TextHidden, ["num_attention_heads"] = p.Heads, ["num_layers"] = p.Layers,
            ["out_channels"] = 16, ["patch_size"] = 2,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "text_encoder", "config.json"), new Dictionary<string, object>
        {
            ["architectures"] = new[] { "Qwen2_5_VLForConditionalGeneration" }, ["hidden_act"] = "silu", ["hidden_size"] = p.TextHidden,
            ["intermediate_size"] = p.TextIntermediate, ["max_position_embeddings"] = 128000, ["model_type"] = "qwen2_5_vl",
            ["num_attention_heads"] = p.TextHeads, ["num_hidden_layers"] = p.TextLayers, ["num_key_value_heads"] = p.TextKvHeads, ["rms_norm_eps"] = 1e-6,
            ["rope_scaling"] = new Dictionary<string, object> { ["mrope_section"] = p.MropeSection, ["rope_type"] = "default", ["type"] = "default" },
            ["rope_theta"] = 1000000.0, ["tie_word_embeddings"] = false, ["torch_dtype"] = "bfloat16", ["use_sliding_window"] = false, ["vocab_size"] = QwenImagePreset.Vocab,
        });
        RandomSnapshot.WriteJson(Path.Combine(dir, "vae", "config.json"), new Dictionary<string, object>
        {
            ["_class_name"] = "AutoencoderKLQwenImage", ["attn_scales"] = Array.Empty<double>(), ["base_dim"] = p.VaeBase, ["dim_mult"] = new[] { 1, 2, 4, 4 },
            ["dropout"] = 0.0, ["latents_mean"] = LatentsMean, ["latents_std"] = LatentsStd, ["num_res_blocks"] = 2,
            ["temperal_downsample"] = new[] { false, true, true }, ["z_dim"] = 16,
        });
        File.Copy(Text.Qwen3Tokenizer.BuiltInPath, Path.Combine(dir, "tokenizer", "tokenizer.json"));

        // Every tensor the loaders ask for, recorded over placeholders (nothing of full size is allocated).
        var snapshotConfig = (T: QwenImageTransformerConfig.Load(Path.Combine(dir, "transformer", "config.json")),
            Te: Config.Qwen3Config.LoadQwen25VLText(Path.Combine(dir, "text_encoder", "config.json")),
            V: QwenImageVaeConfig.Load(Path.Combine(dir, "vae", "config.json")));
        using var cpu = new CpuDevice(1);
        var transformer = Record((load, q) => new QwenImageTransformer(snapshotConfig.T, load, q), cpu, quant);
        var text = Record((load, q) => new Qwen3.Qwen3TextEncoder(snapshotConfig.Te, load, [snapshotConfig.Te.NumHiddenLayers], q, finalNorm: true), cpu, quant);
        var vae = Record((load, _) => new QwenImageVae(snapshotConfig.V, load, withEncoder: true), cpu, QuantMode.None);

        // Quantized components carry the metadata pureflux quantize writes (QuantizedSnapshot.StoredMode reads it).
        var meta = quant == QuantMode.None ? null : new Dictionary<string, string> { [QuantizedSnapshot.MetadataKey] = quant.Name() };
        string kind = quant == QuantMode.None ? "BF16" : quant.Name();
        using var quantizer = quant == QuantMode.None ? null : new CpuDevice();
        log?.Invoke($"writing transformer ({kind})...");
        var t = Fill(new RandomSnapshot.TensorList(seed) { Quantizer = quantizer }, transformer, quant);
        if (p.Shards > 1) t.WriteSharded(Path.Combine(dir, "transformer"), "diffusion_pytorch_model", p.Shards, meta);
        else t.WriteSingle(Path.Combine(dir, "transformer", "diffusion_pytorch_model.safetensors"), meta);
        log?.Invoke($"writing text_encoder ({kind})...");
        var q = Fill(new RandomSnapshot.TensorList(seed + 1) { Quantizer = quantizer }, text, quant);
        if (p.Shards > 1) q.WriteSharded(Path.Combine(dir, "text_encoder"), "model", 4, meta);
        else q.WriteSingle(Path.Combine(dir, "text_encoder", "model.safetensors"), meta);
        log?.Invoke("writing vae...");
        Fill(new RandomSnapshot.TensorList(seed + 2) { Storage = DType.F32 }, vae, QuantMode.None).WriteSingle(Path.Combine(dir, "vae", "diffusion_pytorch_model.safetensors"));
    }

    /// <summary>
    /// Names and shapes the constructor loads, and which weights its Linears quantize under <paramref name="quant"/>;
    /// placeholders of full size (zeros) only for what it reads on the host (the VAE's 3D kernels), matrices as one
    /// [1, 128] row that the load-time quantizer accepts for every group size.
    /// </summary>
    private static (List<(string Name, int[] Shape)> Tensors, HashSet<string> Quantized) Record(Func<WeightLoader, QuantMode, IDisposable> build, CpuDevice cpu, QuantMode quant)
    {
        var names = new List<(string, int[])>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var quantized = new HashSet<string>(StringComparer.Ordinal);
        WeightLoader load = (name, shape) =>
        {
            if (seen.Add(name)) names.Add((name, shape));
            return shape.Length == 5 ? Tensor.Zeros(cpu, DType.F32, new Shape(shape)) : shape.Length == 2 ? Tensor.Zeros(cpu, DType.F32, new Shape(1, 128)) : Tensor.Empty(cpu, DType.F32, 1);
        };
        using (Linear.RecordQuantized((prefix, _) => quantized.Add(prefix + ".weight")))
            build(load, quant).Dispose();
        return (names, quantized);
    }

    private static RandomSnapshot.TensorList Fill(RandomSnapshot.TensorList list, (List<(string Name, int[] Shape)> Tensors, HashSet<string> Quantized) recorded, QuantMode quant)
    {
        foreach (var (name, shape) in recorded.Tensors)
        {
            if (recorded.Quantized.Contains(name)) list.QuantizedMatrix(name, shape[0], shape[1], quant);
            else if (name.EndsWith(".gamma", StringComparison.Ordinal)) list.Ones(name, shape);
            else if (shape.Length >= 3) list.Kernel(name, shape);
            else if (shape.Length == 2 && name.EndsWith("embed_tokens.weight", StringComparison.Ordinal)) list.Matrix(name, shape[0], shape[1], std: 1.0);
            else if (shape.Length == 2) list.Matrix(name, shape[0], shape[1]);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) list.Zeros(name, shape[0]);
            else list.Ones(name, shape[0]);
        }
        return list;
    }
}
