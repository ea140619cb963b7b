using System.Text.Json;
using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Engine;
using PureFlux.Model.Qwen3;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Vae;

namespace PureFlux.Model.Verification;

/// <summary>One compared tensor: max |actual − expected|, that relative to max |expected|, and the tolerance.</summary>
public sealed record VerifyRow(string Component, string Tensor, double MaxAbs, double Relative, double Tolerance)
{
    public bool Passed => Relative <= Tolerance && !double.IsNaN(Relative);
}

/// <summary>
/// Runs every component of a golden set (the layout of PureFlux's tests/golden: model/ +
/// text_encoder_forward, transformer_forward, vae_forward, pipeline_h*_w*.safetensors + scheduler.json)
/// on a device and compares each checked tensor. Tolerances are relative to the tensor's max magnitude:
/// 2e-4 for one forward of a component, 1e-3 for the 4-step pipeline, exact for the scheduler.
/// </summary>
public sealed class GoldenVerifier(string goldenDir, Device device, string? tokenizerPath = null)
{
    public const double ForwardTolerance = 2e-4, PipelineTolerance = 1e-3;
    private readonly List<VerifyRow> _rows = new();

    public IReadOnlyList<VerifyRow> Rows => _rows;

    public IReadOnlyList<VerifyRow> Run(Action<string>? progress = null)
    {
        // What the manifest lists must be present: each missing file, tensor or case (and NaN/Inf in golden data) is a
        // failing row, and a file with missing tensors is not run (its rows could not all be compared).
        var manifest = GoldenManifest.Load(goldenDir);
        HashSet<string> incomplete = new(StringComparer.Ordinal);
        if (manifest is null)
            _rows.Add(new VerifyRow(GoldenManifest.FileName, "missing: without it a missing golden file or tensor cannot be told from a passing one", double.NaN, double.NaN, 0));
        else
            _rows.AddRange(manifest.Check(out incomplete));
        bool Usable(string file) => File.Exists(Path.Combine(goldenDir, file)) && !incomplete.Contains(file);

        if (SamplingSet.IsSamplingSet(goldenDir))
        {
            var set = new SamplingSet(goldenDir, device, Add, Collect);
            foreach (var missing in set.Listed.Where(f => !File.Exists(Path.Combine(goldenDir, f)) && !_rows.Any(r => r.Component == f)))
                _rows.Add(new VerifyRow(missing, "file missing (listed in manifest.json)", double.NaN, double.NaN, 0));
            foreach (var name in set.Files.Where(Usable))
            {
                progress?.Invoke(Path.GetFileNameWithoutExtension(name));
                Guard(name, () => set.Verify(name));
            }
            if (_rows.Count == 0) throw new IOException($"{goldenDir}: the sampling set's manifest lists no file this verifier knows");
            return _rows;
        }
        if (ZImage.ZImageGoldenSet.IsZImageSet(goldenDir))
        {
            var z = new ZImage.ZImageGoldenSet(goldenDir, device, Add, tokenizerPath);
            foreach (var name in z.Files().Where(Usable))
            {
                progress?.Invoke(Path.GetFileNameWithoutExtension(name));
                Guard(name, () => z.Verify(name));
            }
            if (_rows.Count == 0) throw new IOException($"{goldenDir}: no golden files found (expected *_forward.safetensors, pipeline_*.safetensors, scheduler.json)");
            return _rows;
        }
        if (QwenImage.QwenImageGoldenSet.IsQwenImageSet(goldenDir))
        {
            var q = new QwenImage.QwenImageGoldenSet(goldenDir, device, Add, tokenizerPath);
            foreach (var name in q.Files().Where(Usable))
            {
                progress?.Invoke(Path.GetFileNameWithoutExtension(name));
                Guard(name, () => q.Verify(name));
            }
            if (_rows.Count == 0) throw new IOException($"{goldenDir}: no golden files found (expected *_forward.safetensors, pipeline_*.safetensors, scheduler.json)");
            return _rows;
        }
        if (Flux1.Flux1GoldenSet.IsFlux1Set(goldenDir))
        {
            var f1 = new Flux1.Flux1GoldenSet(goldenDir, device, Add, tokenizerPath);
            foreach (var name in f1.Files().Where(Usable))
            {
                progress?.Invoke(Path.GetFileNameWithoutExtension(name));
                Guard(name, () => f1.Verify(name));
            }
            if (_rows.Count == 0) throw new IOException($"{goldenDir}: no golden files found (expected *_forward.safetensors, pipeline_*.safetensors, scheduler.json)");
            return _rows;
        }
        string modelDir = Path.Combine(goldenDir, "model");
        using var snapshot = ModelSnapshot.Open(modelDir);
        string F(string name) => Path.Combine(goldenDir, name);

        if (Usable("scheduler.json")) { progress?.Invoke("scheduler"); Guard("scheduler.json", () => Scheduler(snapshot, F("scheduler.json"))); }
        if (Usable("text_encoder_forward.safetensors")) { progress?.Invoke("text encoder"); Guard("text_encoder_forward.safetensors", () => TextEncoder(snapshot, F("text_encoder_forward.safetensors"))); }
        if (Usable("transformer_forward.safetensors")) { progress?.Invoke("transformer"); Guard("transformer_forward.safetensors", () => Transformer(snapshot, F("transformer_forward.safetensors"))); }
        if (Usable("vae_forward.safetensors")) { progress?.Invoke("vae"); Guard("vae_forward.safetensors", () => Vae(snapshot, F("vae_forward.safetensors"))); }
        var pipelines = Directory.EnumerateFiles(goldenDir, "pipeline_h*_w*.safetensors").Select(Path.GetFileName)
            .Concat(manifest?.Files.Where(f => f.StartsWith("pipeline_", StringComparison.Ordinal) && f.EndsWith(".safetensors", StringComparison.Ordinal)) ?? [])
            .Distinct().Order(StringComparer.Ordinal);
        foreach (var file in pipelines.Where(f => Usable(f!)))
        {
            progress?.Invoke(Path.GetFileNameWithoutExtension(file)!);
            Guard(file!, () => Pipeline(snapshot, F(file!)));
        }
        if (_rows.Count == 0) throw new IOException($"{goldenDir}: no golden files found (expected *_forward.safetensors, pipeline_*.safetensors, scheduler.json)");
        return _rows;
    }

    /// <summary>Runs one golden file; damaged data that stops it midway (a tensor or field it needs) is a failing row, not a crash.</summary>
    private void Guard(string file, Action run)
    {
        try { run(); }
        catch (Exception e) when (e is SafetensorsException or SnapshotException or IOException or JsonException or KeyNotFoundException
                                      or InvalidOperationException or FormatException or NonFiniteException)
        {
            _rows.Add(new VerifyRow(file, $"not verified: {e.Message.ReplaceLineEndings(" ")}", double.NaN, double.NaN, 0));
        }
    }

    /// <summary>Runs one file of a sampling set (tests use this to run each case on each backend).</summary>
    public IReadOnlyList<VerifyRow> RunSamplingFile(string fileName)
    {
        new SamplingSet(goldenDir, device, Add, Collect).Verify(fileName);
        return _rows;
    }

    private void Add(string component, string name, float[] expected, float[] actual, double tol)
    {
        if (expected.Length != actual.Length)
        {
            _rows.Add(new VerifyRow(component, $"{name} (size {actual.Length} vs {expected.Length})", double.NaN, double.NaN, tol));
            return;
        }
        // NaN or ±∞ on either side is a failure whatever the other side holds (∞ − ∞ would otherwise compare as NaN,
        // and a NaN in the reference would make every difference meaningless).
        long badExpected = expected.LongCount(v => !float.IsFinite(v)), badActual = actual.LongCount(v => !float.IsFinite(v));
        if (badExpected + badActual > 0)
        {
            string where = badExpected > 0 && badActual > 0 ? $"{badExpected} in the golden data, {badActual} computed"
                : badExpected > 0 ? $"{badExpected} in the golden data" : $"{badActual} computed";
            _rows.Add(new VerifyRow(component, $"{name} (NaN/Inf: {where})", double.NaN, double.NaN, tol));
            return;
        }
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(d)) d = double.PositiveInfinity;
            maxDiff = Math.Max(maxDiff, d);
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        _rows.Add(new VerifyRow(component, name, maxDiff, maxRef == 0 ? maxDiff : maxDiff / maxRef, tol));
    }

    private Action<string, Tensor> Collect(string component, SafetensorsFile golden, double tol, Func<string, string?>? map = null) => (name, t) =>
    {
        string? g = map is null ? name : map(name);
        if (g is not null && golden.Contains(g)) Add(component, g, golden.ReadFloats(g), t.ToFloatArray(), tol);
    };

    private void Scheduler(ModelSnapshot snapshot, string path)
    {
        // A golden file is data: every problem is one line naming the file and the field (exit 1), never a raw exception.
        byte[] bytes = RegularFile.ReadAllBytes(path, 64 << 20, "golden scheduler file", m => new InvalidDataException(m));
        if (RegularFile.InvalidUtf8Offset(bytes) is var bad and >= 0) throw new InvalidDataException($"{path}: not valid UTF-8 text (byte {bad})");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.ReplaceLineEndings(" ")})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("cases", out var cases) || cases.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: expected an object with a \"cases\" array ({{\"num_inference_steps\", \"width\", \"height\", \"sigmas\", \"timesteps\"}} per case)");
        if (cases.GetArrayLength() == 0) throw new InvalidDataException($"{path}: field 'cases' is empty; expected at least one case");
        int index = 0;
        foreach (var c in cases.EnumerateArray())
        {
            string at = $"cases[{index++}]";
            if (c.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: field '{at}' is not an object");
            int steps = CaseInt(path, c, at, "num_inference_steps", 1, 1000);
            int w = CaseInt(path, c, at, "width", 16, 16384), h = CaseInt(path, c, at, "height", 16, 16384);
            var s = FlowMatchEulerScheduler.ForKlein(snapshot.SchedulerConfig, steps, w, h);
            string key = $"{steps} steps {w}x{h}";
            Add("scheduler", $"sigmas ({key})", CaseFloats(path, c, at, "sigmas"), s.Sigmas, 0);
            Add("scheduler", $"timesteps ({key})", CaseFloats(path, c, at, "timesteps"), s.Timesteps, 0);
        }

        static int CaseInt(string path, JsonElement c, string at, string name, int min, int max) =>
            c.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x) && x >= min && x <= max ? x
            : throw new InvalidDataException($"{path}: field '{at}.{name}' is {(c.TryGetProperty(name, out var raw) ? Shown(raw) : "missing")}; expected an integer in {min}..{max}");

        static float[] CaseFloats(string path, JsonElement c, string at, string name)
        {
            if (!c.TryGetProperty(name, out var v) || v.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{path}: field '{at}.{name}' is {(c.TryGetProperty(name, out var raw) ? Shown(raw) : "missing")}; expected an array of numbers");
            var result = new float[v.GetArrayLength()];
            int i = 0;
            foreach (var x in v.EnumerateArray())
            {
                if (x.ValueKind != JsonValueKind.Number || !x.TryGetDouble(out double d) || !double.IsFinite(d))
                    throw new InvalidDataException($"{path}: field '{at}.{name}[{i}]' is {Shown(x)}; expected a finite number");
                result[i++] = (float)d;
            }
            return result;
        }

        static string Shown(JsonElement v)
        {
            string raw = v.GetRawText().ReplaceLineEndings(" ");
            return raw.Length > 40 ? raw[..37] + "..." : raw;
        }
    }

    private static float[] Floats(JsonElement e, string name) => e.GetProperty(name).EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();

    private void TextEncoder(ModelSnapshot snapshot, string path)
    {
        using var g = SafetensorsFile.Open(path);
        var cfg = snapshot.TextEncoderConfig;
        int[] layers = Flux2.Flux2KleinModel.DefaultTextLayers(cfg.NumHiddenLayers);
        using var enc = new Qwen3TextEncoder(cfg, snapshot.TextEncoder.Loader(device), layers);
        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        byte[] mask = g.ReadInt64("inputs.attention_mask").Select(v => (byte)v).ToArray();
        using var _ = enc.Encode(device, ids, mask, Collect("text encoder", g, ForwardTolerance));
    }

    private void Transformer(ModelSnapshot snapshot, string path)
    {
        using var g = SafetensorsFile.Open(path);
        using var model = new Flux2Transformer(snapshot.TransformerConfig, snapshot.Transformer.Loader(device));
        var hs = g.Entry("inputs.hidden_states").Shape;
        var ts = g.Entry("inputs.encoder_hidden_states").Shape;
        int imgLen = hs[1], textLen = ts[1], hd = model.Config.AttentionHeadDim;
        var imgIds = g.ReadInt64("inputs.img_ids");
        int gridH = (int)imgIds.Where((_, i) => i % 4 == 1).Max() + 1, gridW = imgLen / gridH;
        var (cosH, sinH) = model.RopeTables(textLen, gridH, gridW);
        Add("transformer", "rope.concat.cos", g.ReadFloats("rope.concat.cos"), cosH, 1e-6);
        Add("transformer", "rope.concat.sin", g.ReadFloats("rope.concat.sin"), sinH, 1e-6);
        using var hidden = g.LoadF32("inputs.hidden_states", device);
        using var text = g.LoadF32("inputs.encoder_hidden_states", device);
        using var cos = Tensor.FromSpan<float>(device, cosH, new Shape(cosH.Length / hd, hd));
        using var sin = Tensor.FromSpan<float>(device, sinH, new Shape(sinH.Length / hd, hd));
        using var output = Tensor.Empty(device, DType.F32, imgLen, model.Config.OutputChannels);
        model.Forward(hidden.Reshape(imgLen, hs[2]), text.Reshape(textLen, ts[2]), g.ReadFloats("inputs.timestep")[0], cos, sin, output,
            Collect("transformer", g, ForwardTolerance));
    }

    private void Vae(ModelSnapshot snapshot, string path)
    {
        using var g = SafetensorsFile.Open(path);
        using var vae = new AutoencoderKL(snapshot.VaeConfig, snapshot.Vae.Loader(device));
        var ds = g.Entry("dec.input").Shape;
        using (var latent = g.LoadF32("dec.input", device))
        using (vae.Decode(latent.Reshape(ds[1], ds[2], ds[3]), Collect("vae decode", g, ForwardTolerance))) { }
        var es = g.Entry("enc.input").Shape;
        using var input = g.LoadF32("enc.input", device);
        using var mean = vae.EncodeMean(input.Reshape(es[1], es[2], es[3]), Collect("vae encode", g, ForwardTolerance));
        Add("vae encode", "enc.latent_mean", g.ReadFloats("enc.latent_mean"), mean.ToFloatArray(), ForwardTolerance);
        int c = mean.Shape[0], h = mean.Shape[1], w = mean.Shape[2];
        using var patched = Tensor.Empty(device, DType.F32, 4 * c, h / 2, w / 2);
        Latents.Patchify(mean, patched);
        using var normed = Tensor.Empty(device, DType.F32, 4 * c, h / 2, w / 2);
        vae.Flux2Stats!.Normalize(patched, normed);
        Add("vae encode", "enc.pipeline_image_latents", g.ReadFloats("enc.pipeline_image_latents"), normed.ToFloatArray(), ForwardTolerance);
    }

    private void Pipeline(ModelSnapshot snapshot, string path)
    {
        using var g = SafetensorsFile.Open(path);
        string comp = Path.GetFileNameWithoutExtension(path);
        var noiseShape = g.Entry("inputs.initial_noise").Shape;
        int h = noiseShape[2], w = noiseShape[3];
        using var model = new Flux2KleinModel(snapshot, device);
        int[] ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        int[] mask = g.ReadInt64("inputs.attention_mask").Select(v => (int)v).ToArray();
        var embeds = model.EncodePrompt(ids, mask);
        using var text = new TextConditioning(embeds.Reshape(1, embeds.Shape[0], embeds.Shape[1]));
        int steps = g.Entry("timesteps").Shape[0];
        using var sampler = model.CreateSampler(SamplerKind.Euler, steps, model.Layout(16 * w, 16 * h));
        Add(comp, "sigmas", g.ReadFloats("sigmas"), sampler.Sigmas, 0);
        using var noise = g.LoadF32("inputs.initial_noise", device);
        var job = new GenerationJob { PromptEmbeds = text, Noise = noise, Width = 16 * w, Height = 16 * h, Steps = steps };
        var trace = Collect(comp, g, PipelineTolerance);
        GenerationEngine.Run(model, job, new GenerationHooks
        {
            Trace = (n, t) => { if (n == "prompt_embeds") Add(comp, n, g.ReadFloats(n), t.ToFloatArray(), ForwardTolerance); else trace(n, t); },
            OnStep = r =>
            {
                Add(comp, $"step.{r.Step}.noise_pred", g.ReadFloats($"step.{r.Step}.noise_pred"), r.Prediction.ToFloatArray(), PipelineTolerance);
                Add(comp, $"step.{r.Step}.latents_after", g.ReadFloats($"step.{r.Step}.latents_after"), r.Latents.ToFloatArray(), PipelineTolerance);
            },
        });
    }
}
