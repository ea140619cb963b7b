using System.Text.Json;
using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Text;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// Runs each file of a Qwen-Image golden set (tests/golden/qwenimage's layout: model/ + text_encoder_forward,
/// transformer_forward, vae_forward, pipeline_*.safetensors, scheduler.json, tokenizer-ids.json) through the family's own
/// code and reports every compared tensor to <c>add(component, tensor, expected, actual, tolerance)</c> (tolerance relative
/// to the tensor's max magnitude; 0 = exact). Pipelines run through <see cref="GenerationEngine"/> with the call
/// parameters the manifest records. The tiny encoder's vocabulary is 1000 tokens: real ids are mapped id % vocab_size.
/// </summary>
public sealed class QwenImageGoldenSet(string goldenDir, Device device, Action<string, string, float[], float[], double> add, string? tokenizerPath = null)
{
    public const double ForwardTolerance = 2e-4, PipelineTolerance = 1e-3, TableTolerance = 1e-6;

    /// <summary>The files this runner knows, in the order it runs them.</summary>
    public IEnumerable<string> Files()
    {
        foreach (var f in new[] { "scheduler.json", "tokenizer-ids.json", "text_encoder_forward.safetensors", "transformer_forward.safetensors", "vae_forward.safetensors" })
            yield return f;
        foreach (var p in Directory.EnumerateFiles(goldenDir, "pipeline_*.safetensors").Select(Path.GetFileName).Order(StringComparer.Ordinal))
            yield return p!;
    }

    public static bool IsQwenImageSet(string goldenDir)
    {
        string index = Path.Combine(goldenDir, "model", "model_index.json");
        if (!File.Exists(index)) return false;
        try { return QwenImageSnapshot.PipelineClasses.Contains(Config.ModelIndex.Load(index).ClassName); }
        catch (Exception e) when (e is Config.ModelConfigException or IOException) { return false; }
    }

    public void Verify(string file)
    {
        string path = Path.Combine(goldenDir, file);
        if (file == "tokenizer-ids.json") { Tokenizer(path); return; }
        using var snapshot = QwenImageSnapshot.Open(Path.Combine(goldenDir, "model"));
        if (file == "scheduler.json") { Scheduler(snapshot, path); return; }
        using var g = SafetensorsFile.Open(path);
        switch (file)
        {
            case "text_encoder_forward.safetensors": TextEncoder(snapshot, g); break;
            case "transformer_forward.safetensors": Transformer(snapshot, g); break;
            case "vae_forward.safetensors": Vae(snapshot, g); break;
            default:
                if (file.StartsWith("pipeline_img2img", StringComparison.Ordinal)) Img2Img(snapshot, g, Path.GetFileNameWithoutExtension(file));
                else Pipeline(snapshot, g, Path.GetFileNameWithoutExtension(file));
                break;
        }
    }

    private void Compare(string component, SafetensorsFile g, string name, Tensor actual, double tol) => add(component, name, g.ReadFloats(name), actual.ToFloatArray(), tol);

    private static float[] AsFloats(IEnumerable<long> v) => v.Select(x => (float)x).ToArray();

    // ------------------------------------------------------------------ scheduler and tokenizer

    private void Scheduler(QwenImageSnapshot s, string path)
    {
        using var doc = JsonDocument.Parse(RegularFile.ReadAllBytes(path, 64 << 20, "golden scheduler file", m => new InvalidDataException(m)));
        var settings = SamplerSettings.FromSchedulerConfig(s.SchedulerConfig);
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            int steps = c.GetProperty("num_inference_steps").GetInt32(), width = c.GetProperty("width").GetInt32(), height = c.GetProperty("height").GetInt32();
            // The pipeline's image_seq_len is the packed token count (H/16)(W/16), floors included.
            int tokens = (height / 16) * (width / 16);
            string key = $"{steps} steps {width}x{height}";
            add("scheduler", $"image_seq_len ({key})", [c.GetProperty("image_seq_len").GetInt32()], [tokens], 0);
            double mu = QwenImageModel.CalculateShift(tokens, s.SchedulerConfig);
            add("scheduler", $"mu ({key})", [(float)c.GetProperty("mu").GetDouble()], [(float)mu], 1e-7);
            using var sampler = Samplers.Create(settings, steps, mu);
            add("scheduler", $"sigmas ({key})", Floats(c, "sigmas"), sampler.Sigmas, 0);
            var ts = Enumerable.Range(0, sampler.Calls).Select(sampler.Timestep).ToArray();
            add("scheduler", $"timesteps ({key})", Floats(c, "timesteps"), ts, 0);
            add("scheduler", $"transformer_timestep_input ({key})", Floats(c, "transformer_timestep_input"), ts.Select(t => t / 1000f).ToArray(), 0);
            if (c.TryGetProperty("strength", out var st))
            {
                int start = Img2ImgStart(steps, st.GetDouble());
                add("scheduler", $"img2img_t_start ({key})", [c.GetProperty("img2img_t_start").GetInt32()], [start], 0);
                add("scheduler", $"img2img_timesteps ({key})", Floats(c, "img2img_timesteps"), ts[start..], 0);
                add("scheduler", $"img2img_noise_sigma ({key})", [(float)c.GetProperty("img2img_noise_sigma").GetDouble()], [sampler.Sigmas[start]], 0);
            }
        }
    }

    /// <summary>The img2img pipelines' get_timesteps: t_start = int(N − min(N·strength, N)) (float64 product, truncated).</summary>
    public static int Img2ImgStart(int steps, double strength) => (int)(steps - Math.Min(steps * strength, steps));

    private static float[] Floats(JsonElement c, string name) => c.GetProperty(name).EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

    private Qwen3Tokenizer LoadTokenizer() => tokenizerPath is null ? Qwen3Tokenizer.BuiltIn : Qwen3Tokenizer.FromFile(tokenizerPath);

    private void Tokenizer(string path)
    {
        var tok = LoadTokenizer();
        using var doc = JsonDocument.Parse(RegularFile.ReadAllBytes(path, 64 << 20, "golden tokenizer file", m => new InvalidDataException(m)));
        var root = doc.RootElement;
        if (root.TryGetProperty("prompt_template", out var tpl) && tpl.GetString() != QwenImagePrompt.Format("{}"))
            add("tokenizer", "prompt_template", [1], [0], 0);
        var prompts = new List<string>();
        int i = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            prompts.Add(prompt);
            if (QwenImagePrompt.Format(prompt) != c.GetProperty("formatted").GetString()) add("tokenizer", $"case {i} formatted", [1], [0], 0);
            var expected = c.GetProperty("ids").EnumerateArray().Select(v => (float)v.GetInt64()).ToArray();
            var actual = tok.Encode(QwenImagePrompt.Format(prompt));
            add("tokenizer", $"case {i} ids", expected, actual.Select(v => (float)v).ToArray(), 0);
            var (ids, kept, _) = QwenImagePrompt.Tokenize(tok, prompt);
            add("tokenizer", $"case {i} kept_ids", c.GetProperty("kept_ids").EnumerateArray().Select(v => (float)v.GetInt64()).ToArray(),
                ids[QwenImagePrompt.DropTokens..].Take(kept).Select(v => (float)v).ToArray(), 0);
            add("tokenizer", $"case {i} prompt_only_ids", c.GetProperty("prompt_only_ids").EnumerateArray().Select(v => (float)v.GetInt64()).ToArray(),
                tok.Encode(prompt).Select(v => (float)v).ToArray(), 0);
            i++;
        }
        if (root.TryGetProperty("batch_of_first_three", out var batch))
        {
            // Right padding with <|endoftext|> to the longest of the three, mask 1 on real tokens.
            var rows = prompts.Take(3).Select(p => tok.Encode(QwenImagePrompt.Format(p))).ToArray();
            int len = rows.Max(r => r.Length);
            var padded = rows.SelectMany(r => r.Concat(Enumerable.Repeat(tok.PadId, len - r.Length))).Select(v => (float)v).ToArray();
            var mask = rows.SelectMany(r => Enumerable.Repeat(1f, r.Length).Concat(Enumerable.Repeat(0f, len - r.Length))).ToArray();
            add("tokenizer", "batch_of_first_three input_ids", batch.GetProperty("input_ids").EnumerateArray().SelectMany(r => r.EnumerateArray()).Select(v => (float)v.GetInt64()).ToArray(), padded, 0);
            add("tokenizer", "batch_of_first_three attention_mask", batch.GetProperty("attention_mask").EnumerateArray().SelectMany(r => r.EnumerateArray()).Select(v => (float)v.GetInt64()).ToArray(), mask, 0);
        }
    }

    // ------------------------------------------------------------------ text encoder

    private void TextEncoder(QwenImageSnapshot s, SafetensorsFile g)
    {
        var cfg = s.TextEncoderConfig;
        const string comp = "text encoder";
        var real = g.ReadInt64("inputs.real_input_ids");
        var ids = g.ReadInt64("inputs.input_ids");
        var maskAll = g.ReadInt64("inputs.attention_mask");
        var dims = g.Entry("inputs.input_ids").Shape;
        int batch = dims[0], len = dims[1];
        add(comp, "inputs.input_ids (= real % vocab)", AsFloats(ids), AsFloats(real.Select(v => v % cfg.VocabSize)), 0);
        var posIds = g.ReadInt64("position_ids");
        add(comp, "position_ids", AsFloats(posIds), AsFloats(Enumerable.Range(0, 3 * batch).SelectMany(_ => Enumerable.Range(0, len).Select(p => (long)p))), 0);
        var (cosH, sinH) = RopeTables.RotateHalf(len, cfg.HeadDim, cfg.RopeTheta);
        float[] Axes(float[] t) => Enumerable.Range(0, 3 * batch).SelectMany(_ => t).ToArray();
        add(comp, "rope.cos", g.ReadFloats("rope.cos"), Axes(cosH), TableTolerance);
        add(comp, "rope.sin", g.ReadFloats("rope.sin"), Axes(sinH), TableTolerance);

        using var weights = s.OpenWeights("text_encoder");
        using var enc = s.CreateTextEncoder(QwenImageSnapshot.TextEncoderLoader(weights, device));
        // As the pipeline runs it: each row padded to the batch length, masked (causal + key padding).
        var traced = new Dictionary<string, float[][]>();
        for (int b = 0; b < batch; b++)
        {
            int[] rowIds = ids.Skip(b * len).Take(len).Select(v => (int)v).ToArray();
            byte[] rowMask = maskAll.Skip(b * len).Take(len).Select(v => (byte)v).ToArray();
            using var _ = enc.Encode(device, rowIds, rowMask, (n, t) =>
            {
                if (!traced.TryGetValue(n, out var rows)) traced[n] = rows = new float[batch][];
                rows[b] = t.ToFloatArray();
            });
        }
        int compared = 0;
        foreach (var (n, rows) in traced)
        {
            string golden = n switch { "layer.0.attn.q_rope" => "layer.0.attn.q_after_rope", "layer.0.attn.k_rope" => "layer.0.attn.k_after_rope", _ => n };
            if (n == "prompt_embeds" || !g.Contains(golden) || rows.Any(r => r is null)) continue;
            var actual = rows.SelectMany(r => r).ToArray();
            if (golden.EndsWith("_after_rope", StringComparison.Ordinal))
                actual = HeadsFirst(actual, batch, len, g.Entry(golden).Shape[1], cfg.HeadDim); // golden is [B, heads, S, D]
            add(comp, golden, g.ReadFloats(golden), actual, ForwardTolerance);
            compared++;
            if (golden == "layer.0.attn.o_proj" && g.Contains("layer.0.attn.out")) add(comp, "layer.0.attn.out", g.ReadFloats("layer.0.attn.out"), actual, ForwardTolerance);
            if (golden == "hidden_states.0" && g.Contains("embed_tokens")) add(comp, "embed_tokens", g.ReadFloats("embed_tokens"), actual, ForwardTolerance);
        }
        if (compared == 0) add(comp, "intermediates (none matched)", [1], [0], 0);

        // What the engine runs: each prompt's real ids alone, the first 34 rows dropped, zero-padded with a mask.
        using var model = new QwenImageModel(s, device);
        var pe = g.Entry("prompt_embeds").Shape;
        int kept = pe[1], dim = pe[2];
        var embeds = new float[batch * kept * dim];
        var mask = new float[batch * kept];
        for (int b = 0; b < batch; b++)
        {
            int n = (int)maskAll.Skip(b * len).Take(len).Sum();
            using var e = model.EncodePrompt(ids.Skip(b * len).Take(n).Select(v => (int)v).ToArray(), out _);
            e.ToFloatArray().CopyTo(embeds, b * kept * dim);
            Array.Fill(mask, 1f, b * kept, e.Shape[0]);
        }
        add(comp, "prompt_embeds", g.ReadFloats("prompt_embeds"), embeds, ForwardTolerance);
        add(comp, "prompt_embeds_mask", AsFloats(g.ReadInt64("prompt_embeds_mask")), mask, 0);
    }

    /// <summary>[B, S, H, D] → [B, H, S, D].</summary>
    private static float[] HeadsFirst(float[] x, int batch, int s, int heads, int d)
    {
        var y = new float[x.Length];
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < s; i++)
                for (int h = 0; h < heads; h++)
                    Array.Copy(x, ((b * s + i) * heads + h) * d, y, ((b * heads + h) * s + i) * d, d);
        return y;
    }

    // ------------------------------------------------------------------ transformer

    private void Transformer(QwenImageSnapshot s, SafetensorsFile g)
    {
        const string comp = "transformer";
        var tc = s.TransformerConfig;
        using var weights = s.OpenWeights("transformer");
        using var model = new QwenImageTransformer(tc, weights.Loader(device));
        int rows = 5, cols = 8;
        if (g.Entry("inputs.hidden_states").Shape[1] != rows * cols)
        {
            // Other grids: the manifest's img_shapes would say; the positions file pins it down.
            var pos = g.ReadInt64("rope.img.positions");
            rows = (int)(pos.Where((_, i) => i % 3 == 1).Max() - pos.Where((_, i) => i % 3 == 1).Min() + 1);
            cols = g.Entry("inputs.hidden_states").Shape[1] / rows;
        }
        int s1 = rows * cols, tl = g.Entry("inputs.encoder_hidden_states").Shape[1];
        add(comp, "rope.img.positions", AsFloats(g.ReadInt64("rope.img.positions")), AsFloats(QwenImageRope.ImagePositions(rows, cols)), 0);
        add(comp, "rope.txt.positions", AsFloats(g.ReadInt64("rope.txt.positions")), AsFloats(QwenImageRope.TextPositions(rows, cols, tl)), 0);
        using (var x = g.LoadF32("inputs.hidden_states", device))
        using (var txt = g.LoadF32("inputs.encoder_hidden_states", device))
        using (var output = Tensor.Empty(device, DType.F32, 1, s1, tc.OutputChannels))
        {
            model.Forward(x, rows, cols, txt, null, g.ReadFloats("inputs.timestep"), output, (n, t) =>
            {
                if (!g.Contains(n)) return;
                Compare(comp, g, n, t, n.StartsWith("rope.", StringComparison.Ordinal) ? TableTolerance : ForwardTolerance);
                if (n == "output" && g.Contains("proj_out")) Compare(comp, g, "proj_out", t, ForwardTolerance);
            });
        }
        if (!g.Contains("masked.inputs.hidden_states")) return;

        // The masked batch of 2: zero-padded text with its mask; then sample 0 alone with only its valid tokens.
        const string mcomp = "transformer masked";
        var md = g.Entry("masked.inputs.encoder_hidden_states").Shape;
        int mb = md[0], ml = md[1];
        var (tcos, tsin) = QwenImageRope.Factors(QwenImageRope.OnAllAxes(QwenImageRope.TextPositions(rows, cols, ml)), tc.AxesDimsRope);
        add(mcomp, "masked.rope.txt.cos", g.ReadFloats("masked.rope.txt.cos"), tcos, TableTolerance);
        add(mcomp, "masked.rope.txt.sin", g.ReadFloats("masked.rope.txt.sin"), tsin, TableTolerance);
        var maskH = AsFloats(g.ReadInt64("masked.inputs.encoder_hidden_states_mask"));
        using var mx = g.LoadF32("masked.inputs.hidden_states", device);
        using var mt = g.LoadF32("masked.inputs.encoder_hidden_states", device);
        using var mm = Tensor.FromSpan<float>(device, maskH, new Shape(mb, ml));
        using var mo = Tensor.Empty(device, DType.F32, mb, s1, tc.OutputChannels);
        model.Forward(mx, rows, cols, mt, mm, g.ReadFloats("masked.inputs.timestep"), mo);
        Compare(mcomp, g, "masked.output", mo, ForwardTolerance);
        if (g.Contains("masked.sample0_unpadded_output"))
        {
            int valid = (int)maskH.Take(ml).Sum();
            using var one = Tensor.Empty(device, DType.F32, 1, s1, tc.OutputChannels);
            model.Forward(mx.Slice(0, 1), rows, cols, mt.Slice(0, 1).Reshape(ml, md[2]).Slice(0, valid).Reshape(1, valid, md[2]), null, g.ReadFloats("masked.inputs.timestep").Take(1).ToArray(), one);
            Compare(mcomp, g, "masked.sample0_unpadded_output", one, ForwardTolerance);
        }
    }

    // ------------------------------------------------------------------ VAE

    private void Vae(QwenImageSnapshot s, SafetensorsFile g)
    {
        using var weights = s.OpenWeights("vae");
        using var vae = new QwenImageVae(s.VaeConfig, weights.Loader(device));
        Action<string, Tensor> collect(string comp) => (n, t) => { if (g.Contains(n)) Compare(comp, g, n, t, ForwardTolerance); };
        var ds = g.Entry("dec.input").Shape; // [1, z, 1, h, w]
        using (var z = g.LoadF32("dec.input", device))
        using (var decoded = vae.Decode(z.Reshape(ds[1], ds[3], ds[4]), collect("vae decode"))) { }
        if (!g.Contains("enc.input")) return;
        var es = g.Entry("enc.input").Shape;
        using var image = g.LoadF32("enc.input", device);
        using var moments = vae.EncodeMoments(image.Reshape(es[1], es[3], es[4]), collect("vae encode"));
        var m = moments.ToFloatArray();
        int zc = s.VaeConfig.ZDim, px = m.Length / (2 * zc);
        var mean = m[..(zc * px)];
        var logvar = m[(zc * px)..].Select(v => Math.Clamp(v, -30f, 20f)).ToArray();
        add("vae encode", "enc.latent_mean", g.ReadFloats("enc.latent_mean"), mean, ForwardTolerance);
        add("vae encode", "enc.latent_logvar", g.ReadFloats("enc.latent_logvar"), logvar, ForwardTolerance);
        var std = logvar.Select(v => MathF.Exp(0.5f * v)).ToArray();
        add("vae encode", "enc.latent_std", g.ReadFloats("enc.latent_std"), std, ForwardTolerance);
        if (g.Contains("enc.posterior_eps") && g.Contains("enc.pipeline_image_latents"))
            add("vae encode", "enc.pipeline_image_latents", g.ReadFloats("enc.pipeline_image_latents"),
                QwenImageModel.ImageLatents(s.VaeConfig, mean, std, g.ReadFloats("enc.posterior_eps"), px), ForwardTolerance);
        add("vae", "latents_mean", g.ReadFloats("latents_mean"), s.VaeConfig.LatentsMean, 0);
        add("vae", "latents_std", g.ReadFloats("latents_std"), s.VaeConfig.LatentsStd, 0);
    }

    // ------------------------------------------------------------------ pipelines

    private JsonElement? Params()
    {
        string path = Path.Combine(goldenDir, "manifest.json");
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(RegularFile.ReadAllBytes(path, 64 << 20, "golden manifest", m => new InvalidDataException(m)));
        return doc.RootElement.TryGetProperty("params", out var p) ? p.Clone() : null;
    }

    private static float? Param(JsonElement? prms, string group, string name) =>
        prms is { } p && p.TryGetProperty(group, out var gr) && gr.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble() : null;

    /// <summary>A prompt's conditioning as the engine gets it: the real (vocabulary-mapped) ids, the first 34 rows dropped, mask all ones.</summary>
    private static TextConditioning Encode(QwenImageModel model, SafetensorsFile g, string ids, string mask, Device device)
    {
        var all = g.ReadInt64(ids).Select(v => (int)v).ToArray();
        int real = (int)g.ReadInt64(mask).Sum();
        var e = model.EncodePrompt(all[..real], out _);
        int kept = e.Shape[0];
        var m = Tensor.FromSpan<float>(device, Enumerable.Repeat(1f, kept).ToArray(), new Shape(1, kept));
        return new TextConditioning(e.Reshape(1, kept, e.Shape[1]), m);
    }

    private void Pipeline(QwenImageSnapshot s, SafetensorsFile g, string comp)
    {
        using var model = new QwenImageModel(s, device);
        var noiseShape = g.Entry("inputs.initial_noise").Shape; // [1, 1, 16, h, w]
        int h = noiseShape[3], w = noiseShape[4];
        bool cfg = g.Contains("negative.input_ids");
        string group = comp.Contains("cfg", StringComparison.Ordinal) ? "t2i_cfg" : "t2i";
        float guidance = cfg ? Param(Params(), group, "true_cfg_scale") ?? 4f : 1f;
        int steps = g.Entry("timesteps").Shape[0];

        using var text = Encode(model, g, "inputs.input_ids", "inputs.attention_mask", device);
        add(comp, "prompt_embeds", g.ReadFloats("prompt_embeds"), text.Embeds.ToFloatArray(), ForwardTolerance);
        using var negative = cfg ? Encode(model, g, "negative.input_ids", "negative.attention_mask", device) : null;
        if (negative is not null) add(comp, "negative_prompt_embeds", g.ReadFloats("negative_prompt_embeds"), negative.Embeds.ToFloatArray(), ForwardTolerance);

        var layout = model.Layout(8 * w, 8 * h);
        using (var sampler = model.CreateSampler(SamplerKind.Euler, steps, layout))
        {
            add(comp, "sigmas", g.ReadFloats("sigmas"), sampler.Sigmas, 0);
            add(comp, "timesteps", g.ReadFloats("timesteps"), Enumerable.Range(0, sampler.Calls).Select(sampler.Timestep).ToArray(), 0);
        }
        using var noise = g.LoadF32("inputs.initial_noise", device);
        var job = new GenerationJob
        {
            PromptEmbeds = text, NegativePromptEmbeds = negative, Noise = noise, Width = 8 * w, Height = 8 * h, Steps = steps,
            Guidance = guidance, CfgMode = CfgMode.Sequential,
        };
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Trace = (n, t) =>
            {
                switch (n)
                {
                    case "latents.initial_packed": Compare(comp, g, "inputs.initial_latents_packed", t, 0); break;
                    case "final_latents_unpacked" or "vae_input": Compare(comp, g, n, t, PipelineTolerance); break;
                    case "decoded_image": Compare(comp, g, "decoded", t, PipelineTolerance); break;
                }
            },
            OnStep = r =>
            {
                string p = $"step.{r.Step}.";
                add(comp, p + "transformer_in.timestep", g.ReadFloats(p + "transformer_in.timestep"), [r.Timestep / 1000f], 0);
                if (r.Uncond is not null)
                {
                    Compare(comp, g, p + "noise_pred_cond", r.Cond, PipelineTolerance);
                    Compare(comp, g, p + "noise_pred_uncond", r.Uncond, PipelineTolerance);
                }
                Compare(comp, g, p + "noise_pred", r.Prediction, PipelineTolerance);
                Compare(comp, g, p + "latents_after", r.Latents, PipelineTolerance);
            },
        });
        add(comp, "cfg used", [cfg ? 1 : 0], [result.UsedCfg ? 1 : 0], 0);
        add(comp, "final_latents_packed", g.ReadFloats("final_latents_packed"), g.ReadFloats("step." + (steps - 1) + ".latents_after"), 0);
        var pt = result.Decoded.Select(v => Math.Clamp(v / 2f + 0.5f, 0f, 1f)).ToArray();
        add(comp, "image_pt", g.ReadFloats("image_pt"), pt, PipelineTolerance);
    }

    /// <summary>
    /// QwenImageImg2ImgPipeline through the engine: the file's float image (2x − 1, handed to the model as its
    /// preprocessed init image), its posterior ε and noise; then the image latents, the noised start latents, every
    /// step of the schedule's tail (t_start from the strength), the final latents and the decoded image.
    /// </summary>
    private void Img2Img(QwenImageSnapshot s, SafetensorsFile g, string comp)
    {
        using var model = new QwenImageModel(s, device);
        var imageShape = g.Entry("inputs.image").Shape; // [1, 3, H, W] in [0, 1]
        int height = imageShape[2], width = imageShape[3];
        int steps = g.Entry("sigmas").Shape[0] - 1;
        // As a double: the float 0.6 would give 5 · 0.6 = 3.0000001 and t_start 1 instead of 2.
        double strength = Params() is { } prm && prm.TryGetProperty("img2img", out var i2i) && i2i.TryGetProperty("strength", out var st) ? st.GetDouble() : 0.6;
        using var text = Encode(model, g, "inputs.input_ids", "inputs.attention_mask", device);
        add(comp, "prompt_embeds", g.ReadFloats("prompt_embeds"), text.Embeds.ToFloatArray(), ForwardTolerance);

        var layout = model.Layout(width, height);
        int start = Img2ImgStart(steps, strength);
        using (var sampler = model.CreateSampler(SamplerKind.Euler, steps, layout))
        {
            add(comp, "sigmas", g.ReadFloats("sigmas"), sampler.Sigmas, 0);
            add(comp, "timesteps", g.ReadFloats("timesteps"), Enumerable.Range(start, sampler.Calls - start).Select(sampler.Timestep).ToArray(), 0);
            add(comp, "img2img.latent_timestep", g.ReadFloats("img2img.latent_timestep"), [sampler.Timestep(start)], 0);
        }
        // VaeImageProcessor.normalize: 2x − 1 in float32.
        var pixels = g.ReadFloats("inputs.image").Select(v => 2f * v - 1f).ToArray();
        add(comp, "inputs.vae_encode_input", g.ReadFloats("inputs.vae_encode_input"), pixels, 0);
        using var pixelsT = Tensor.FromSpan<float>(device, pixels, new Shape(3, height, width));
        model.PreprocessedInitImage = pixelsT;
        using var eps = g.LoadF32("img2img.posterior_eps", device);
        using var noise = g.LoadF32("img2img.noise", device);
        var job = new GenerationJob
        {
            PromptEmbeds = text, Noise = noise, InitImagePosteriorNoise = eps, Width = width, Height = height, Steps = steps,
            // A placeholder of the right size: the model encodes PreprocessedInitImage instead.
            InitImage = new Image.RgbImage(new byte[3 * width * height], width, height), Strength = strength, Guidance = 1f,
        };
        int stepsSeen = 0;
        float[]? last = null;
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Trace = (n, t) =>
            {
                switch (n)
                {
                    case "img2img.image_latents" or "img2img.noisy_latents": Compare(comp, g, n, t, ForwardTolerance); break;
                    case "latents.initial_packed":
                        last = t.ToFloatArray();
                        add(comp, "inputs.initial_latents_packed", g.ReadFloats("inputs.initial_latents_packed"), last, ForwardTolerance);
                        break;
                    case "final_latents_unpacked" or "vae_input": Compare(comp, g, n, t, PipelineTolerance); break;
                    case "decoded_image": Compare(comp, g, "decoded", t, PipelineTolerance); break;
                }
            },
            OnStep = r =>
            {
                stepsSeen++;
                string p = $"step.{r.Step}.";
                add(comp, p + "transformer_in.hidden_states", g.ReadFloats(p + "transformer_in.hidden_states"), last ?? [], PipelineTolerance);
                add(comp, p + "transformer_in.timestep", g.ReadFloats(p + "transformer_in.timestep"), [r.Timestep / 1000f], 0);
                Compare(comp, g, p + "noise_pred", r.Prediction, PipelineTolerance);
                last = r.Latents.ToFloatArray();
                add(comp, p + "latents_after", g.ReadFloats(p + "latents_after"), last, PipelineTolerance);
            },
        });
        int expectedSteps = g.Names.Count(n => n.StartsWith("step.", StringComparison.Ordinal) && n.EndsWith(".latents_after", StringComparison.Ordinal));
        add(comp, "steps run", [expectedSteps], [stepsSeen], 0);
        add(comp, "final_latents_packed", g.ReadFloats("final_latents_packed"), last ?? [], PipelineTolerance);
        var pt = result.Decoded.Select(v => Math.Clamp(v / 2f + 0.5f, 0f, 1f)).ToArray();
        add(comp, "image_pt", g.ReadFloats("image_pt"), pt, PipelineTolerance);
    }
}
