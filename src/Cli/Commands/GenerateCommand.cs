using System.CommandLine;
using System.Diagnostics;
using PureFlux.Model.Image;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux generate [--model DIR] --prompt TEXT [--width --height --steps --seed --out --device --quant -v
/// --prompt-cache DIR | --no-prompt-cache]</c>: text to PNG. Without --model it runs the small built-in model.
/// Encoded prompts are kept on disk, so a repeated prompt skips the text encoder.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string?>("--model", "-m") { Description = "FLUX.2 [klein] snapshot directory (default: the small built-in random model)" };
        var prompt = new Option<string>("--prompt", "-p") { Description = "What to draw", Required = true };
        var width = new Option<int>("--width", "-W") { Description = "Width in pixels, a multiple of 16", DefaultValueFactory = _ => 1024 };
        var height = new Option<int>("--height", "-H") { Description = "Height in pixels, a multiple of 16", DefaultValueFactory = _ => 1024 };
        var steps = new Option<int>("--steps", "-s") { Description = "Denoising steps", DefaultValueFactory = _ => 4 };
        var seed = new Option<ulong>("--seed") { Description = "Noise seed", DefaultValueFactory = _ => 42 };
        var output = new Option<string>("--out", "-o") { Description = "PNG file to write", DefaultValueFactory = _ => "out.png" };
        var quant = new Option<string>("--quant", "-q") { Description = "Weights: none (as stored, BF16), int8 or int4", DefaultValueFactory = _ => "none" };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Print per-stage times and peak memory" };
        var promptCache = new Option<string?>("--prompt-cache")
        {
            Description = "Directory of encoded prompts: a prompt used before skips the text encoder (default: $PUREFLUX_CACHE/prompts, ~/.cache/pureflux/prompts)",
        };
        var noPromptCache = new Option<bool>("--no-prompt-cache") { Description = "Always run the text encoder; read and write no prompt cache" };
        var device = CommonOptions.Device();
        var cmd = new Command("generate", "Generate an image from a text prompt and write it as PNG.")
            { model, prompt, width, height, steps, seed, output, quant, verbose, promptCache, noPromptCache, device };
        cmd.SetAction(parse =>
        {
            var request = new GenerateRequest(parse.GetRequiredValue(prompt), parse.GetValue(width), parse.GetValue(height), parse.GetValue(steps), parse.GetValue(seed));
            request.Validate();
            var mode = ParseQuant(parse.GetValue(quant)!);
            string outPath = parse.GetValue(output)!;
            PngWriter.EnsureWritable(outPath); // fail now, not after minutes of compute

            var total = Stopwatch.StartNew();
            string? dir = parse.GetValue(model);
            using var dev = Devices.Open(parse.GetValue(device)!);
            var timer = new StageTimer(dev);
            ModelSnapshot snapshot;
            using (timer.Stage("load"))
                snapshot = ModelSnapshot.Open(dir ?? BuiltInModel.Ensure());
            using var _ = snapshot;
            using var pipe = new Flux2KleinPipeline(snapshot, dev, mode)
            {
                DiskCache = parse.GetValue(noPromptCache) ? null
                    : new PromptCache(parse.GetValue(promptCache) ?? Path.Combine(BuiltInModel.CacheRoot, "prompts")),
            };
            ctx.Err.WriteLine($"{(dir is null ? "built-in tiny model" : dir)} on {dev.Id} ({dev.Name}), {request.Width}x{request.Height}, {request.Steps} steps, seed {request.Seed}");
            var image = pipe.Generate(request, timer, (i, n) => ctx.Err.Write($"\rstep {i}/{n} [{new string('#', i * 20 / n)}{new string('.', 20 - i * 20 / n)}]{(i == n ? "\n" : "")}"));
            if (image.Warning is not null) ctx.Err.WriteLine("warning: " + image.Warning);
            PngWriter.Save(outPath, image.Rgb, image.Width, image.Height, new Dictionary<string, string>
            {
                ["prompt"] = request.Prompt,
                ["seed"] = request.Seed.ToString(),
                ["steps"] = request.Steps.ToString(),
                ["size"] = $"{request.Width}x{request.Height}",
                ["model"] = dir is null ? "built-in tiny (random weights)" : Path.GetFullPath(dir),
                ["quant"] = (mode == QuantMode.None ? QuantizedSnapshot.StoredMode(snapshot) : mode).ToString().ToLowerInvariant(),
                ["software"] = "PureFlux",
            });
            ctx.Out.WriteLine($"wrote {outPath} ({request.Width}x{request.Height}) in {total.Elapsed.TotalSeconds:0.00} s");
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

    public static QuantMode ParseQuant(string s) => s.ToLowerInvariant() switch
    {
        "none" or "bf16" => QuantMode.None,
        "int8" => QuantMode.Int8,
        "int4" => QuantMode.Int4,
        _ => throw new ArgumentException($"--quant '{s}': expected none, int8 or int4"),
    };
}
