using PureFlux.Model.Layers;
using System.Runtime.InteropServices;
using System.Text.Json;
using PureFlux.Model.Text;

namespace PureFlux.Model.Snapshot;

/// <summary>Sizes of a random snapshot: the klein architecture at some scale.</summary>
public sealed record SnapshotPreset(
    string Name, int Heads, int HeadDim, int DoubleLayers, int SingleLayers, int[] AxesDims,
    int TextHidden, int TextIntermediate, int TextLayers, int TextHeads, int TextKvHeads, int TextHeadDim,
    int[] VaeChannels, int VaeGroups, int TextShards)
{
    /// <summary>Qwen3's vocabulary: every preset covers the real tokenizer's ids.</summary>
    public const int Vocab = 151936;

    /// <summary>FLUX.2 [klein] 4B at its true shapes (~8 B parameters, ~16 GB of BF16).</summary>
    public static readonly SnapshotPreset Klein4B = new("klein-4b", 24, 128, 5, 20, [32, 32, 32, 32],
        2560, 9728, 36, 32, 8, 128, [128, 256, 512, 512], 32, 2);

    /// <summary>The built-in model: klein's architecture at toy size (~10 M parameters, mostly the vocabulary).</summary>
    public static readonly SnapshotPreset Tiny = new("tiny", 2, 32, 2, 2, [8, 8, 8, 8],
        64, 192, 4, 4, 2, 32, [8, 16, 32, 32], 4, 1);

    /// <summary>A middle size for benchmarks that should finish in seconds.</summary>
    public static readonly SnapshotPreset Small = new("small", 8, 64, 2, 4, [16, 16, 16, 16],
        256, 768, 8, 8, 4, 64, [32, 64, 128, 128], 8, 1);

    /// <summary>FLUX.2 [klein] base 4B: the same shapes, not guidance-distilled (model_index.json is_distilled: false), so
    /// generation runs real CFG (50 steps, guidance 4 by default).</summary>
    public static readonly SnapshotPreset KleinBase4B = Klein4B with { Name = "klein-base-4b", Distilled = false };

    /// <summary>The tiny architecture as a base (undistilled) model, for CFG tests.</summary>
    public static readonly SnapshotPreset TinyBase = Tiny with { Name = "tiny-base", Distilled = false };

    public static IReadOnlyList<SnapshotPreset> All => [Klein4B, KleinBase4B, Small, Tiny, TinyBase];

    /// <summary>model_index.json's is_distilled: true for klein (no CFG), false for klein base.</summary>
    public bool Distilled { get; init; } = true;

    public static SnapshotPreset Find(string name) =>
        All.FirstOrDefault(p => p.Name == name)
        ?? throw new ArgumentException($"unknown preset '{name}'; expected {string.Join(", ", All.Select(p => p.Name))}");

    public int Dim => Heads * HeadDim;
}

/// <summary>
/// Writes a FLUX.2 [klein] snapshot in the real Hugging Face layout with seeded random BF16 weights and
/// the real Qwen3 tokenizer — for benchmarking at true shapes without the 16 GB download, and as the
/// built-in model. Linear weights are uniform with the variance of 1/fan_in (keeps activations O(1));
/// norm weights are 1, biases 0, latent BN statistics (0, 1). Same preset and seed give the same bytes.
/// Everything is written under a temporary directory that is renamed at the end, so a failed run leaves
/// nothing half-written at <c>dir</c>.
/// </summary>
public static class RandomSnapshot
{
    public static void Write(string dir, SnapshotPreset p, ulong seed, Action<string>? log = null)
    {
        string full = Path.GetFullPath(dir);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new IOException($"{dir}: directory exists and is not empty");
        if (RegularFile.Present(full))
            throw new IOException($"{dir}: exists and is not a directory; expected an absent or empty directory");
        // A unique name per writer (process and thread), registered so that Ctrl-C / SIGTERM remove it too.
        string tmp = TempFileRegistry.UniqueSibling(full);
        using var reg = TempFileRegistry.Default.Register(tmp, directory: true);
        try
        {
            WriteInto(tmp, p, seed, log);
            TempFileRegistry.Default.ThrowIfClosing(tmp);
            try
            {
                if (Directory.Exists(full)) Directory.Delete(full);
                Directory.Move(tmp, full);
            }
            catch (IOException e) when (Directory.Exists(full))
            {
                throw new IOException($"{dir}: another writer created it meanwhile; expected an absent or empty directory ({e.Message})");
            }
        }
        finally
        {
            TempFileRegistry.TryDelete(tmp); // nothing left after a move; the whole tree after a failure
        }
    }

    private static void WriteInto(string dir, SnapshotPreset p, ulong seed, Action<string>? log)
    {
        foreach (var sub in new[] { "transformer", "text_encoder", "vae", "scheduler", "tokenizer" })
            Directory.CreateDirectory(Path.Combine(dir, sub));
        int d = p.Dim, mlp = 3 * d, joint = 3 * p.TextHidden;

        WriteJson(Path.Combine(dir, "model_index.json"), new Dictionary<string, object>
        {
            ["_class_name"] = "Flux2KleinPipeline",
            ["_diffusers_version"] = "0.40.0.dev0",
            ["is_distilled"] = p.Distilled,
            ["scheduler"] = new[] { "diffusers", "FlowMatchEulerDiscreteScheduler" },
            ["text_encoder"] = new[] { "transformers", "Qwen3ForCausalLM" },
            ["tokenizer"] = new[] { "transformers", "Qwen2TokenizerFast" },
            ["transformer"] = new[] { "diffusers", "Flux2Transformer2DModel" },
            ["vae"] = new[] { "diffusers", "AutoencoderKLFlux2" },
        });
        WriteJson(Path.Combine(dir, "scheduler", "scheduler_config.json"), new Dictionary<string, object?>
        {
            ["_class_name"] = "FlowMatchEulerDiscreteScheduler", ["base_image_seq_len"] = 256, ["base_shift"] = 0.5,
            ["invert_sigmas"] = false, ["max_image_seq_len"] = 4096, ["max_shift"] = 1.15, ["num_train_timesteps"] = 1000,
            ["shift"] = 3.0, ["shift_terminal"] = null, ["stochastic_sampling"] = false, ["time_shift_type"] = "exponential",
            ["use_beta_sigmas"] = false, ["use_dynamic_shifting"] = true, ["use_exponential_sigmas"] = false, ["use_karras_sigmas"] = false,
        });
        WriteJson(Path.Combine(dir, "transformer", "config.json"), new Dictionary<string, object?>
        {
            ["_class_name"] = "Flux2Transformer2DModel", ["attention_head_dim"] = p.HeadDim, ["axes_dims_rope"] = p.AxesDims,
            ["eps"] = 1e-6, ["guidance_embeds"] = false, ["in_channels"] = 128, ["joint_attention_dim"] = joint, ["mlp_ratio"] = 3.0,
            ["num_attention_heads"] = p.Heads, ["num_layers"] = p.DoubleLayers, ["num_single_layers"] = p.SingleLayers,
            ["out_channels"] = null, ["patch_size"] = 1, ["rope_theta"] = 2000, ["timestep_guidance_channels"] = 256,
        });
        WriteJson(Path.Combine(dir, "text_encoder", "config.json"), new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "Qwen3ForCausalLM" }, ["attention_bias"] = false, ["head_dim"] = p.TextHeadDim,
            ["hidden_act"] = "silu", ["hidden_size"] = p.TextHidden, ["intermediate_size"] = p.TextIntermediate,
            ["max_position_embeddings"] = 40960, ["model_type"] = "qwen3", ["num_attention_heads"] = p.TextHeads,
            ["num_hidden_layers"] = p.TextLayers, ["num_key_value_heads"] = p.TextKvHeads, ["rms_norm_eps"] = 1e-6,
            ["rope_scaling"] = null, ["rope_theta"] = 1000000.0, ["tie_word_embeddings"] = true, ["torch_dtype"] = "bfloat16",
            ["use_sliding_window"] = false, ["vocab_size"] = SnapshotPreset.Vocab,
        });
        WriteJson(Path.Combine(dir, "vae", "config.json"), new Dictionary<string, object?>
        {
            ["_class_name"] = "AutoencoderKLFlux2", ["act_fn"] = "silu", ["batch_norm_eps"] = 1e-4, ["batch_norm_momentum"] = 0.1,
            ["block_out_channels"] = p.VaeChannels, ["in_channels"] = 3, ["latent_channels"] = 32, ["layers_per_block"] = 2,
            ["mid_block_add_attention"] = true, ["norm_num_groups"] = p.VaeGroups, ["out_channels"] = 3, ["patch_size"] = new[] { 2, 2 },
            ["sample_size"] = 1024, ["use_post_quant_conv"] = true, ["use_quant_conv"] = true,
            ["down_block_types"] = Enumerable.Repeat("DownEncoderBlock2D", p.VaeChannels.Length).ToArray(),
            ["up_block_types"] = Enumerable.Repeat("UpDecoderBlock2D", p.VaeChannels.Length).ToArray(),
        });
        string tokDir = Path.GetDirectoryName(Qwen3Tokenizer.BuiltInPath)!;
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json", "LICENSE" })
            File.Copy(Path.Combine(tokDir, f), Path.Combine(dir, "tokenizer", f));

        log?.Invoke("transformer");
        var t = new TensorList(seed);
        t.Linear("time_guidance_embed.timestep_embedder.linear_1", d, 256);
        t.Linear("time_guidance_embed.timestep_embedder.linear_2", d, d);
        t.Linear("double_stream_modulation_img.linear", 6 * d, d);
        t.Linear("double_stream_modulation_txt.linear", 6 * d, d);
        t.Linear("single_stream_modulation.linear", 3 * d, d);
        t.Linear("x_embedder", d, 128);
        t.Linear("context_embedder", d, joint);
        for (int i = 0; i < p.DoubleLayers; i++)
        {
            string b = $"transformer_blocks.{i}";
            foreach (var n in new[] { "to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out" })
                t.Linear($"{b}.attn.{n}", d, d);
            t.Linear($"{b}.attn.to_out.0", d, d);
            foreach (var n in new[] { "norm_q", "norm_k", "norm_added_q", "norm_added_k" }) t.Ones($"{b}.attn.{n}.weight", p.HeadDim);
            t.Linear($"{b}.ff.linear_in", 2 * mlp, d);
            t.Linear($"{b}.ff.linear_out", d, mlp);
            t.Linear($"{b}.ff_context.linear_in", 2 * mlp, d);
            t.Linear($"{b}.ff_context.linear_out", d, mlp);
        }
        for (int i = 0; i < p.SingleLayers; i++)
        {
            string b = $"single_transformer_blocks.{i}";
            t.Linear($"{b}.attn.to_qkv_mlp_proj", 3 * d + 2 * mlp, d);
            t.Linear($"{b}.attn.to_out", d, d + mlp);
            t.Ones($"{b}.attn.norm_q.weight", p.HeadDim);
            t.Ones($"{b}.attn.norm_k.weight", p.HeadDim);
        }
        t.Linear("norm_out.linear", 2 * d, d);
        t.Linear("proj_out", 128, d);
        t.WriteSingle(Path.Combine(dir, "transformer", ModelSnapshot.TransformerWeights));

        log?.Invoke("text_encoder");
        var q = new TensorList(seed + 1);
        q.Linear("model.embed_tokens", SnapshotPreset.Vocab, p.TextHidden, std: 1.0);
        for (int i = 0; i < p.TextLayers; i++)
        {
            string b = $"model.layers.{i}";
            q.Ones($"{b}.input_layernorm.weight", p.TextHidden);
            q.Ones($"{b}.post_attention_layernorm.weight", p.TextHidden);
            q.Linear($"{b}.self_attn.q_proj", p.TextHeads * p.TextHeadDim, p.TextHidden);
            q.Linear($"{b}.self_attn.k_proj", p.TextKvHeads * p.TextHeadDim, p.TextHidden);
            q.Linear($"{b}.self_attn.v_proj", p.TextKvHeads * p.TextHeadDim, p.TextHidden);
            q.Linear($"{b}.self_attn.o_proj", p.TextHidden, p.TextHeads * p.TextHeadDim);
            q.Ones($"{b}.self_attn.q_norm.weight", p.TextHeadDim);
            q.Ones($"{b}.self_attn.k_norm.weight", p.TextHeadDim);
            q.Linear($"{b}.mlp.gate_proj", p.TextIntermediate, p.TextHidden);
            q.Linear($"{b}.mlp.up_proj", p.TextIntermediate, p.TextHidden);
            q.Linear($"{b}.mlp.down_proj", p.TextHidden, p.TextIntermediate);
        }
        q.Ones("model.norm.weight", p.TextHidden);
        if (p.TextShards > 1) q.WriteSharded(Path.Combine(dir, "text_encoder"), "model", p.TextShards);
        else q.WriteSingle(Path.Combine(dir, "text_encoder", ModelSnapshot.TextEncoderWeights));

        log?.Invoke("vae");
        var v = new TensorList(seed + 2);
        WriteVae(v, p);
        v.WriteSingle(Path.Combine(dir, "vae", ModelSnapshot.VaeWeights));
    }

    private static void WriteVae(TensorList v, SnapshotPreset p)
    {
        var ch = p.VaeChannels;
        int top = ch[^1], lat = 32;
        void Conv(string n, int o, int i, int k) { v.Conv(n + ".weight", o, i, k); v.Zeros(n + ".bias", o); }
        void Norm(string n, int c) { v.Ones(n + ".weight", c); v.Zeros(n + ".bias", c); }
        void Resnet(string n, int i, int o)
        {
            Norm(n + ".norm1", i); Conv(n + ".conv1", o, i, 3); Norm(n + ".norm2", o); Conv(n + ".conv2", o, o, 3);
            if (i != o) Conv(n + ".conv_shortcut", o, i, 1);
        }
        void Attn(string n, int c)
        {
            Norm(n + ".group_norm", c);
            foreach (var l in new[] { "to_q", "to_k", "to_v", "to_out.0" }) { v.Linear($"{n}.{l}", c, c); v.Zeros($"{n}.{l}.bias", c); }
        }
        v.Zeros("bn.running_mean", 4 * lat);
        v.Ones("bn.running_var", 4 * lat);
        v.Scalar64("bn.num_batches_tracked");
        Conv("encoder.conv_in", ch[0], 3, 3);
        int prev = ch[0];
        for (int i = 0; i < ch.Length; i++)
        {
            for (int j = 0; j < 2; j++) Resnet($"encoder.down_blocks.{i}.resnets.{j}", j == 0 ? prev : ch[i], ch[i]);
            if (i < ch.Length - 1) Conv($"encoder.down_blocks.{i}.downsamplers.0.conv", ch[i], ch[i], 3);
            prev = ch[i];
        }
        Resnet("encoder.mid_block.resnets.0", top, top); Attn("encoder.mid_block.attentions.0", top); Resnet("encoder.mid_block.resnets.1", top, top);
        Norm("encoder.conv_norm_out", top); Conv("encoder.conv_out", 2 * lat, top, 3); Conv("quant_conv", 2 * lat, 2 * lat, 1);
        Conv("post_quant_conv", lat, lat, 1);
        Conv("decoder.conv_in", top, lat, 3);
        Resnet("decoder.mid_block.resnets.0", top, top); Attn("decoder.mid_block.attentions.0", top); Resnet("decoder.mid_block.resnets.1", top, top);
        var rev = ch.Reverse().ToArray();
        prev = top;
        for (int i = 0; i < rev.Length; i++)
        {
            for (int j = 0; j < 3; j++) Resnet($"decoder.up_blocks.{i}.resnets.{j}", j == 0 ? prev : rev[i], rev[i]);
            if (i < rev.Length - 1) Conv($"decoder.up_blocks.{i}.upsamplers.0.conv", rev[i], rev[i], 3);
            prev = rev[i];
        }
        Norm("decoder.conv_norm_out", ch[0]); Conv("decoder.conv_out", 3, ch[0], 3);
    }

    /// <summary>
    /// Every tensor a family's constructor asks its loader for, in order (name, shape), recorded over 1-element
    /// placeholders: nothing of full size is allocated.
    /// </summary>
    internal static List<(string Name, int[] Shape)> RecordTensors(Func<WeightLoader, IDisposable> build, CpuDevice cpu)
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

    /// <summary>
    /// Random values for recorded tensors: conv kernels and matrices uniform with variance 1/fan_in, embedding tables
    /// (names ending in "embedding.weight", "embed_tokens.weight", "shared.weight") O(1); biases 0, other vectors 1.
    /// </summary>
    internal static TensorList FillRandom(TensorList list, IEnumerable<(string Name, int[] Shape)> tensors)
    {
        foreach (var (name, shape) in tensors)
        {
            switch (shape.Length)
            {
                case 4: list.Conv(name, shape[0], shape[1], shape[2]); break;
                case 2 when name.EndsWith("embedding.weight", StringComparison.Ordinal) || name.EndsWith("embed_tokens.weight", StringComparison.Ordinal)
                            || name == "shared.weight":
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

    internal static void WriteJson(string path, object value) =>
        File.WriteAllText(path, JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true }) + "\n");

    /// <summary>Tensors to write, each filled from its own seeded stream (so shards and order don't change values).</summary>
    internal sealed class TensorList(ulong seed)
    {
        private readonly List<SafetensorsWriteEntry> _entries = new();

        /// <summary>Storage of matrices and conv kernels: BF16 (default) or F32 (as the real Z-Image transformer ships).</summary>
        public DType Storage { get; init; } = DType.BF16;

        public void Linear(string name, int outF, int inF, double? std = null) =>
            Matrix(name.EndsWith(".weight", StringComparison.Ordinal) ? name : name + ".weight", outF, inF, std);

        /// <summary>A [rows, cols] tensor under exactly <paramref name="n"/>, uniform with std (default 1/√cols).</summary>
        public void Matrix(string n, int outF, int inF, double? std = null)
        {
            // Uniform(-a, a) has variance a²/3: a = √3·std, std = 1/√fan_in.
            float a = (float)(Math.Sqrt(3.0) * (std ?? 1.0 / Math.Sqrt(inF)));
            ulong s = seed ^ Hash(n);
            var storage = Storage;
            _entries.Add(new SafetensorsWriteEntry(n, storage, new Shape(outF, inF), st => WriteUniform(st, (long)outF * inF, a, s, storage)));
        }

        /// <summary>CPU device that quantizes <see cref="QuantizedMatrix"/> entries as they are written (owned by the caller).</summary>
        public Device? Quantizer { get; init; }

        /// <summary>
        /// The matrix <see cref="Matrix"/> would write (same BF16 values), stored as a load-time <c>--quant</c> Linear holds it —
        /// "n" I8 / I4 [outF, inF] and "…weight_scale" F32 — so the file equals <c>pureflux quantize</c> of the BF16 one. Written
        /// one tensor at a time: its BF16 values, then the integers; the scales are kept for the entry that follows.
        /// </summary>
        public void QuantizedMatrix(string n, int outF, int inF, QuantMode mode, double? std = null)
        {
            if (mode == QuantMode.None || !n.EndsWith(".weight", StringComparison.Ordinal)) throw new ArgumentException($"{n}: expected a .weight and int8, int4 or fp8");
            float a = (float)(Math.Sqrt(3.0) * (std ?? 1.0 / Math.Sqrt(inF)));
            ulong s = seed ^ Hash(n);
            int group = mode != QuantMode.Int4 ? inF : Layers.Linear.Int4GroupSize(inF);
            var dtype = mode switch { QuantMode.Int8 => DType.I8, QuantMode.Int4 => DType.I4, _ => mode.Fp8()!.Value.DType() };
            var device = Quantizer ?? throw new InvalidOperationException("TensorList.Quantizer is not set");
            byte[]? scales = null;
            _entries.Add(new SafetensorsWriteEntry(n, dtype, new Shape(outF, inF), st =>
            {
                var bf16 = new MemoryStream(checked(outF * inF * 2));
                WriteUniform(bf16, (long)outF * inF, a, s);
                using var w = Tensor.FromSpan<byte>(device, bf16.GetBuffer().AsSpan(0, (int)bf16.Length), new Shape(outF, inF), DType.BF16);
                bf16 = null;
                using var q = mode switch { QuantMode.Int8 => Quantize.Int8(w), QuantMode.Int4 => Quantize.Int4(w, group), _ => Quantize.Fp8(w, mode.Fp8()!.Value) };
                st.Write(q.Data.AsSpan<byte>());
                scales = q.Scales.AsSpan<byte>().ToArray();
            }));
            var scaleShape = mode != QuantMode.Int4 ? new Shape(outF) : new Shape(outF, inF / group);
            _entries.Add(new SafetensorsWriteEntry(n[..^".weight".Length] + Layers.Linear.ScaleSuffix, DType.F32, scaleShape,
                st => { st.Write(scales ?? throw new InvalidOperationException($"{n}: scales written before the weight")); scales = null; }));
        }

        public void Conv(string name, int o, int i, int k)
        {
            float a = (float)(Math.Sqrt(3.0) / Math.Sqrt(i * k * k));
            ulong s = seed ^ Hash(name);
            var storage = Storage;
            _entries.Add(new SafetensorsWriteEntry(name, storage, new Shape(o, i, k, k), st => WriteUniform(st, (long)o * i * k * k, a, s, storage)));
        }

        /// <summary>A kernel of any rank [out, in, ...] (e.g. a 3D convolution's [O, I, kt, kh, kw]), uniform with std 1/√fan_in.</summary>
        public void Kernel(string name, int[] shape)
        {
            long fanIn = shape.Skip(1).Aggregate(1L, (a, b) => a * b), count = shape.Aggregate(1L, (a, b) => a * b);
            float a = (float)(Math.Sqrt(3.0) / Math.Sqrt(fanIn));
            ulong s = seed ^ Hash(name);
            var storage = Storage;
            _entries.Add(new SafetensorsWriteEntry(name, storage, new Shape(shape), st => WriteUniform(st, count, a, s, storage)));
        }

        public void Ones(string name, int n) => Constant(name, n, 1f);

        /// <summary>Ones of any shape (e.g. a channel-first norm's gamma [C, 1, 1, 1]).</summary>
        public void Ones(string name, int[] shape)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            ushort bits = Bf16.FromFloat(1f);
            _entries.Add(new SafetensorsWriteEntry(name, DType.BF16, new Shape(shape), st =>
            {
                var buf = new ushort[n];
                Array.Fill(buf, bits);
                st.Write(MemoryMarshal.AsBytes(buf.AsSpan()));
            }));
        }
        public void Zeros(string name, int n) => Constant(name, n, 0f);

        private void Constant(string name, int n, float value)
        {
            ushort bits = Bf16.FromFloat(value);
            _entries.Add(new SafetensorsWriteEntry(name, DType.BF16, new Shape(n), st =>
            {
                var buf = new ushort[n];
                Array.Fill(buf, bits);
                st.Write(MemoryMarshal.AsBytes(buf.AsSpan()));
            }));
        }

        public void Scalar64(string name) =>
            _entries.Add(new SafetensorsWriteEntry(name, DType.I64, new Shape(), st => st.Write(new byte[8])));

        public void WriteSingle(string path, IReadOnlyDictionary<string, string>? metadata = null) => SafetensorsWriter.Write(path, _entries, metadata);

        /// <summary>Splits tensors into roughly equal shards plus a weight_map index, as transformers saves them.</summary>
        public void WriteSharded(string dir, string baseName, int shards, IReadOnlyDictionary<string, string>? metadata = null)
        {
            long total = _entries.Sum(e => e.DType.ByteCount(e.Shape.Count));
            long per = (total + shards - 1) / shards;
            var groups = new List<List<SafetensorsWriteEntry>> { new() };
            long acc = 0;
            foreach (var e in _entries)
            {
                long b = e.DType.ByteCount(e.Shape.Count);
                if (acc + b > per && groups[^1].Count > 0 && groups.Count < shards) { groups.Add(new()); acc = 0; }
                groups[^1].Add(e);
                acc += b;
            }
            var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < groups.Count; i++)
            {
                string file = $"{baseName}-{i + 1:D5}-of-{groups.Count:D5}.safetensors";
                SafetensorsWriter.Write(Path.Combine(dir, file), groups[i], metadata);
                foreach (var e in groups[i]) map[e.Name] = file;
            }
            WriteJson(Path.Combine(dir, baseName + ".safetensors.index.json"), new Dictionary<string, object>
            {
                ["metadata"] = new Dictionary<string, object> { ["total_size"] = total },
                ["weight_map"] = map,
            });
        }

        private static ulong Hash(string s)
        {
            ulong h = 14695981039346656037UL;
            foreach (char c in s) { h ^= c; h *= 1099511628211UL; }
            return h;
        }

        /// <summary>Streams count BF16 (or F32) values uniform in (-a, a), in 1 Mi-element chunks generated in parallel.
        /// F32 values are the BF16 ones widened, so both storages hold the same model.</summary>
        private static void WriteUniform(Stream st, long count, float a, ulong seed, DType storage = DType.BF16)
        {
            const int Chunk = 1 << 20;
            int chunks = (int)((count + Chunk - 1) / Chunk);
            var bufs = new ushort[Math.Min(chunks, 16)][];
            for (int start = 0; start < chunks; start += bufs.Length)
            {
                int n = Math.Min(bufs.Length, chunks - start);
                Parallel.For(0, n, j =>
                {
                    long first = (long)(start + j) * Chunk;
                    int len = (int)Math.Min(Chunk, count - first);
                    var buf = bufs[j] ??= new ushort[Chunk];
                    ulong x = seed + (ulong)(start + j) * 0x9E3779B97F4A7C15UL + 1;
                    for (int i = 0; i < len; i++)
                    {
                        // xorshift64* → 24 uniform bits → (-a, a)
                        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
                        ulong r = x * 2685821657736338717UL;
                        float u = ((r >> 40) + 0.5f) * (1f / (1 << 24));
                        buf[i] = Bf16.FromFloat((2f * u - 1f) * a);
                    }
                });
                for (int j = 0; j < n; j++)
                {
                    long first = (long)(start + j) * Chunk;
                    int len = (int)Math.Min(Chunk, count - first);
                    if (storage == DType.F32)
                    {
                        var wide = new float[len];
                        for (int i = 0; i < len; i++) wide[i] = Bf16.ToFloat(bufs[j][i]);
                        st.Write(MemoryMarshal.AsBytes(wide.AsSpan()));
                    }
                    else st.Write(MemoryMarshal.AsBytes(bufs[j].AsSpan(0, len)));
                }
            }
        }
    }
}
