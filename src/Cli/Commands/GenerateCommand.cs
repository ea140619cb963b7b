using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using PureFlux.Cli.Progress;
using PureFlux.Model.Engine;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Scheduler;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux generate [--model DIR] --prompt TEXT [--prompt TEXT ...] [--width --height --steps --seed --out --device
/// --quant --sampler --guidance --negative-prompt --cfg-mode --guidance-interval --cfg-rescale --ref-image FILE ...
/// --batch-size --text-layers -v --prompt-cache DIR | --no-prompt-cache --allow-nonfinite]</c>: text (and reference images) to PNG through
/// the one generation loop. Without --model it runs the small built-in model. The model family is detected from the
/// snapshot's model_index.json.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string?>("--model", "-m") { Description = "Diffusers snapshot directory (default: the small built-in random FLUX.2 klein model)" };
        var prompt = new Option<string[]>("--prompt", "-p") { Description = "What to draw; repeat for several prompts in one batch", Required = true };
        var negative = new Option<string[]>("--negative-prompt", "-n") { Description = "Negative prompt for classifier-free guidance (one, or one per --prompt; default \"\")" };
        var width = new Option<int?>("--width", "-W") { Description = "Width in pixels, a multiple of 16 (default: the first --ref-image's size, else 1024)" };
        var height = new Option<int?>("--height", "-H") { Description = "Height in pixels, a multiple of 16 (default: the first --ref-image's size, else 1024)" };
        var steps = new Option<int?>("--steps", "-s") { Description = "Denoising steps (default: the model's: 4 distilled klein, 50 klein base, 8 Z-Image)" };
        var seed = new Option<ulong>("--seed") { Description = "Noise seed; image i of a batch uses seed + i", DefaultValueFactory = _ => 42 };
        var output = new Option<string>("--out", "-o") { Description = "PNG file to write (a batch writes NAME-0.png, NAME-1.png, ...)", DefaultValueFactory = _ => "out.png" };
        var quant = new Option<string>("--quant", "-q") { Description = "Weights: none (as stored, BF16), int8, int4, fp8-e4m3 or fp8-e5m2", DefaultValueFactory = _ => "none" };
        var sampler = new Option<string?>("--sampler") { Description = "euler, dpm++2m, unipc or heun (default: the model's, euler for klein)" };
        var guidance = new Option<float?>("--guidance", "-g") { Description = "Classifier-free guidance scale; turns CFG on above 1 (klein: u + g(c − u)) or above 0 (Z-Image: c + g(c − u)); default: the model's (4 klein base, 0 Z-Image-Turbo; distilled klein ignores it). FLUX.1 dev / Kontext: the embedded guidance (model input, default 3.5; CFG is --true-cfg)" };
        var cfgMode = new Option<string>("--cfg-mode") { Description = "sequential (two passes per step, as diffusers) or batched (one batch-2 pass)", DefaultValueFactory = _ => "sequential" };
        var interval = new Option<string?>("--guidance-interval") { Description = "LO,HI: run the unconditional pass only while LO ≤ σ ≤ HI (0 ≤ LO ≤ HI ≤ 1)" };
        var rescale = new Option<float>("--cfg-rescale") { Description = "CFG-rescale φ in [0, 1] (std matching; 0 = off)", DefaultValueFactory = _ => 0f };
        var truncation = new Option<float?>("--guidance-truncation") { Description = "Z-Image's cfg_truncation: no guidance once t = 1 − σ exceeds this (≥ 1 = never)" };
        var normClip = new Option<float>("--guidance-norm-clip") { Description = "Z-Image's cfg_normalization: clip the guided prediction's norm to this × the conditional one's (0 = off)", DefaultValueFactory = _ => 0f };
        var weightsBf16 = new Option<bool>("--weights-bf16") { Description = "Hold F32 transformer weights as BF16 (converted while loading; Z-Image does this by itself when F32 would not fit)" };
        var refImages = new Option<string[]>("--ref-image", "-r") { Description = "Reference image (PNG/JPEG) for editing; repeat for several, in order (FLUX.1 Kontext: one)" };
        var trueCfg = new Option<float?>("--true-cfg") { Description = "FLUX.1: classifier-free guidance scale u + s(c − u) with --negative-prompt (diffusers' true_cfg_scale; on above 1); --guidance is then the embedded guidance (default 3.5)" };
        var maxArea = new Option<long?>("--max-area") { Description = "FLUX.1 Kontext: refit the output to this many pixels at the requested aspect ratio (diffusers' max_area; default 1048576 = 1024²)" };
        var keepRefSize = new Option<bool>("--keep-ref-size") { Description = "FLUX.1 Kontext: keep the reference image's own size (rounded down to 16) instead of resizing it to the preferred ~1 MP resolution (diffusers' _auto_resize=False)" };
        var initImage = new Option<string?>("--init-image") { Description = "Image-to-image: start from this image (PNG/JPEG; the output size defaults to its size rounded down to 16)" };
        var strength = new Option<double>("--strength") { Description = "Image-to-image strength in (0, 1]: how much of the schedule runs (diffusers' strength)", DefaultValueFactory = _ => 0.6 };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per prompt", DefaultValueFactory = _ => 1 };
        var textLayers = new Option<string?>("--text-layers") { Description = "Text-encoder hidden states to stack, e.g. 9,18,27 (diffusers' text_encoder_out_layers; default: the model's)" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Print per-stage times and peak memory" };
        var promptCache = new Option<string?>("--prompt-cache")
        {
            Description = "Directory of encoded prompts: a prompt used before skips the text encoder (default: $PUREFLUX_CACHE/prompts, ~/.cache/pureflux/prompts)",
        };
        var noPromptCache = new Option<bool>("--no-prompt-cache") { Description = "Always run the text encoder; read and write no prompt cache" };
        var allowNonFinite = new Option<bool>("--allow-nonfinite")
        {
            Description = "Warn instead of failing when the latents or the decoded image contain NaN/Inf (for experiments; the image is then wrong)",
        };
        var device = CommonOptions.Device();
        var progress = CommonOptions.Progress();
        var cmd = new Command("generate", "Generate images from text prompts (and reference images) and write them as PNG.")
        {
            model, prompt, negative, width, height, steps, seed, output, quant, sampler, guidance, cfgMode, interval, rescale, truncation, normClip,
            weightsBf16, refImages, trueCfg, maxArea, keepRefSize, initImage, strength, batch, textLayers, verbose, promptCache, noPromptCache, allowNonFinite, device, progress,
        };
        cmd.SetAction(parse =>
        {
            // Everything that can be checked is checked before any model work; nothing is written on a bad argument.
            if (parse.GetValue(noPromptCache) && parse.GetValue(promptCache) is { } cacheDir)
                throw new ArgumentException($"--prompt-cache '{cacheDir}' and --no-prompt-cache contradict each other; give one or the other");
            var mode = ParseQuant(parse.GetValue(quant)!);
            var progressMode = ProgressDisplay.Parse(parse.GetValue(progress)!);
            var refPaths = parse.GetValue(refImages) ?? [];
            var refs = refPaths.Select(ImageFile.Load).ToArray();
            for (int i = 0; i < refs.Length; i++) ReferenceImagePreprocessor.Validate(refs[i], $"--ref-image '{refPaths[i]}'");
            var job = new GenerationJob
            {
                Prompts = parse.GetRequiredValue(prompt),
                NegativePrompts = parse.GetValue(negative) is { Length: > 0 } n ? n : null,
                ImagesPerPrompt = parse.GetValue(batch),
                Width = parse.GetValue(width),
                Height = parse.GetValue(height),
                Steps = parse.GetValue(steps),
                Seed = parse.GetValue(seed),
                Sampler = parse.GetValue(sampler) is { } sk ? Samplers.Parse(sk) : null,
                Guidance = parse.GetValue(guidance),
                CfgMode = ParseCfgMode(parse.GetValue(cfgMode)!),
                GuidanceInterval = parse.GetValue(interval) is { } iv ? ParseInterval(iv) : null,
                CfgRescale = parse.GetValue(rescale),
                GuidanceTruncation = parse.GetValue(truncation),
                GuidanceNormClip = parse.GetValue(normClip),
                ReferenceImages = refs,
                TrueCfgScale = parse.GetValue(trueCfg),
                InitImage = parse.GetValue(initImage) is { } ip ? ImageFile.Load(ip) : null,
                Strength = parse.GetValue(strength),
                AllowNonFinite = parse.GetValue(allowNonFinite),
            };
            job.Validate();
            int[]? layers = parse.GetValue(textLayers) is { } tl ? ParseLayers(tl) : null;
            string outPath = parse.GetValue(output)!;
            var outPaths = OutputPaths(outPath, job.BatchSize);
            // Fail now, not after minutes of compute: every PNG of a batch must be a new path or a writable regular file,
            // and none may fall inside the model being read (the --model snapshot, its linked blobs, the built-in model).
            string[] modelDirs = parse.GetValue(model) is { } md ? [md, BuiltInModel.Directory] : [BuiltInModel.Directory];
            foreach (var p in outPaths) PngWriter.EnsureWritable(p, modelDirs);

            var total = Stopwatch.StartNew();
            string? dir = parse.GetValue(model);
            using var dev = Devices.Open(parse.GetValue(device)!);
            var timer = new StageTimer(dev);
            var options = new ModelOptions
            {
                Quant = mode,
                TextLayers = layers,
                WeightsBf16 = parse.GetValue(weightsBf16) ? true : null,
                MaxArea = parse.GetValue(maxArea),
                ReferenceAutoResize = parse.GetValue(keepRefSize) ? false : null,
                PromptCache = parse.GetValue(noPromptCache) ? null
                    : new PromptCache(parse.GetValue(promptCache) ?? Path.Combine(BuiltInModel.CacheRoot, "prompts")),
            };
            // The display ends before the PNGs are written, so what goes to stdout never lands inside a redrawn region.
            var (diffusion, result) = ProgressDisplay.Show(ctx, progressMode, PlainSteps.Bar, display =>
            {
                display.Stage("load");
                IDiffusionModel opened;
                using (timer.Stage("load"))
                    opened = ModelFamilies.Open(dir ?? BuiltInModel.Ensure(), dev, options);
                try
                {
                    var d = opened.Defaults;
                    display.Note($"{(dir is null ? "built-in tiny model" : dir)} ({opened.Family.Name}) on {dev.Id} ({dev.Name}), " +
                        $"{job.BatchSize} image{(job.BatchSize > 1 ? "s" : "")}, {job.Steps ?? d.Steps} steps, {Samplers.NameOf(job.Sampler ?? d.Sampler)}, seed {job.Seed}");
                    return (opened, GenerationEngine.Run(opened, job, new GenerationHooks
                    {
                        Timer = timer,
                        Warning = w => display.Note("warning: " + w),
                        Progress = display.Step,
                        Stage = display.Stage,
                    }));
                }
                catch
                {
                    opened.Dispose();
                    throw;
                }
            });
            using var _ = diffusion;
            var text = new Dictionary<string, string>
            {
                ["model"] = dir is null ? "built-in tiny (random weights)" : Path.GetFullPath(dir),
                ["family"] = diffusion.Family.Name,
                ["steps"] = result.Steps.ToString(CultureInfo.InvariantCulture),
                ["sampler"] = Samplers.NameOf(result.Sampler),
                ["guidance"] = result.UsedCfg ? result.Guidance.ToString(CultureInfo.InvariantCulture) : "off",
                ["size"] = $"{result.Width}x{result.Height}",
                ["quant"] = diffusion.Quant.Name(),
                ["software"] = "PureFlux",
            };
            if (result.EmbeddedGuidance is float eg) text["embedded-guidance"] = eg.ToString(CultureInfo.InvariantCulture);
            if (job.InitImage is not null)
            {
                text["init-image"] = Path.GetFullPath(parse.GetValue(initImage)!);
                text["strength"] = job.Strength.ToString(CultureInfo.InvariantCulture);
            }
            if (result.UsedCfg)
            {
                text["negative-prompt"] = string.Join(" | ", job.NegativePrompts ?? [""]);
                text["cfg-mode"] = job.CfgMode.ToString().ToLowerInvariant();
                if (job.GuidanceInterval is var (lo, hi)) text["guidance-interval"] = FormattableString.Invariant($"{lo},{hi}");
                if (job.CfgRescale > 0) text["cfg-rescale"] = job.CfgRescale.ToString(CultureInfo.InvariantCulture);
            }
            if (layers is not null) text["text-layers"] = string.Join(',', layers);
            if (refs.Length > 0) text["ref-images"] = string.Join(" | ", refPaths.Select(Path.GetFullPath));
            for (int b = 0; b < result.Batch; b++)
            {
                int p = b / job.ImagesPerPrompt;
                var png = new Dictionary<string, string>(text)
                {
                    ["prompt"] = job.Prompts[p],
                    ["seed"] = (job.Seed + (ulong)b).ToString(CultureInfo.InvariantCulture),
                };
                if (result.Batch > 1) png["batch-index"] = $"{b} of {result.Batch}";
                var img = result.Image(b);
                PngWriter.Save(outPaths[b], img.Rgb, img.Width, img.Height, png);
                ctx.Out.WriteLine($"wrote {outPaths[b]} ({img.Width}x{img.Height})");
            }
            ctx.Out.WriteLine($"done in {total.Elapsed.TotalSeconds:0.00} s");
            if (parse.GetValue(verbose))
            {
                foreach (var (name, time) in timer.Stages) ctx.Out.WriteLine($"  {name,-22} {time.TotalSeconds,8:0.000} s");
                var pool = dev.Pool.Snapshot();
                ctx.Out.WriteLine($"  {"total",-22} {total.Elapsed.TotalSeconds,8:0.000} s");
                ctx.Out.WriteLine($"  peak RSS {CommonOptions.FormatBytes(StageTimer.PeakRssBytes())}, activation pool peak {CommonOptions.FormatBytes(pool.PeakReservedBytes)} ({pool.Allocations} allocations, {pool.ReuseHits} reuses)");
            }
            return Cli.Ok;
        });
        return cmd;
    }

    /// <summary>out.png for one image; out-0.png, out-1.png, ... for a batch.</summary>
    public static string[] OutputPaths(string path, int count)
    {
        if (count == 1) return [path];
        if (path.EndsWith('/') || Directory.Exists(path))
            throw new IOException($"--out '{path}': is a directory; expected a PNG file name (a batch writes NAME-0.png, NAME-1.png, ...)");
        string dir = Path.GetDirectoryName(path) ?? "", stem = Path.GetFileNameWithoutExtension(path), ext = Path.GetExtension(path);
        return Enumerable.Range(0, count).Select(i => Path.Combine(dir, $"{stem}-{i}{(ext.Length == 0 ? ".png" : ext)}")).ToArray();
    }

    /// <summary>--quant's value: a <see cref="QuantModes"/> name, or "bf16" for none.</summary>
    public static QuantMode ParseQuant(string s) =>
        s.Equals("bf16", StringComparison.OrdinalIgnoreCase) ? QuantMode.None
        : QuantModes.TryParse(s, out var mode) ? mode
        : throw new ArgumentException($"--quant '{s}': expected {string.Join(", ", QuantModes.Names)}");

    public static CfgMode ParseCfgMode(string s) => s.ToLowerInvariant() switch
    {
        "sequential" => CfgMode.Sequential,
        "batched" => CfgMode.Batched,
        _ => throw new ArgumentException($"--cfg-mode '{s}': expected sequential or batched"),
    };

    /// <summary>"LO,HI" → (lo, hi) with 0 ≤ lo ≤ hi ≤ 1.</summary>
    public static (float, float) ParseInterval(string s)
    {
        var parts = s.Split(',');
        if (parts.Length != 2 || !float.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out float lo)
            || !float.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out float hi))
            throw new ArgumentException($"--guidance-interval '{s}': expected LO,HI (two numbers in [0, 1], e.g. 0.3,1)");
        if (!(lo >= 0 && hi <= 1 && lo <= hi))
            throw new ArgumentException($"--guidance-interval '{s}': expected 0 ≤ LO ≤ HI ≤ 1 (σ range where the unconditional pass runs)");
        return (lo, hi);
    }

    /// <summary>"9,18,27" → [9, 18, 27] (positive integers).</summary>
    public static int[] ParseLayers(string s)
    {
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        var layers = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out layers[i]) || layers[i] < 1)
                throw new ArgumentException($"--text-layers '{s}': expected positive layer numbers separated by commas, e.g. 9,18,27");
        return layers;
    }
}
