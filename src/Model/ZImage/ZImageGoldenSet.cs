using System.Text.Json;
using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.ZImage;

/// <summary>
/// Runs each file of a Z-Image golden set (tests/golden/zimage's layout: model/ + text_encoder_forward,
/// transformer_forward[_batch2], vae_forward, pipeline_*.safetensors, scheduler.json, tokenizer-ids.json) through the
/// family's own code and reports every compared tensor to <c>add(component, tensor, expected, actual, tolerance)</c>.
/// Pipelines run through <see cref="GenerationEngine"/> with the call parameters the manifest records.
/// </summary>
public sealed class ZImageGoldenSet(string goldenDir, Device device, Action<string, string, float[], float[], double> add, string? tokenizerPath = null)
{
    public const double ForwardTolerance = 2e-4, PipelineTolerance = 1e-3;

    /// <summary>The files this runner knows, in the order it runs them.</summary>
    public IEnumerable<string> Files()
    {
        foreach (var f in new[] { "scheduler.json", "tokenizer-ids.json", "text_encoder_forward.safetensors", "transformer_forward.safetensors",
                     "transformer_forward_batch2.safetensors", "vae_forward.safetensors" })
            yield return f;
        foreach (var p in Directory.EnumerateFiles(goldenDir, "pipeline_*.safetensors").Select(Path.GetFileName).Order(StringComparer.Ordinal))
            yield return p!;
    }

    public static bool IsZImageSet(string goldenDir)
    {
        string index = Path.Combine(goldenDir, "model", "model_index.json");
        if (!File.Exists(index)) return false;
        try { return Config.ModelIndex.Load(index).ClassName == ZImageSnapshot.PipelineClass; }
        catch (Exception e) when (e is Config.ModelConfigException or IOException) { return false; }
    }

    public void Verify(string file)
    {
        string path = Path.Combine(goldenDir, file);
        if (file == "scheduler.json") { Scheduler(path); return; }
        if (file == "tokenizer-ids.json") { Tokenizer(path); return; }
        using var snapshot = ZImageSnapshot.Open(Path.Combine(goldenDir, "model"));
        using var g = SafetensorsFile.Open(path);
        switch (file)
        {
            case "text_encoder_forward.safetensors": TextEncoder(snapshot, g); break;
            case "transformer_forward.safetensors": Transformer(snapshot, g); break;
            case "transformer_forward_batch2.safetensors": TransformerBatch(snapshot, g); break;
            case "vae_forward.safetensors": Vae(snapshot, g); break;
            default: Pipeline(snapshot, g, Path.GetFileNameWithoutExtension(file)); break;
        }
    }

    private void Compare(string component, SafetensorsFile g, string name, Tensor actual, double tol) => add(component, name, g.ReadFloats(name), actual.ToFloatArray(), tol);

    // ------------------------------------------------------------------ scheduler and tokenizer

    private void Scheduler(string path)
    {
        using var model = ZImageModelFor();
        using var doc = JsonDocument.Parse(RegularFile.ReadAllBytes(path, 64 << 20, "golden scheduler file", m => new InvalidDataException(m)));
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            int steps = c.GetProperty("num_inference_steps").GetInt32();
            using var s = model.CreateSampler(SamplerKind.Euler, steps, model.Layout(64, 64));
            string key = $"{steps} steps";
            add("scheduler", $"sigmas ({key})", Floats(c, "sigmas"), s.Sigmas, 0);
            add("scheduler", $"timesteps ({key})", Floats(c, "timesteps"), Enumerable.Range(0, s.Calls).Select(s.Timestep).ToArray(), 0);
            add("scheduler", $"transformer_t_input ({key})", Floats(c, "transformer_t_input"), Enumerable.Range(0, s.Calls).Select(i => (1000f - s.Timestep(i)) / 1000f).ToArray(), 0);
        }
    }

    private ZImageModel ZImageModelFor() => new(ZImageSnapshot.Open(Path.Combine(goldenDir, "model")), device, ownsSnapshot: true);

    private static float[] Floats(JsonElement c, string name) => c.GetProperty(name).EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

    private void Tokenizer(string path)
    {
        var tok = tokenizerPath is null ? Qwen3Tokenizer.BuiltIn : Qwen3Tokenizer.FromFile(tokenizerPath);
        using var doc = JsonDocument.Parse(RegularFile.ReadAllBytes(path, 64 << 20, "golden tokenizer file", m => new InvalidDataException(m)));
        int i = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            var expected = c.GetProperty("input_ids").EnumerateArray().Select(v => (float)v.GetInt64()).ToArray();
            var actual = tok.EncodeForZImage(prompt, ZImageModel.MaxTextTokens).Ids.Select(v => (float)v).ToArray();
            add("tokenizer", $"case {i++} input_ids", expected, actual, 0);
            if (Qwen3Tokenizer.ApplyChatTemplate(prompt, enableThinking: true) != c.GetProperty("chat_text").GetString())
                add("tokenizer", $"case {i - 1} chat_text", [1], [0], 0);
        }
    }

    // ------------------------------------------------------------------ components

    private void TextEncoder(ZImageSnapshot s, SafetensorsFile g)
    {
        var cfg = s.TextEncoderConfig;
        using var weights = s.OpenWeights("text_encoder");
        using var enc = new Qwen3TextEncoder(cfg, ZImageSnapshot.TextEncoderLoader(weights, device), [s.TextLayer]);
        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        byte[] mask = g.ReadInt64("inputs.attention_mask").Select(v => (byte)v).ToArray();
        // As the pipeline runs it: padded, masked; then the padding dropped.
        var traced = new HashSet<string>();
        using (var padded = enc.Encode(device, ids, mask, (n, t) =>
               {
                   if (g.Contains(n) && n != "prompt_embeds") { traced.Add(n); Compare("text encoder", g, n, t, ForwardTolerance); }
               }))
        {
            int real = mask.Count(m => m != 0);
            add("text encoder", "prompt_embeds", g.ReadFloats("prompt_embeds"), padded.Slice(0, real).ToFloatArray(), ForwardTolerance);
        }
        if (traced.Count == 0) add("text encoder", "intermediates (none matched)", [1], [0], 0);
        // What the engine runs: the real ids alone.
        int n = mask.Count(m => m != 0);
        using var unpadded = enc.Encode(device, ids[..n], Enumerable.Repeat((byte)1, n).ToArray());
        add("text encoder", "unpadded.hidden_states_m2", g.ReadFloats("unpadded.hidden_states_m2"), unpadded.ToFloatArray(), ForwardTolerance);
    }

    private ZImageTransformer LoadTransformer(ZImageSnapshot s, out Snapshot.WeightSource weights)
    {
        weights = s.OpenWeights("transformer");
        return new ZImageTransformer(s.TransformerConfig, weights.Loader(device), device);
    }

    /// <summary>latent [.., 16, 1, H, W] item → patch tokens [H/2·W/2, 4·16].</summary>
    private Tensor Patches(SafetensorsFile g, string name, out int rows, out int cols)
    {
        var dims = g.Entry(name).Shape;
        int c = dims[dims.Rank - 4], h = dims[-2], w = dims[-1];
        rows = h / 2; cols = w / 2;
        using var x = g.LoadF32(name, device);
        var tokens = Tensor.Empty(device, DType.F32, rows * cols, 4 * c);
        Latents.PatchTokens(x.Reshape(c, h, w), tokens);
        return tokens;
    }

    private float[] Unpatch(Tensor tokens, int c, int rows, int cols)
    {
        using var full = Tensor.Empty(device, DType.F32, c, 2 * rows, 2 * cols);
        Latents.UnpatchTokens(tokens.Reshape(rows * cols, 4 * c), full);
        return full.ToFloatArray();
    }

    private void Transformer(ZImageSnapshot s, SafetensorsFile g)
    {
        using var model = LoadTransformer(s, out var weights);
        using var _ = weights;
        using var patches = Patches(g, "inputs.x", out int rows, out int cols);
        var x = g.ReadFloats("x.patches");
        add("transformer", "x.patches", x.AsSpan(0, rows * cols * s.TransformerConfig.PatchChannels).ToArray(), patches.ToFloatArray(), 0);
        int pc = s.TransformerConfig.PatchChannels, capLen = g.Entry("inputs.cap_feats").Shape[0];
        int capPad = ZImageTransformer.Padded(capLen);
        add("transformer", "cap.pos_ids", g.ReadInt64("cap.pos_ids").Select(v => (float)v).ToArray(), ZImageTransformer.CaptionPositionIds(capPad).Select(v => (float)v).ToArray(), 0);
        add("transformer", "x.pos_ids", g.ReadInt64("x.pos_ids").Select(v => (float)v).ToArray(), ZImageTransformer.ImagePositionIds(capPad, rows, cols).Select(v => (float)v).ToArray(), 0);
        using var caps = g.LoadF32("inputs.cap_feats", device);
        using var output = Tensor.Empty(device, DType.F32, 1, rows * cols, pc);
        model.Forward(patches.Reshape(1, rows * cols, pc), rows, cols, caps.Reshape(1, capLen, caps.Shape[1]), [capLen], g.ReadFloats("inputs.t"), output, (n, t) =>
        {
            if (n is "output" or "cap.rmsnorm" || !g.Contains(n)) return;
            Compare("transformer", g, n, t, ForwardTolerance);
        });
        add("transformer", "output", g.ReadFloats("output"), Unpatch(output, s.TransformerConfig.InChannels, rows, cols), ForwardTolerance);
    }

    private void TransformerBatch(ZImageSnapshot s, SafetensorsFile g)
    {
        using var model = LoadTransformer(s, out var weights);
        using var _ = weights;
        using var one = Patches(g, "inputs.x", out int rows, out int cols);
        int tokens = rows * cols, pc = s.TransformerConfig.PatchChannels, dim = s.TransformerConfig.CapFeatDim;
        var times = g.ReadFloats("inputs.t");
        int batch = times.Length;
        var caps = Enumerable.Range(0, batch).Select(b => g.ReadFloats($"inputs.cap_feats.{b}")).ToArray();
        int[] lengths = caps.Select(c => c.Length / dim).ToArray();
        int len = lengths.Max();
        var capsH = new float[batch * len * dim];
        for (int b = 0; b < batch; b++) caps[b].CopyTo(capsH, b * len * dim);
        using var capsT = Tensor.FromSpan<float>(device, capsH, new Shape(batch, len, dim));
        using var patches = Tensor.Empty(device, DType.F32, batch, tokens, pc);
        for (int b = 0; b < batch; b++) one.CopyTo(patches.Slice(b, 1).Reshape(tokens, pc));
        using var output = Tensor.Empty(device, DType.F32, batch, tokens, pc);
        model.Forward(patches, rows, cols, capsT, lengths, times, output);
        var expected = g.ReadFloats("output");
        int per = expected.Length / batch;
        for (int b = 0; b < batch; b++)
        {
            var actual = Unpatch(output.Slice(b, 1), s.TransformerConfig.InChannels, rows, cols);
            add("transformer batch", $"output[{b}]", expected.AsSpan(b * per, per).ToArray(), actual, ForwardTolerance);
            if (g.Contains($"single.{b}.output")) add("transformer batch", $"single.{b}.output", g.ReadFloats($"single.{b}.output"), actual, ForwardTolerance);
        }
    }

    private void Vae(ZImageSnapshot s, SafetensorsFile g)
    {
        using var weights = s.OpenWeights("vae");
        using var vae = new AutoencoderKL(s.VaeConfig, weights.Loader(device));
        Action<string, Tensor> collect(string comp) => (n, t) => { if (g.Contains(n)) Compare(comp, g, n, t, ForwardTolerance); };
        var ds = g.Entry("dec.latents_model").Shape;
        using (var z = g.LoadF32("dec.latents_model", device))
        using (var input = Tensor.Empty(device, DType.F32, ds[1], ds[2], ds[3]))
        {
            vae.LatentsToVaeInput(z.Reshape(ds[1], ds[2], ds[3]), input);
            Compare("vae decode", g, "dec.input", input, ForwardTolerance);
            using var decoded = vae.Decode(input, collect("vae decode"));
            Compare("vae decode", g, "dec.output", decoded, ForwardTolerance);
        }
        var es = g.Entry("enc.input").Shape;
        using var image = g.LoadF32("enc.input", device);
        using var mean = vae.EncodeMean(image.Reshape(es[1], es[2], es[3]), collect("vae encode"));
        Compare("vae encode", g, "enc.latent_mean", mean, ForwardTolerance);
        using var latents = Tensor.Empty(device, DType.F32, mean.Shape);
        vae.VaeOutputToLatents(mean, latents);
        Compare("vae encode", g, "enc.latents_model", latents, ForwardTolerance);
    }

    // ------------------------------------------------------------------ pipelines

    private void Pipeline(ZImageSnapshot s, SafetensorsFile g, string comp)
    {
        using var model = new ZImageModel(s, device);
        var noiseShape = g.Entry("inputs.initial_latents").Shape;
        int h = noiseShape[2], w = noiseShape[3];
        bool cfg = g.Contains("inputs.negative_input_ids");
        using var manifest = File.Exists(Path.Combine(goldenDir, "manifest.json"))
            ? JsonDocument.Parse(RegularFile.ReadAllBytes(Path.Combine(goldenDir, "manifest.json"), 64 << 20, "golden manifest", m => new InvalidDataException(m)))
            : null;
        JsonElement? prms = manifest is not null && manifest.RootElement.TryGetProperty("params", out var pe) ? pe : null;
        float guidance = cfg ? Param(prms, "cfg", "guidance_scale") ?? 0f : 0f;
        float? truncation = cfg ? Param(prms, "cfg", "cfg_truncation") : null;
        int steps = g.Entry("timesteps").Shape[0];

        TextConditioning Encode(string ids, string mask)
        {
            var all = g.ReadInt64(ids).Select(v => (int)v).ToArray();
            int real = g.ReadInt64(mask).Count(m => m != 0);
            var e = model.EncodePrompt(all[..real], out _);
            var m = Tensor.FromSpan<float>(device, Enumerable.Repeat(1f, real).ToArray(), new Shape(1, real));
            return new TextConditioning(e.Reshape(1, real, e.Shape[1]), m);
        }
        using var text = Encode("inputs.input_ids", "inputs.attention_mask");
        add(comp, "prompt_embeds", g.ReadFloats("prompt_embeds"), text.Embeds.ToFloatArray(), ForwardTolerance);
        using var negative = cfg ? Encode("inputs.negative_input_ids", "inputs.negative_attention_mask") : null;
        if (negative is not null) add(comp, "negative_prompt_embeds", g.ReadFloats("negative_prompt_embeds"), negative.Embeds.ToFloatArray(), ForwardTolerance);

        var layout = model.Layout(8 * w, 8 * h);
        using (var sampler = model.CreateSampler(SamplerKind.Euler, steps, layout))
        {
            add(comp, "sigmas", g.ReadFloats("sigmas"), sampler.Sigmas, 0);
            add(comp, "timesteps", g.ReadFloats("timesteps"), Enumerable.Range(0, sampler.Calls).Select(sampler.Timestep).ToArray(), 0);
        }
        using var noise = g.LoadF32("inputs.initial_latents", device);
        var job = new GenerationJob
        {
            PromptEmbeds = text, NegativePromptEmbeds = negative, Noise = noise, Width = 8 * w, Height = 8 * h, Steps = steps,
            Guidance = guidance, GuidanceTruncation = truncation, CfgMode = CfgMode.Batched,
        };
        var applied = g.Contains("cfg_applied") ? g.ReadFloats("cfg_applied") : null;
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Trace = (n, t) => { if (n is "final_latents" or "vae_input" or "decoded_image") Compare(comp, g, n, t, PipelineTolerance); },
            OnStep = r =>
            {
                string p = $"step.{r.Step}.";
                add(comp, p + "transformer_in.t", g.ReadFloats(p + "transformer_in.t").Take(1).ToArray(), [(1000f - r.Timestep) / 1000f], 0);
                add(comp, p + "noise_pred", g.ReadFloats(p + "noise_pred"), Unpatch(r.Prediction, 16, layout.Rows, layout.Cols), PipelineTolerance);
                add(comp, p + "latents_after", g.ReadFloats(p + "latents_after"), Unpatch(r.Latents, 16, layout.Rows, layout.Cols), PipelineTolerance);
                // transformer_out is the raw output: minus what the denoiser returned, [cond; uncond] when guided.
                var raw = Negated(Unpatch(r.Cond, 16, layout.Rows, layout.Cols));
                if (r.Uncond is not null) raw = [.. raw, .. Negated(Unpatch(r.Uncond, 16, layout.Rows, layout.Cols))];
                add(comp, p + "transformer_out", g.ReadFloats(p + "transformer_out"), raw, PipelineTolerance);
                if (applied is not null) add(comp, p + "cfg_applied", [applied[r.Step]], [r.Uncond is null ? 0 : 1], 0);
            },
        });
        var expected8 = g.ReadFloats("image_uint8");
        var actual8 = result.Image(0).Rgb.Select(b => (float)b).ToArray();
        // 8-bit pixels may differ by one where a value sits on a rounding boundary.
        add(comp, "image_uint8 (±1)", expected8, actual8, 1.0 / 255 + 1e-9);
    }

    private static float[] Negated(float[] v) => v.Select(x => -x).ToArray();

    private static float? Param(JsonElement? prms, string group, string name) =>
        prms is { } p && p.TryGetProperty(group, out var gr) && gr.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble() : null;
}
