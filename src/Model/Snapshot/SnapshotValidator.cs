using System.Globalization;
using PureFlux.Model.Config;
using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Snapshot;

/// <summary>
/// Checks a whole FLUX.2 [klein] snapshot before any compute — <see cref="ModelSnapshot.Open"/> runs it, so
/// <c>generate</c>, <c>verify</c>, <c>quantize</c> and <c>bench</c> all get it:
/// <list type="bullet">
/// <item>model_index.json: the pipeline class and every listed component's class belong to the family;</item>
/// <item>each component's config against its tensors, both ways: block and layer counts (a config with fewer blocks
/// than the weights hold is as wrong as one with more), hidden sizes, channel counts;</item>
/// <item>the components against each other (the VAE's latent channels against the transformer's, the text encoder's
/// hidden size against the transformer's joint_attention_dim) and every floating-point field finite;</item>
/// <item>every tensor the model will load, present with the shape its config implies (the components are built once
/// over zero-copy views of the mapped files, so nothing is read or computed).</item>
/// </list>
/// Errors are one-line <see cref="SnapshotException"/>s naming the config file and field, and the weight file.
/// </summary>
public static class SnapshotValidator
{
    /// <summary>The diffusers pipeline class this snapshot layout runs.</summary>
    public const string PipelineClass = "Flux2KleinPipeline";

    /// <summary>The components of Flux2KleinPipeline and the classes each may name in model_index.json.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> ComponentClasses = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["transformer"] = ["Flux2Transformer2DModel"],
        ["text_encoder"] = ["Qwen3ForCausalLM", "Qwen3Model"],
        ["tokenizer"] = ["Qwen2TokenizerFast", "Qwen2Tokenizer"],
        ["vae"] = ["AutoencoderKLFlux2"],
        ["scheduler"] = ["FlowMatchEulerDiscreteScheduler"],
    };

    /// <summary>model_index.json: the pipeline class and each component's class.</summary>
    public static void ValidateIndex(string indexPath, ModelIndex index)
    {
        if (index.ClassName != PipelineClass)
            throw new SnapshotException($"{indexPath}: field '_class_name' is \"{index.ClassName}\"; this snapshot layout is {PipelineClass}'s");
        foreach (var (name, spec) in index.Components)
        {
            if (!ComponentClasses.TryGetValue(name, out var classes))
                throw new SnapshotException($"{indexPath}: field '{name}' is a component {PipelineClass} does not have; expected only {string.Join(", ", ComponentClasses.Keys)}");
            if (!classes.Contains(spec.ClassName, StringComparer.Ordinal))
                throw new SnapshotException($"{indexPath}: field '{name}' names class {spec.ClassName}; expected {string.Join(" or ", classes)}");
        }
    }

    /// <summary>Every check but the index's (see the class summary).</summary>
    /// <exception cref="SnapshotException">The first contradiction found, naming file and field.</exception>
    public static void Validate(ModelSnapshot s)
    {
        var files = new Files(s.Directory);
        Finite(s, files);
        Transformer(s.TransformerConfig, s.Transformer, files.Transformer);
        TextEncoder(s.TextEncoderConfig, s.TextEncoder, files.TextEncoder);
        Vae(s.VaeConfig, s.Vae, files.Vae);
        Across(s, files);
        BuildDry(s, files);
    }

    private sealed record Files(string Dir)
    {
        public string Transformer => Path.Combine(Dir, "transformer", "config.json");
        public string TextEncoder => Path.Combine(Dir, "text_encoder", "config.json");
        public string Vae => Path.Combine(Dir, "vae", "config.json");
        public string Scheduler => Path.Combine(Dir, "scheduler", "scheduler_config.json");
    }

    private static SnapshotException Error(string file, string message) => new($"{file}: {message}");

    private static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------ floating-point fields

    private static void Finite(ModelSnapshot s, Files files)
    {
        void Positive(string file, string field, double value)
        {
            if (!double.IsFinite(value) || value <= 0) throw Error(file, $"field '{field}' is {F(value)}; expected a finite positive number");
        }
        void FiniteOrNull(string file, string field, double? value)
        {
            if (value is double v && !double.IsFinite(v)) throw Error(file, $"field '{field}' is {F(v)}; expected a finite number");
        }
        var t = s.TransformerConfig;
        Positive(files.Transformer, "eps", t.Eps);
        Positive(files.Transformer, "rope_theta", t.RopeTheta);
        Positive(files.Transformer, "mlp_ratio", t.MlpRatio);
        var q = s.TextEncoderConfig;
        Positive(files.TextEncoder, "rms_norm_eps", q.RmsNormEps);
        Positive(files.TextEncoder, "rope_theta", q.RopeTheta);
        var v = s.VaeConfig;
        Positive(files.Vae, "batch_norm_eps", v.BatchNormEps);
        FiniteOrNull(files.Vae, "batch_norm_momentum", v.BatchNormMomentum);
        var sc = s.SchedulerConfig;
        Positive(files.Scheduler, "shift", sc.Shift);
        FiniteOrNull(files.Scheduler, "base_shift", sc.BaseShift);
        FiniteOrNull(files.Scheduler, "max_shift", sc.MaxShift);
        FiniteOrNull(files.Scheduler, "shift_terminal", sc.ShiftTerminal);
    }

    // ------------------------------------------------------------------ per component, config against tensor names and shapes

    /// <summary>The block indices present under <paramref name="prefix"/> ("transformer_blocks." → {0, 1, ...}).</summary>
    private static SortedSet<int> Indices(WeightSource w, string prefix)
    {
        var set = new SortedSet<int>();
        foreach (var name in w.Names)
        {
            if (!name.StartsWith(prefix, StringComparison.Ordinal)) continue;
            int end = name.IndexOf('.', prefix.Length);
            if (end > prefix.Length && int.TryParse(name.AsSpan(prefix.Length, end - prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int i))
                set.Add(i);
        }
        return set;
    }

    /// <summary>A count in the config against the blocks the weights hold, both ways.</summary>
    internal static void Count(string file, string field, int configured, WeightSource w, string prefix, string what, string? says = null)
    {
        says ??= $"field '{field}' is {configured}";
        var have = Indices(w, prefix);
        if (have.Count > 0 && have.Max >= configured)
            throw Error(file, $"{says} but {w.Name} holds {have.Count} {what} ('{prefix}{have.Min}.*' to '{prefix}{have.Max}.*'): the config contradicts the weights");
        for (int i = 0; i < configured; i++)
            if (!have.Contains(i))
                throw Error(file, $"{says} but {w.Name} has no '{prefix}{i}.*' tensors (it holds {have.Count} {what}): the config contradicts the weights");
    }

    private static int[]? Dims(WeightSource w, string name) => w.Contains(name) ? w.Entry(name).Shape.ToArray() : null;

    private static string Show(int[] dims) => "[" + string.Join(", ", dims) + "]";

    private static void Transformer(Flux2TransformerConfig c, WeightSource w, string file)
    {
        if (c.PatchSize != 1) throw Error(file, $"field 'patch_size' is {c.PatchSize}; FLUX.2 klein uses 1 (no other is supported)");
        if (c.GuidanceEmbeds) throw Error(file, "field 'guidance_embeds' is true (guidance-distilled FLUX.2 dev); klein has no guidance embedder and no other is supported");
        Count(file, "num_layers", c.NumLayers, w, "transformer_blocks.", "double-stream blocks");
        Count(file, "num_single_layers", c.NumSingleLayers, w, "single_transformer_blocks.", "single-stream blocks");
        if (Dims(w, "x_embedder.weight") is { Length: 2 } x)
        {
            if (x[0] != c.InnerDim)
                throw Error(file, $"fields 'num_attention_heads' × 'attention_head_dim' are {c.NumAttentionHeads} × {c.AttentionHeadDim} = {c.InnerDim}, but x_embedder.weight in {w.Name} has shape {Show(x)} (inner dim {x[0]})");
            if (x[1] != c.InChannels)
                throw Error(file, $"field 'in_channels' is {c.InChannels} but x_embedder.weight in {w.Name} has shape {Show(x)} ({x[1]} input channels)");
        }
        if (Dims(w, "context_embedder.weight") is { Length: 2 } ctx && ctx[1] != c.JointAttentionDim)
            throw Error(file, $"field 'joint_attention_dim' is {c.JointAttentionDim} but context_embedder.weight in {w.Name} has shape {Show(ctx)} ({ctx[1]} text channels)");
        if (Dims(w, "proj_out.weight") is { Length: 2 } po && po[0] != c.OutputChannels)
            throw Error(file, $"field 'out_channels' (null: in_channels) gives {c.OutputChannels} but proj_out.weight in {w.Name} has shape {Show(po)} ({po[0]} output channels)");
        if (Dims(w, "time_guidance_embed.timestep_embedder.linear_1.weight") is { Length: 2 } te && te[1] != c.TimestepGuidanceChannels)
            throw Error(file, $"field 'timestep_guidance_channels' is {c.TimestepGuidanceChannels} but time_guidance_embed.timestep_embedder.linear_1.weight in {w.Name} has shape {Show(te)}");
        string? norm = c.NumLayers > 0 ? "transformer_blocks.0.attn.norm_q.weight" : c.NumSingleLayers > 0 ? "single_transformer_blocks.0.attn.norm_q.weight" : null;
        if (norm is not null && Dims(w, norm) is { Length: 1 } nq && nq[0] != c.AttentionHeadDim)
            throw Error(file, $"field 'attention_head_dim' is {c.AttentionHeadDim} but {norm} in {w.Name} has {nq[0]} entries");
        if (c.NumLayers > 0 && Dims(w, "transformer_blocks.0.ff.linear_out.weight") is { Length: 2 } ff && ff[1] != c.MlpHiddenDim)
            throw Error(file, $"field 'mlp_ratio' is {F(c.MlpRatio)} (MLP width {c.MlpHiddenDim}) but transformer_blocks.0.ff.linear_out.weight in {w.Name} has shape {Show(ff)} (width {ff[1]})");
    }

    internal static void TextEncoder(Qwen3Config c, WeightSource w, string file)
    {
        Count(file, "num_hidden_layers", c.NumHiddenLayers, w, "model.layers.", "decoder layers");
        if (Dims(w, "model.embed_tokens.weight") is { Length: 2 } e)
        {
            if (e[1] != c.HiddenSize)
                throw Error(file, $"field 'hidden_size' is {c.HiddenSize} but model.embed_tokens.weight in {w.Name} has shape {Show(e)} (hidden {e[1]})");
            if (e[0] != c.VocabSize)
                throw Error(file, $"field 'vocab_size' is {c.VocabSize} but model.embed_tokens.weight in {w.Name} has shape {Show(e)} ({e[0]} tokens)");
        }
        if (c.NumHiddenLayers == 0) return;
        const string p = "model.layers.0.";
        if (Dims(w, p + "self_attn.q_norm.weight") is { Length: 1 } qn && qn[0] != c.HeadDim)
            throw Error(file, $"field 'head_dim' is {c.HeadDim} but {p}self_attn.q_norm.weight in {w.Name} has {qn[0]} entries");
        if (Dims(w, p + "self_attn.q_proj.weight") is { Length: 2 } q && q[0] != c.QueryWidth)
            throw Error(file, $"fields 'num_attention_heads' × 'head_dim' are {c.NumAttentionHeads} × {c.HeadDim} = {c.QueryWidth}, but {p}self_attn.q_proj.weight in {w.Name} has shape {Show(q)}");
        if (Dims(w, p + "self_attn.k_proj.weight") is { Length: 2 } k && k[0] != c.KeyValueWidth)
            throw Error(file, $"fields 'num_key_value_heads' × 'head_dim' are {c.NumKeyValueHeads} × {c.HeadDim} = {c.KeyValueWidth}, but {p}self_attn.k_proj.weight in {w.Name} has shape {Show(k)}");
        if (Dims(w, p + "mlp.gate_proj.weight") is { Length: 2 } g && g[0] != c.IntermediateSize)
            throw Error(file, $"field 'intermediate_size' is {c.IntermediateSize} but {p}mlp.gate_proj.weight in {w.Name} has shape {Show(g)}");
    }

    internal static void Vae(VaeConfig c, WeightSource w, string file)
    {
        if (c.DecoderBlockOutChannels is { } dec && !dec.SequenceEqual(c.BlockOutChannels))
            throw Error(file, "field 'decoder_block_out_channels' differs from block_out_channels; only the same channels are supported");
        int lat = c.LatentChannels, top = c.BlockOutChannels[^1];
        if (Dims(w, "bn.running_mean") is { Length: 1 } bn && bn[0] != c.PatchedChannels)
            throw Error(file, $"fields 'latent_channels' × 'patch_size' are {lat} × {c.PatchSize[0]}×{c.PatchSize[1]} = {c.PatchedChannels}, but bn.running_mean in {w.Name} has {bn[0]} entries");
        if (Dims(w, "post_quant_conv.weight") is { Length: 4 } pq && (pq[0] != lat || pq[1] != lat))
            throw Error(file, $"field 'latent_channels' is {lat} but post_quant_conv.weight in {w.Name} has shape {Show(pq)}");
        if (Dims(w, "decoder.conv_in.weight") is { Length: 4 } ci)
        {
            if (ci[1] != lat) throw Error(file, $"field 'latent_channels' is {lat} but decoder.conv_in.weight in {w.Name} has shape {Show(ci)} ({ci[1]} input channels)");
            if (ci[0] != top) throw Error(file, $"field 'block_out_channels' ends in {top} but decoder.conv_in.weight in {w.Name} has shape {Show(ci)} ({ci[0]} output channels)");
        }
        if (Dims(w, "decoder.conv_out.weight") is { Length: 4 } co && co[0] != c.OutChannels)
            throw Error(file, $"field 'out_channels' is {c.OutChannels} but decoder.conv_out.weight in {w.Name} has shape {Show(co)}");
        string blocks = $"field 'block_out_channels' has {c.BlockOutChannels.Length} entries";
        Count(file, "block_out_channels", c.BlockOutChannels.Length, w, "decoder.up_blocks.", "decoder up blocks", blocks);
        for (int i = 0; i < c.BlockOutChannels.Length; i++)
            Count(file, "layers_per_block", c.LayersPerBlock + 1, w, $"decoder.up_blocks.{i}.resnets.", $"resnets in decoder up block {i}",
                $"field 'layers_per_block' is {c.LayersPerBlock} (a decoder up block has layers_per_block + 1 = {c.LayersPerBlock + 1} resnets)");
        if (!HasEncoder(w)) return;
        Count(file, "block_out_channels", c.BlockOutChannels.Length, w, "encoder.down_blocks.", "encoder down blocks", blocks);
        for (int i = 0; i < c.BlockOutChannels.Length; i++)
            Count(file, "layers_per_block", c.LayersPerBlock, w, $"encoder.down_blocks.{i}.resnets.", $"resnets in encoder down block {i}");
    }

    /// <summary>A VAE file may ship the decoder alone; the encoder is then needed (and reported) only for reference images.</summary>
    internal static bool HasEncoder(WeightSource w) => w.Names.Any(n => n.StartsWith("encoder.", StringComparison.Ordinal));

    // ------------------------------------------------------------------ components against each other

    private static void Across(ModelSnapshot s, Files files)
    {
        var t = s.TransformerConfig;
        var v = s.VaeConfig;
        var q = s.TextEncoderConfig;
        // model_index.json may say AutoencoderKLFlux2 while vae/config.json describes another class; klein's latents need
        // the FLUX.2 kind (its batch-norm statistics).
        if (v.Kind != VaeKind.AutoencoderKLFlux2)
            throw Error(files.Vae, $"field '_class_name' is \"{v.Kind}\"; {PipelineClass} needs AutoencoderKLFlux2");
        string vae = $"{files.Vae} gives latent_channels {v.LatentChannels} × patch_size {v.PatchSize[0]}×{v.PatchSize[1]} = {v.PatchedChannels} packed channels";
        if (t.InChannels != v.PatchedChannels)
            throw Error(files.Transformer, $"field 'in_channels' is {t.InChannels} but {vae}: the VAE does not belong to this transformer");
        if (t.OutputChannels != v.PatchedChannels)
            throw Error(files.Transformer, $"field 'out_channels' gives {t.OutputChannels} but {vae}: the VAE does not belong to this transformer");
        if (t.JointAttentionDim % q.HiddenSize != 0)
            throw Error(files.Transformer, $"field 'joint_attention_dim' is {t.JointAttentionDim}, not a multiple of hidden_size {q.HiddenSize} in {files.TextEncoder}: the text encoder does not belong to this transformer");
    }

    // ------------------------------------------------------------------ every tensor present with its shape

    /// <summary>
    /// Builds each component over zero-copy views of its mapped files (no quantization, nothing read): every tensor the
    /// model loads is looked up and its shape checked against the config, the way the real load will.
    /// </summary>
    private static void BuildDry(ModelSnapshot s, Files files)
    {
        using var cpu = new CpuDevice(1);
        Dry(s.Transformer, files.Transformer, cpu, load => new Flux2Transformer(s.TransformerConfig, load));
        Dry(s.TextEncoder, files.TextEncoder, cpu, load => new Qwen3TextEncoder(s.TextEncoderConfig, load, [s.TextEncoderConfig.NumHiddenLayers]));
        Dry(s.Vae, files.Vae, cpu, load => new AutoencoderKL(s.VaeConfig, load, withEncoder: HasEncoder(s.Vae)));
    }

    internal static void Dry(WeightSource w, string configFile, CpuDevice cpu, Func<WeightLoader, IDisposable> build)
    {
        var loaded = new List<Tensor>();
        WeightLoader load = (name, shape) =>
        {
            w.Expect(name, shape);
            var t = w.Load(name, cpu);
            loaded.Add(t);
            return t;
        };
        try { build(load).Dispose(); }
        catch (SnapshotException e) { throw new SnapshotException($"{e.Message} (checked against {configFile})"); }
        finally
        {
            foreach (var t in loaded) t.Dispose(); // views of the mapping: releases the file references a failed build left
        }
    }
}
