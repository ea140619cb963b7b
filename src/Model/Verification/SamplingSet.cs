using PureFlux.Model.Config;
using System.Text.Json;
using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Image;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;

namespace PureFlux.Model.Verification;

/// <summary>
/// The "sampling" golden set (samplers, CFG, reference images, batches): model-free scheduler sequences and whole
/// pipeline runs of the klein model in <c>../model</c>, each run rebuilt from the call its manifest records
/// (prompts, sizes, steps, guidance, is_distilled, images per prompt, text layers, scheduler class and kwargs, noise,
/// reference images) and run through the one <see cref="GenerationEngine"/> loop.
/// Tolerances: timesteps and sigmas exact; sampler samples 1e-6 relative; pipelines 1e-3 (forwards 2e-4).
/// </summary>
internal sealed class SamplingSet(string dir, Device device, Action<string, string, float[], float[], double> add,
    Func<string, SafetensorsFile, double, Func<string, string?>?, Action<string, Tensor>> collect)
{
    public const double SamplerTolerance = 1e-6;
    private readonly JsonElement _manifest = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "manifest.json"))).RootElement;

    public static bool IsSamplingSet(string dir) =>
        File.Exists(Path.Combine(dir, "manifest.json")) && File.Exists(Path.Combine(dir, "schedulers.safetensors"));

    /// <summary>Every file the manifest lists that this verifier checks (schedulers and pipeline runs), in manifest order.</summary>
    /// <summary>Files the manifest lists (every one must be present: a missing file is a failure, not a skip).</summary>
    public IEnumerable<string> Listed => _manifest.GetProperty("files").EnumerateObject().Select(p => p.Name);

    public IEnumerable<string> Files => _manifest.GetProperty("notes").EnumerateObject()
        .Select(p => p.Name).Where(n => n == "schedulers.safetensors" || Call(n) is not null);

    private JsonElement? Call(string file) =>
        _manifest.GetProperty("notes").TryGetProperty(file, out var n) && n.TryGetProperty("call", out var c)
            ? JsonDocument.Parse(c.GetString()!).RootElement : null;

    private string ModelDir => Path.GetFullPath(Path.Combine(dir, "..", "model"));

    public void Verify(string file)
    {
        string path = Path.Combine(dir, file);
        if (!File.Exists(path)) throw new IOException($"{path}: listed in manifest.json but missing");
        if (file == "schedulers.safetensors") Schedulers(path);
        else Pipeline(path, Call(file) ?? throw new IOException($"{dir}/manifest.json: no call recorded for {file}"));
    }

    // ------------------------------------------------------------------ model-free sampler sequences

    private void Schedulers(string path)
    {
        using var g = SafetensorsFile.Open(path);
        var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "schedulers.json"))).RootElement;
        foreach (var run in json.GetProperty("runs").EnumerateObject())
        {
            // run name: {case}.n{N}
            string name = run.Name;
            int n = int.Parse(name[(name.LastIndexOf(".n", StringComparison.Ordinal) + 2)..]);
            var ctor = json.GetProperty("cases_constructor_kwargs").GetProperty(run.Value.GetProperty("case").GetString()!);
            var settings = Settings(ctor.GetProperty("class").GetString()!, ctor.GetProperty("kwargs"), ctor.GetProperty("set_timesteps").GetString()!);
            var st = run.Value.GetProperty("set_timesteps");
            double? mu = st.TryGetProperty("mu", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetDouble() : null;
            using var sampler = Samplers.Create(settings, n, mu);
            string comp = "scheduler " + name;
            add(comp, "timesteps", g.ReadFloats(name + ".timesteps"), sampler.Timesteps.Select(t => (float)t).ToArray(), 0);
            add(comp, "sigmas", g.ReadFloats(name + ".sigmas"), sampler.Sigmas, 0);
            var outputs = g.ReadFloats($"inputs.n{n}.model_outputs");
            var shape = g.Entry($"inputs.n{n}.sample").Shape;
            int count = (int)shape.Count;
            using var sample = g.LoadF32($"inputs.n{n}.sample", device);
            using var output = Tensor.Empty(device, DType.F32, new Shape(shape.ToArray()));
            var expected = g.ReadFloats(name + ".samples");
            for (int call = 0; call < sampler.Calls; call++)
            {
                output.CopyFrom<float>(outputs.AsSpan(call * count, count));
                sampler.Step(call, output, sample);
                add(comp, $"samples[{call}]", expected.AsSpan(call * count, count).ToArray(), sample.ToFloatArray(), SamplerTolerance);
            }
        }
    }

    // ------------------------------------------------------------------ pipeline runs

    private void Pipeline(string path, JsonElement call)
    {
        using var g = SafetensorsFile.Open(path);
        string comp = Path.GetFileNameWithoutExtension(path);
        var layers = call.GetProperty("text_encoder_out_layers").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        using var snapshot = ModelSnapshot.Open(ModelDir);
        using var model = new Flux2KleinModel(snapshot, device, new ModelOptions { TextLayers = layers, GuidanceDistilled = call.GetProperty("is_distilled").GetBoolean() });

        var promptNames = call.GetProperty("prompt") is { ValueKind: JsonValueKind.Array } list
            ? list.EnumerateArray().Select(p => p.GetString()!).ToArray() : [call.GetProperty("prompt").GetString()!];
        using var cond = Encode(model, g, promptNames.Select(p => "inputs." + p.ToLowerInvariant().Replace(' ', '_')).ToArray());
        bool cfg = call.GetProperty("cfg").GetBoolean();
        using var uncond = cfg ? Encode(model, g, promptNames.Select(_ => "inputs.negative").ToArray()) : null;

        var scheduler = call.GetProperty("scheduler");
        var settings = Settings(scheduler.GetProperty("class").GetString()!, scheduler.GetProperty("kwargs"), "klein");
        string noiseName = g.Contains("inputs.latents") ? "inputs.latents" : "noise.randn";
        using var noise = g.LoadF32(noiseName, device);
        var refs = new List<RgbImage>();
        for (int i = 0; g.Contains($"ref.{i}.input_uint8"); i++)
        {
            var e = g.Entry($"ref.{i}.input_uint8");
            refs.Add(new RgbImage(g.Bytes(e.Name).ToArray(), e.Shape[1], e.Shape[0]));
        }
        int? Size(string key) => call.GetProperty(key).ValueKind == JsonValueKind.Number ? call.GetProperty(key).GetInt32() : null;
        var job = new GenerationJob
        {
            PromptEmbeds = cond,
            NegativePromptEmbeds = uncond,
            ImagesPerPrompt = call.GetProperty("num_images_per_prompt").GetInt32(),
            Width = Size("width"),
            Height = Size("height"),
            Steps = call.GetProperty("num_inference_steps").GetInt32(),
            Guidance = call.GetProperty("guidance_scale").GetSingle(),
            SamplerSettings = settings,
            Noise = noise,
            ReferenceImages = refs,
        };

        var tol = GoldenVerifier.PipelineTolerance;
        var trace = collect(comp, g, tol, name => name switch
        {
            "prompt_embeds" or "negative_prompt_embeds" or "latents.initial_packed" or "latents_for_vae" or "decoded_image" or "ref.packed" => name,
            _ when name.StartsWith("ref.", StringComparison.Ordinal) => name,
            _ => null,
        });
        var result = GenerationEngine.Run(model, job, new GenerationHooks
        {
            Trace = trace,
            OnStep = r =>
            {
                void Cmp(string n, Tensor? t)
                {
                    if (t is null) { add(comp, $"step.{r.Call}.{n} (not computed)", g.ReadFloats($"step.{r.Call}.{n}"), [], tol); return; }
                    add(comp, $"step.{r.Call}.{n}", g.ReadFloats($"step.{r.Call}.{n}"), t.ToFloatArray(), tol);
                }
                add(comp, $"step.{r.Call}.transformer_timestep", g.ReadFloats($"step.{r.Call}.transformer_timestep"),
                    Enumerable.Repeat(r.ModelTimestep, r.Latents.Shape[0]).ToArray(), 0);
                Cmp("noise_pred_cond", r.Cond);
                if (g.Contains($"step.{r.Call}.noise_pred_uncond")) Cmp("noise_pred_uncond", r.Uncond);
                Cmp("noise_pred", r.Prediction);
                Cmp("latents", r.Latents);
            },
        });
        // The sampler's schedule as the pipeline set it (timesteps exact, int64 for DPM/UniPC).
        var layout = model.Layout(result.Width, result.Height);
        using (var sampler = model.CreateSampler(result.Sampler, result.Steps, layout, settings))
        {
            add(comp, "timesteps", g.ReadFloats("timesteps"), sampler.Timesteps.Select(t => (float)t).ToArray(), 0);
            add(comp, "sigmas", g.ReadFloats("sigmas"), sampler.Sigmas, 0);
        }
        add(comp, "image_pt", g.ReadFloats("image_pt"), result.Decoded.Select(x => Math.Clamp(x / 2f + 0.5f, 0f, 1f)).ToArray(), tol);
    }

    /// <summary>
    /// A diffusers scheduler (class + constructor kwargs) as sampler settings; <paramref name="setTimesteps"/> is how it
    /// was driven: "klein" (Euler: the pipeline's custom sigmas), "plain" (set_timesteps(N)) or "mu" (flow sigmas + mu).
    /// A key we do not implement with a non-default value is an error, not ignored.
    /// </summary>
    internal static SamplerSettings Settings(string className, JsonElement kwargs, string setTimesteps)
    {
        double D(string key, double def) => kwargs.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : def;
        bool B(string key, bool def) => kwargs.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : def;
        string S(string key, string def) => kwargs.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : def;
        void Expect(string key, string expected)
        {
            if (kwargs.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null && v.ToString() != expected)
                throw new NotSupportedException($"{className}: {key} = {v} is not supported (expected {expected})");
        }
        int train = (int)D("num_train_timesteps", 1000);
        switch (className)
        {
            case "FlowMatchEulerDiscreteScheduler":
                // The kwargs are a FlowMatchEulerDiscreteScheduler config: the project's own reader and settings apply.
                return SamplerSettings.FromSchedulerConfig(SchedulerConfig.Parse(kwargs.GetRawText(), $"{className} kwargs")) with
                {
                    EulerSigmas = setTimesteps == "plain" ? EulerSigmasMode.Plain : EulerSigmasMode.Klein,
                };
            case "DPMSolverMultistepScheduler" or "UniPCMultistepScheduler":
                bool dpm = className.StartsWith("DPM", StringComparison.Ordinal);
                Expect("prediction_type", "flow_prediction");
                Expect("use_flow_sigmas", "True");
                Expect("final_sigmas_type", "zero");
                if (dpm) { Expect("algorithm_type", "dpmsolver++"); Expect("solver_type", "midpoint"); Expect("euler_at_final", "False"); }
                else { Expect("solver_type", "bh2"); Expect("predict_x0", "True"); }
                return new SamplerSettings
                {
                    Kind = dpm ? SamplerKind.DpmPP2M : SamplerKind.UniPC, NumTrainTimesteps = train, Shift = D("flow_shift", 1.0),
                    UseDynamicShifting = B("use_dynamic_shifting", false), TimeShiftType = S("time_shift_type", "exponential"),
                    SolverOrder = (int)D("solver_order", 2), LowerOrderFinal = B("lower_order_final", true),
                };
            case "FlowMatchHeunDiscreteScheduler":
                return new SamplerSettings { Kind = SamplerKind.Heun, NumTrainTimesteps = train, Shift = D("shift", 1.0) };
            default:
                throw new NotSupportedException($"scheduler class {className} is not supported; supported: FlowMatchEulerDiscreteScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, FlowMatchHeunDiscreteScheduler");
        }
    }

    /// <summary>Rows of prompt embeddings from the stored token ids (inputs.{name}.input_ids / attention_mask), one per prompt.</summary>
    private static TextConditioning Encode(Flux2KleinModel model, SafetensorsFile g, string[] names)
    {
        var rows = names.Select(n =>
        {
            int[] ids = g.ReadInt64(n + ".input_ids").Select(v => (int)v).ToArray();
            int[] mask = g.ReadInt64(n + ".attention_mask").Select(v => (int)v).ToArray();
            var e = model.EncodePrompt(ids, mask);
            return new TextConditioning(e.Reshape(1, e.Shape[0], e.Shape[1]));
        }).ToArray();
        try { return TextConditioning.Concat(rows); }
        finally { foreach (var r in rows) r.Dispose(); }
    }
}
