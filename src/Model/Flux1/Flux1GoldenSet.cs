using System.Text.Json;
using PureFlux.Model.Clip;
using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Scheduler;
using PureFlux.Model.T5;
using PureFlux.Model.Text;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Flux1;

/// <summary>
/// Runs each file of a FLUX.1 golden set (tests/golden/flux1's layout: model/FLUX.1-{dev,schnell,Kontext-dev}/ +
/// clip_forward, t5_forward, transformer_forward_{dev,schnell}, vae_forward, ops, pipeline_*.safetensors, scheduler.json,
/// kontext_sizes.json and, when present, tokenizer-ids.json) through the family's own code and reports every compared
/// tensor to <c>add(component, tensor, expected, actual, tolerance)</c>. Pipelines run through <see cref="GenerationEngine"/>
/// with the call the manifest records for the file (its notes' <c>call</c> and <c>repo</c>; the file's own metadata
/// carries the same).
/// </summary>
public sealed class Flux1GoldenSet(string goldenDir, Device device, Action<string, string, float[], float[], double> add, string? tokenizerPath = null)
{
    public const double ForwardTolerance = 2e-4, PipelineTolerance = 1e-3, OpTolerance = 1e-5;
    private const string Dev = "FLUX.1-dev", Schnell = "FLUX.1-schnell";

    /// <summary>The files this runner knows, in the order it runs them (pipelines: every pipeline_*.safetensors present).</summary>
    public IEnumerable<string> Files()
    {
        foreach (var f in new[] { "scheduler.json", "kontext_sizes.json", "tokenizer-ids.json", "ops.safetensors", "clip_forward.safetensors", "t5_forward.safetensors",
                     "transformer_forward_dev.safetensors", "transformer_forward_schnell.safetensors", "vae_forward.safetensors" })
            if (f != "tokenizer-ids.json" || File.Exists(Path.Combine(goldenDir, f))) yield return f;
        foreach (var p in Directory.EnumerateFiles(goldenDir, "pipeline_*.safetensors").Select(Path.GetFileName).Order(StringComparer.Ordinal))
            yield return p!;
    }

    /// <summary>A FLUX.1 set: model/ holds a repo folder whose model_index.json names a FLUX.1 pipeline.</summary>
    public static bool IsFlux1Set(string goldenDir)
    {
        string models = Path.Combine(goldenDir, "model");
        if (!Directory.Exists(models)) return false;
        foreach (var dir in Directory.EnumerateDirectories(models))
        {
            string index = Path.Combine(dir, "model_index.json");
            if (!File.Exists(index)) continue;
            try { if (Flux1Snapshot.PipelineClasses.Contains(Config.ModelIndex.Load(index).ClassName)) return true; }
            catch (Exception e) when (e is Config.ModelConfigException or IOException) { }
        }
        return false;
    }

    private string Repo(string name) => Path.Combine(goldenDir, "model", name);

    public void Verify(string file)
    {
        string path = Path.Combine(goldenDir, file);
        switch (file)
        {
            case "scheduler.json": Scheduler(path); return;
            case "kontext_sizes.json": KontextSizes(path); return;
            case "tokenizer-ids.json": Tokenizer(path); return;
        }
        using var g = SafetensorsFile.Open(path);
        switch (file)
        {
            case "ops.safetensors": Ops(g); break;
            case "clip_forward.safetensors": ClipForward(g); break;
            case "t5_forward.safetensors": T5Forward(g); break;
            case "transformer_forward_dev.safetensors": Transformer(g, Dev, "transformer dev"); break;
            case "transformer_forward_schnell.safetensors": Transformer(g, Schnell, "transformer schnell"); break;
            case "vae_forward.safetensors": Vae(g); break;
            default: Pipeline(g, file); break;
        }
    }

    private void Compare(string component, SafetensorsFile g, string name, Tensor actual, double tol) => add(component, name, g.ReadFloats(name), actual.ToFloatArray(), tol);

    private static JsonDocument ReadJson(string path, string what) =>
        JsonDocument.Parse(RegularFile.ReadAllBytes(path, 64 << 20, what, m => new InvalidDataException(m)));

    private static float[] Floats(JsonElement c, string name) => c.GetProperty(name).EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

    // ------------------------------------------------------------------ host-side files

    private void Scheduler(string path)
    {
        using var doc = ReadJson(path, "golden scheduler file");
        var root = doc.RootElement;
        foreach (var (kind, repo) in new[] { ("dev", Dev), ("schnell", Schnell) })
        {
            if (!root.TryGetProperty(kind, out var cases)) continue;
            using var model = new Flux1Model(Flux1Snapshot.Open(Repo(repo)), device, ownsSnapshot: true);
            foreach (var c in cases.EnumerateArray())
            {
                int steps = c.GetProperty("num_inference_steps").GetInt32(), w = c.GetProperty("width").GetInt32(), h = c.GetProperty("height").GetInt32();
                var layout = model.Layout(w, h);
                string key = $"{kind} {steps} steps {w}x{h}";
                add("scheduler", $"image_seq_len ({key})", [c.GetProperty("image_seq_len").GetInt32()], [layout.Tokens], 0);
                add("scheduler", $"mu ({key})", [(float)c.GetProperty("mu").GetDouble()], [(float)FlowMatchEulerScheduler.CalculateShift(layout.Tokens, model.Snapshot.SchedulerConfig)], 1e-7);
                using var s = model.CreateSampler(SamplerKind.Euler, steps, layout);
                add("scheduler", $"sigmas ({key})", Floats(c, "sigmas"), s.Sigmas, 0);
                add("scheduler", $"timesteps ({key})", Floats(c, "timesteps"), Enumerable.Range(0, s.Calls).Select(s.Timestep).ToArray(), 0);
                add("scheduler", $"transformer_timestep_input ({key})", Floats(c, "transformer_timestep_input"), Enumerable.Range(0, s.Calls).Select(i => s.Timestep(i) / 1000f).ToArray(), 0);
            }
        }
        if (root.TryGetProperty("img2img", out var i2i))
        {
            using var model = new Flux1Model(Flux1Snapshot.Open(Repo(Dev)), device, ownsSnapshot: true);
            foreach (var c in i2i.EnumerateArray())
            {
                int steps = c.GetProperty("num_inference_steps").GetInt32(), w = c.GetProperty("width").GetInt32(), h = c.GetProperty("height").GetInt32();
                double strength = c.GetProperty("strength").GetDouble();
                string key = $"img2img {steps} steps strength {strength}";
                int start = ImageToImage.StartStep(steps, strength);
                add("scheduler", $"t_start ({key})", [c.GetProperty("t_start").GetInt32()], [start], 0);
                using var full = model.CreateSampler(SamplerKind.Euler, steps, model.Layout(w, h));
                using var tail = ImageToImage.Tail(full, start);
                add("scheduler", $"timesteps_run ({key})", Floats(c, "timesteps_run"), Enumerable.Range(0, tail.Calls).Select(tail.Timestep).ToArray(), 0);
                add("scheduler", $"noise_sigma ({key})", [(float)c.GetProperty("noise_sigma").GetDouble()], [tail.Sigma(0)], 0);
            }
        }
    }

    private void KontextSizes(string path)
    {
        using var doc = ReadJson(path, "golden Kontext sizes file");
        var root = doc.RootElement;
        if (root.TryGetProperty("preferred_resolutions_wh", out var pref))
            add("kontext sizes", "preferred_resolutions_wh", pref.EnumerateArray().SelectMany(p => p.EnumerateArray().Select(v => (float)v.GetInt32())).ToArray(),
                Flux1Model.PreferredKontextResolutions.SelectMany(r => new float[] { r.Width, r.Height }).ToArray(), 0);
        int i = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            int? Arg(string n) => c.GetProperty(n).ValueKind == JsonValueKind.Null ? null : c.GetProperty(n).GetInt32();
            var (ow, oh) = Flux1Model.KontextOutputSize(Arg("width_arg") ?? 1024, Arg("height_arg") ?? 1024, c.GetProperty("max_area").GetInt64());
            var (rw, rh) = Flux1Model.KontextReferenceSize(c.GetProperty("ref_width").GetInt32(), c.GetProperty("ref_height").GetInt32(), c.GetProperty("auto_resize").GetBoolean());
            add("kontext sizes", $"case {i} output (w, h)", [c.GetProperty("out_width").GetInt32(), c.GetProperty("out_height").GetInt32()], [ow, oh], 0);
            add("kontext sizes", $"case {i} reference (w, h)", [c.GetProperty("ref_resized_width").GetInt32(), c.GetProperty("ref_resized_height").GetInt32()], [rw, rh], 0);
            i++;
        }
    }

    /// <summary>tokenizer-ids.json in the layout of tests/golden/tokenizer/flux1-ids.json: CLIP fast ids and T5 ids at 512 and 256.
    /// The tokenizer data: <c>--tokenizer DIR</c> holding clip-l/ and t5-xxl/ (the FLUX.1 tokenizer data), else the built-in files.</summary>
    private void Tokenizer(string path)
    {
        ClipTokenizer clip = ClipTokenizer.BuiltIn;
        T5Tokenizer t5 = T5Tokenizer.BuiltIn;
        if (tokenizerPath is not null)
        {
            if (!Directory.Exists(tokenizerPath)) throw new IOException($"{tokenizerPath}: --tokenizer for a FLUX.1 set must be a directory holding clip-l/ and t5-xxl/");
            string c = Path.Combine(tokenizerPath, "clip-l"), t = Path.Combine(tokenizerPath, "t5-xxl", "tokenizer.json");
            if (Directory.Exists(c)) clip = ClipTokenizer.FromDirectory(c);
            if (File.Exists(t)) t5 = T5Tokenizer.FromFile(t);
        }
        using var doc = ReadJson(path, "golden tokenizer file");
        int i = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            float[] Ids(string n) => c.GetProperty(n).EnumerateArray().Select(v => (float)v.GetInt64()).ToArray();
            string clipKey = c.TryGetProperty("clip_input_ids_fast", out _) ? "clip_input_ids_fast" : "clip_input_ids";
            add("tokenizer", $"case {i} {clipKey}", Ids(clipKey), clip.EncodeForFlux(text).Ids.Select(v => (float)v).ToArray(), 0);
            foreach (int len in new[] { T5Tokenizer.FluxDevMaxLength, T5Tokenizer.FluxSchnellMaxLength })
                if (c.TryGetProperty($"t5_input_ids_{len}", out _))
                    add("tokenizer", $"case {i} t5_input_ids_{len}", Ids($"t5_input_ids_{len}"), t5.EncodeForFlux(text, len).Ids.Select(v => (float)v).ToArray(), 0);
            i++;
        }
    }

    // ------------------------------------------------------------------ operators

    private void Ops(SafetensorsFile g)
    {
        const string comp = "ops";
        Tensor L(string n) => g.LoadF32(n, device);
        void Unary(string output, Action<Tensor, Tensor> op)
        {
            using var x = L("act.x");
            using var y = Tensor.Empty(device, DType.F32, x.Shape);
            op(x, y);
            Compare(comp, g, output, y, OpTolerance);
        }
        Unary("act.quick_gelu", QuickGelu.Forward);
        Unary("act.gelu_tanh_torch", (x, y) => Gelu.Forward(x, y, GeluApproximation.Tanh));
        Unary("act.gelu_new", (x, y) => Gelu.Forward(x, y, GeluApproximation.Tanh));
        Unary("act.silu", Silu.Forward);
        foreach (var shape in new[] { "3x77x32", "1x2x4096" })
        {
            using var x = L($"t5_layernorm.{shape}.x");
            using var y = Tensor.Empty(device, DType.F32, x.Shape);
            using (var w = L($"t5_layernorm.{shape}.weight")) RmsNorm.Forward(x, w, y, 1e-6f);
            Compare(comp, g, $"t5_layernorm.{shape}.out", y, OpTolerance);
            using var lw = L($"layernorm_affine.{shape}.weight");
            using var lb = L($"layernorm_affine.{shape}.bias");
            LayerNorm.Forward(x, lw, lb, y, 1e-5f);
            Compare(comp, g, $"layernorm_affine.{shape}.out", y, OpTolerance);
        }
        var rel = g.ReadInt64("t5_bucket.relative_position");
        add(comp, "t5_bucket.bidirectional_32_128", g.ReadInt64("t5_bucket.bidirectional_32_128").Select(v => (float)v).ToArray(),
            rel.Select(r => (float)T5RelativePosition.Bucket((int)r, 32, 128)).ToArray(), 0);

        var ids = g.ReadFloats("rope_flux1.ids").Select(v => (long)v).ToArray();
        var (cosH, sinH) = RopeTables.Flux2(ids, [16, 56, 56], Flux1TransformerConfig.RopeTheta);
        add(comp, "rope_flux1.ids", g.ReadFloats("rope_flux1.ids"), Flux1Transformer.PositionIds(5, 3, 4, 2, 3).Select(v => (float)v).ToArray(), 0);
        add(comp, "rope_flux1.cos", g.ReadFloats("rope_flux1.cos"), cosH, 1e-6);
        add(comp, "rope_flux1.sin", g.ReadFloats("rope_flux1.sin"), sinH, 1e-6);
        using (var x = L("rope_flux1.x"))
        using (var cos = Tensor.FromSpan<float>(device, cosH, new Shape(ids.Length / 3, 128)))
        using (var sin = Tensor.FromSpan<float>(device, sinH, new Shape(ids.Length / 3, 128)))
        {
            Rope.ApplyInterleaved(x, cos, sin, x);
            Compare(comp, g, "rope_flux1.out", x, OpTolerance);
        }
        using (var t = L("timestep_embedding.t"))
        using (var y = Tensor.Empty(device, DType.F32, t.Shape[0], 256))
        {
            TimestepEmbedding.Forward(t, y);
            // Arguments reach 1000 (t) and 3500 rad (guidance 3.5): float32 rounding of the argument alone moves the
            // output by ~1e-4 (the golden README measures 1.1e-4 for a float64 re-derivation).
            Compare(comp, g, "timestep_embedding.out", y, 2e-4);
        }
        using (var lat = L("pack.latents"))
        {
            var s = lat.Shape;
            using var patched = Tensor.Empty(device, DType.F32, 4 * s[1], s[2] / 2, s[3] / 2);
            using var packed = Tensor.Empty(device, DType.F32, s[2] / 2 * (s[3] / 2), 4 * s[1]);
            Latents.Patchify(lat.Reshape(s[1], s[2], s[3]), patched);
            Latents.Pack(patched, packed);
            Compare(comp, g, "pack.packed", packed, 0);
            using var back = Tensor.Empty(device, DType.F32, s[1], s[2], s[3]);
            Latents.Unpack(packed, patched);
            Latents.Unpatchify(patched, back);
            Compare(comp, g, "pack.unpacked", back, 0);
            add(comp, "pack.img_ids_3x5", g.ReadFloats("pack.img_ids_3x5"), Flux1Transformer.PositionIds(0, 3, 5).Select(v => (float)v).ToArray(), 0);
        }
        foreach (var name in g.Names.Where(n => n.StartsWith("pil_lanczos.", StringComparison.Ordinal) && n.EndsWith(".in", StringComparison.Ordinal)))
        {
            string c = name[..^3];
            var src = g.Entry(name).Shape;
            var dst = g.Entry(c + ".out").Shape;
            var img = new RgbImage(g.Bytes(name).ToArray(), src[1], src[0]);
            var resized = LanczosResize.Resize(img, dst[1], dst[0]);
            add(comp, c + ".out (8-bit)", g.Bytes(c + ".out").ToArray().Select(v => (float)v).ToArray(), resized.Rgb.Select(v => (float)v).ToArray(), 0);
        }
        AttentionCase("sdpa_causal", new AttentionOptions { Causal = true }, null);
        AttentionCase("t5_attention", new AttentionOptions { Scale = 1f }, "t5_attention.bias");

        void AttentionCase(string name, AttentionOptions options, string? bias)
        {
            // [B, H, S, D] → tokens-major [S, H, D] (batch 1).
            var qs = g.Entry($"{name}.q").Shape;
            int h = qs[1], s = qs[2], d = qs[3];
            Tensor Tokens(string n)
            {
                var a = g.ReadFloats(n);
                var t = new float[a.Length];
                for (int hh = 0; hh < h; hh++)
                    for (int ss = 0; ss < s; ss++)
                        Array.Copy(a, (hh * s + ss) * d, t, (ss * h + hh) * d, d);
                return Tensor.FromSpan<float>(device, t, new Shape(s, h, d));
            }
            using var q = Tokens($"{name}.q");
            using var k = Tokens($"{name}.k");
            using var v = Tokens($"{name}.v");
            using var o = Tensor.Empty(device, DType.F32, s, h, d);
            using var b = bias is null ? null : g.LoadF32(bias, device);
            Attention.Forward(q, k, v, o, b is null ? options : options with { Bias = b.Reshape(h, s, s) });
            var oh = o.ToFloatArray();
            var back = new float[oh.Length];
            for (int hh = 0; hh < h; hh++)
                for (int ss = 0; ss < s; ss++)
                    Array.Copy(oh, (ss * h + hh) * d, back, (hh * s + ss) * d, d);
            add(comp, $"{name}.out", g.ReadFloats($"{name}.out"), back, OpTolerance);
        }
    }

    // ------------------------------------------------------------------ components

    private void ClipForward(SafetensorsFile g)
    {
        using var snapshot = Flux1Snapshot.Open(Repo(Dev));
        using var enc = new ClipTextEncoder(snapshot.ClipConfig, snapshot.Clip.Loader(device));
        int[] Ids(string n) => g.ReadInt64(n).Select(v => (int)v).ToArray();
        using (var output = enc.Encode(device, Ids("inputs.input_ids"), (n, t) => { if (g.Contains(n)) Compare("clip", g, n, t, ForwardTolerance); }))
            add("clip", "pooled_index", [g.ReadInt64("pooled_index")[0]], [output.PooledIndex], 0);
        if (g.Contains("full.inputs.input_ids"))
        {
            using var full = enc.Encode(device, Ids("full.inputs.input_ids"));
            Compare("clip", g, "full.last_hidden_state", full.LastHiddenState, ForwardTolerance);
            Compare("clip", g, "full.pooled_output", full.Pooled, ForwardTolerance);
            add("clip", "full.pooled_index", [g.ReadInt64("full.pooled_index")[0]], [full.PooledIndex], 0);
        }
    }

    private void T5Forward(SafetensorsFile g)
    {
        using var snapshot = Flux1Snapshot.Open(Repo(Dev));
        using var enc = new T5Encoder(snapshot.T5Config, snapshot.T5.Loader(device), embeddingWeight: snapshot.T5EmbeddingWeight);
        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        using var _ = enc.Encode(device, ids, (n, t) => { if (g.Contains(n)) Compare("t5", g, n, t, ForwardTolerance); });
        int s = ids.Length;
        if (g.Contains("relative_bias.bucket"))
            add("t5", "relative_bias.bucket", g.ReadInt64("relative_bias.bucket").Select(v => (float)v).ToArray(),
                T5RelativePosition.BucketsOfOffsets(s, s, snapshot.T5Config.RelativeAttentionNumBuckets, snapshot.T5Config.RelativeAttentionMaxDistance).Select(v => (float)v).ToArray(), 0);
    }

    private void Transformer(SafetensorsFile g, string repo, string comp)
    {
        using var snapshot = Flux1Snapshot.Open(Repo(repo));
        var config = snapshot.TransformerConfig;
        using var model = new Flux1Transformer(config, snapshot.Transformer.Loader(device));
        int imgLen = g.Entry("inputs.hidden_states").Shape[1], textLen = g.Entry("inputs.encoder_hidden_states").Shape[1];
        var imgIds = g.ReadFloats("inputs.img_ids");
        int rows = (int)imgIds.Where((_, i) => i % 3 == 1).Max() + 1, cols = imgLen / rows;
        add(comp, "txt_ids + img_ids", [.. g.ReadFloats("inputs.txt_ids"), .. imgIds], Flux1Transformer.PositionIds(textLen, rows, cols).Select(v => (float)v).ToArray(), 0);
        var (cosH, sinH) = model.RopeTables(textLen, rows, cols);
        add(comp, "rope.cos", g.ReadFloats("rope.cos"), cosH, 1e-6);
        add(comp, "rope.sin", g.ReadFloats("rope.sin"), sinH, 1e-6);
        int hd = config.AttentionHeadDim;
        using var hidden = g.LoadF32("inputs.hidden_states", device);
        using var text = g.LoadF32("inputs.encoder_hidden_states", device);
        using var pooled = g.LoadF32("inputs.pooled_projections", device);
        using var cos = Tensor.FromSpan<float>(device, cosH, new Shape(cosH.Length / hd, hd));
        using var sin = Tensor.FromSpan<float>(device, sinH, new Shape(sinH.Length / hd, hd));
        using var output = Tensor.Empty(device, DType.F32, 1, imgLen, config.OutputChannels);
        float[] guidance = config.GuidanceEmbeds ? g.ReadFloats("inputs.guidance") : [];
        var seen = new HashSet<string>();
        model.Forward(hidden, text, pooled, g.ReadFloats("inputs.timestep"), guidance, cos, sin, output, (n, t) =>
        {
            if (g.Contains(n) && seen.Add(n)) Compare(comp, g, n, t, ForwardTolerance);
        });
        foreach (var n in g.Names.Where(n => !n.StartsWith("inputs.", StringComparison.Ordinal) && !n.StartsWith("rope.", StringComparison.Ordinal) && !seen.Contains(n)))
            add(comp, $"{n} (not produced)", [1], [float.NaN], 0);
    }

    private void Vae(SafetensorsFile g)
    {
        using var snapshot = Flux1Snapshot.Open(Repo(Dev));
        using var vae = new AutoencoderKL(snapshot.VaeConfig, snapshot.Vae.Loader(device));
        Action<string, Tensor> collect(string comp) => (n, t) => { if (g.Contains(n) && n is not "dec.output") Compare(comp, g, n, t, ForwardTolerance); };
        var ds = g.Entry("dec.input").Shape;
        using (var latent = g.LoadF32("dec.input", device))
        using (var decoded = vae.Decode(latent.Reshape(ds[1], ds[2], ds[3]), collect("vae decode")))
            Compare("vae decode", g, "dec.output", decoded, ForwardTolerance);
        if (g.Contains("dec_pipeline.latents"))
        {
            var ps = g.Entry("dec_pipeline.latents").Shape;
            using var z = g.LoadF32("dec_pipeline.latents", device);
            using var input = Tensor.Empty(device, DType.F32, ps[1], ps[2], ps[3]);
            vae.LatentsToVaeInput(z.Reshape(ps[1], ps[2], ps[3]), input);
            Compare("vae decode", g, "dec_pipeline.vae_input", input, ForwardTolerance);
            using var decoded = vae.Decode(input);
            Compare("vae decode", g, "dec_pipeline.output", decoded, ForwardTolerance);
        }
        var es = g.Entry("enc.input").Shape;
        using var image = g.LoadF32("enc.input", device);
        using var moments = vae.EncodeMoments(image.Reshape(es[1], es[2], es[3]), collect("vae encode"));
        int c = moments.Shape[0] / 2;
        var m = moments.ToFloatArray();
        int n = m.Length / 2;
        add("vae encode", "enc.mean", g.ReadFloats("enc.mean"), m[..n], ForwardTolerance);
        var logvar = m[n..].Select(v => Math.Clamp(v, -30f, 20f)).ToArray();
        add("vae encode", "enc.logvar", g.ReadFloats("enc.logvar"), logvar, ForwardTolerance);
        add("vae encode", "enc.std", g.ReadFloats("enc.std"), logvar.Select(v => MathF.Exp(0.5f * v)).ToArray(), ForwardTolerance);
        using var mean = Tensor.Empty(device, DType.F32, c, moments.Shape[1], moments.Shape[2]);
        moments.Slice(0, c).CopyTo(mean);
        vae.VaeOutputToLatents(mean, mean);
        Compare("vae encode", g, "enc.pipeline_image_latents", mean, ForwardTolerance);
    }

    // ------------------------------------------------------------------ pipelines

    /// <summary>The file's recorded pipeline call and notes: manifest.json's notes for the file, else the file's own metadata.</summary>
    private (JsonElement Call, string Repo) CallOf(SafetensorsFile g, string file, List<JsonDocument> keep)
    {
        JsonElement? notes = null;
        string manifest = Path.Combine(goldenDir, "manifest.json");
        if (File.Exists(manifest))
        {
            var doc = ReadJson(manifest, "golden manifest");
            keep.Add(doc);
            if (doc.RootElement.TryGetProperty("notes", out var all) && all.TryGetProperty(file, out var n)) notes = n;
        }
        if (notes is null)
        {
            if (!g.Metadata.TryGetValue("golden_notes", out var meta)) throw new InvalidDataException($"{file}: no call recorded (manifest.json notes or the file's golden_notes metadata)");
            var doc = JsonDocument.Parse(meta);
            keep.Add(doc);
            notes = doc.RootElement;
        }
        var callText = notes.Value.GetProperty("call");
        var call = callText.ValueKind == JsonValueKind.String ? JsonDocument.Parse(callText.GetString()!) : JsonDocument.Parse(callText.GetRawText());
        keep.Add(call);
        string repo = notes.Value.TryGetProperty("repo", out var r) ? r.GetString()! : Dev;
        return (call.RootElement, repo);
    }

    private static float? Num(JsonElement call, string name) =>
        call.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble() : null;

    private RgbImage ImageOf(SafetensorsFile g, string name)
    {
        var s = g.Entry(name).Shape;
        return new RgbImage(g.Bytes(name).ToArray(), s[1], s[0]);
    }

    private void Pipeline(SafetensorsFile g, string file)
    {
        string comp = Path.GetFileNameWithoutExtension(file);
        var docs = new List<JsonDocument>();
        try
        {
            var (call, repo) = CallOf(g, file, docs);
            using var snapshot = Flux1Snapshot.Open(Repo(repo));
            var model = new Flux1Model(snapshot, device)
            {
                KontextMaxArea = call.TryGetProperty("max_area", out var ma) ? ma.GetInt64() : 1024 * 1024,
                KontextAutoResize = !call.TryGetProperty("_auto_resize", out var ar) || ar.GetBoolean(),
            };
            using var _ = model;
            RunPipeline(g, comp, model, call);
        }
        finally
        {
            foreach (var d in docs) d.Dispose();
        }
    }

    private void RunPipeline(SafetensorsFile g, string comp, Flux1Model model, JsonElement call)
    {
        TextConditioning Encode(string prefix)
        {
            var clip = g.ReadInt64($"inputs.{prefix}clip_input_ids").Select(v => (int)v).ToArray();
            var t5 = g.ReadInt64($"inputs.{prefix}t5_input_ids").Select(v => (int)v).ToArray();
            var pooled = model.EncodeClip([clip])[0];
            var embeds = model.EncodeT5([t5])[0];
            int dim = embeds.Length / t5.Length;
            return new TextConditioning(Tensor.FromSpan<float>(device, embeds, new Shape(1, t5.Length, dim)),
                pooled: Tensor.FromSpan<float>(device, pooled, new Shape(1, pooled.Length)));
        }
        using var text = Encode("");
        add(comp, "prompt_embeds", g.ReadFloats("prompt_embeds"), text.Embeds.ToFloatArray(), ForwardTolerance);
        add(comp, "pooled_prompt_embeds", g.ReadFloats("pooled_prompt_embeds"), text.Pooled!.ToFloatArray(), ForwardTolerance);
        bool negative = g.Contains("inputs.neg_t5_input_ids");
        using var neg = negative ? Encode("neg_") : null;
        if (neg is not null)
        {
            add(comp, "neg_prompt_embeds", g.ReadFloats("neg_prompt_embeds"), neg.Embeds.ToFloatArray(), ForwardTolerance);
            add(comp, "neg_pooled_prompt_embeds", g.ReadFloats("neg_pooled_prompt_embeds"), neg.Pooled!.ToFloatArray(), ForwardTolerance);
        }

        int steps = (int)(Num(call, "num_inference_steps") ?? 28);
        int width = (int)(Num(call, "width") ?? 1024), height = (int)(Num(call, "height") ?? 1024);
        bool kontext = g.Contains("inputs.reference_image_uint8"), img2img = g.Contains("inputs.init_image_uint8");
        var layout = model.Layout(width, height);
        using (var sampler = model.CreateSampler(SamplerKind.Euler, steps, layout))
        {
            add(comp, "sigmas", g.ReadFloats("sigmas"), sampler.Sigmas, 0);
            add(comp, "timesteps", g.ReadFloats("timesteps"), Enumerable.Range(0, sampler.Calls).Select(sampler.Timestep).ToArray(), 0);
        }
        int textLen = text.Length;
        // Ids: text zeros, then the generated grid (and the reference grid, Kontext).
        int refRows = 0, refCols = 0;
        if (kontext)
        {
            var ri = g.Entry("reference.image_latents").Shape;
            (refRows, refCols) = (ri[2] / 2, ri[3] / 2);
        }
        var ids = Flux1Transformer.PositionIds(textLen, layout.Rows, layout.Cols, refRows, refCols).Select(v => (float)v).ToArray();
        add(comp, "text_ids", g.ReadFloats("text_ids"), ids[..(3 * textLen)], 0);
        add(comp, "img_ids", g.ReadFloats("img_ids"), ids[(3 * textLen)..], 0);

        using var noise = g.Contains("inputs.initial_noise") ? g.LoadF32("inputs.initial_noise", device) : g.Contains("img2img.noise") ? g.LoadF32("img2img.noise", device) : null;
        using var eps = img2img ? g.LoadF32("img2img.posterior_eps", device) : null;
        var job = new GenerationJob
        {
            PromptEmbeds = text,
            NegativePromptEmbeds = neg,
            Noise = noise,
            Width = width,
            Height = height,
            Steps = steps,
            Guidance = model.Snapshot.TransformerConfig.GuidanceEmbeds ? Num(call, "guidance_scale") ?? 3.5f : null,
            TrueCfgScale = Num(call, "true_cfg_scale"),
            ReferenceImages = kontext ? [ImageOf(g, "inputs.reference_image_uint8")] : [],
            InitImage = img2img ? ImageOf(g, "inputs.init_image_uint8") : null,
            Strength = call.TryGetProperty("strength", out var st) ? st.GetDouble() : 0.6,
            InitImagePosteriorNoise = eps,
        };
        float[]? before = null;
        int stepsSeen = 0;
        string[] traced =
        [
            "reference.resized_uint8", "reference.preprocessed", "reference.image_latents", "reference.image_latents_packed",
            "init_image.resized_uint8", "init_image.preprocessed", "img2img.image_latents", "img2img.noised_latents_packed", "vae_input", "decoded_image",
        ];
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Trace = (n, t) =>
            {
                if (n == "latents.initial_packed")
                {
                    before = t.ToFloatArray();
                    string expected = img2img ? "img2img.noised_latents_packed" : "inputs.initial_latents_packed";
                    if (!img2img) add(comp, expected, g.ReadFloats(expected), before, PipelineTolerance);
                }
                else if (traced.Contains(n) && g.Contains(n))
                    Compare(comp, g, n, t, n.EndsWith("uint8", StringComparison.Ordinal) ? 0 : n.StartsWith("decoded", StringComparison.Ordinal) || n == "vae_input" ? PipelineTolerance : ForwardTolerance);
            },
            OnStep = r =>
            {
                stepsSeen++;
                string p = $"step.{r.Step}.";
                int s = r.Latents.Shape[1], c = r.Latents.Shape[2];
                add(comp, p + "t", g.ReadFloats(p + "t"), [r.Timestep], 0);
                add(comp, p + "transformer_in.timestep", g.ReadFloats(p + "transformer_in.timestep"), [r.Timestep / 1000f], 0);
                if (before is not null) add(comp, p + "latents_before", g.ReadFloats(p + "latents_before"), before, PipelineTolerance);
                // transformer_out is the raw output; Kontext's also has the reference rows, which the engine never computes.
                add(comp, p + "transformer_out", g.ReadFloats(p + "transformer_out").AsSpan(0, s * c).ToArray(), r.Cond.ToFloatArray(), PipelineTolerance);
                if (r.Uncond is not null || g.Contains(p + "transformer_out_uncond"))
                    add(comp, p + "transformer_out_uncond", g.ReadFloats(p + "transformer_out_uncond"), r.Uncond?.ToFloatArray() ?? [], PipelineTolerance);
                add(comp, p + "noise_pred", g.ReadFloats(p + "noise_pred"), r.Prediction.ToFloatArray(), PipelineTolerance);
                before = r.Latents.ToFloatArray();
                add(comp, p + "latents_after", g.ReadFloats(p + "latents_after"), before, PipelineTolerance);
            },
        });
        if (before is not null) add(comp, "final_latents_packed", g.ReadFloats("final_latents_packed"), before, PipelineTolerance);
        int expectedSteps = g.Names.Count(n => n.StartsWith("step.", StringComparison.Ordinal) && n.EndsWith(".latents_after", StringComparison.Ordinal));
        add(comp, "steps run", [expectedSteps], [stepsSeen], 0);
        if (g.Contains("guidance")) add(comp, "guidance", g.ReadFloats("guidance"), [result.EmbeddedGuidance ?? float.NaN], 0);
        var expected8 = g.ReadFloats("image_uint8");
        var actual8 = result.Image(0).Rgb.Select(b => (float)b).ToArray();
        // 8-bit pixels may differ by one where a value sits on a rounding boundary.
        add(comp, "image_uint8 (±1)", expected8, actual8, 1.0 / 255 + 1e-9);
    }
}
