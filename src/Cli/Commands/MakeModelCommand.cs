using System.CommandLine;
using System.Diagnostics;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary><c>pureflux make-model --preset klein-4b --random --out DIR [--seed N]</c>: write a random-weight snapshot.</summary>
internal static class MakeModelCommand
{
    public static Command Create(CliContext ctx)
    {
        var preset = new Option<string>("--preset") { Description = $"Sizes: {string.Join(", ", SnapshotPreset.All.Select(p => p.Name).Concat(PureFlux.Model.ZImage.ZImagePreset.All.Select(p => p.Name)).Concat(PureFlux.Model.QwenImage.QwenImagePreset.All.Select(p => p.Name)).Concat(PureFlux.Model.Flux1.Flux1Preset.All.Select(p => p.Name)))}", Required = true };
        var f32 = new Option<bool>("--f32-transformer") { Description = "Z-Image presets: store the transformer in F32, as the released Z-Image-Turbo does (default BF16)" };
        var quant = new Option<string?>("--quant") { Description = "Qwen-Image presets: int8 | int4 | fp8-e4m3 | fp8-e5m2 — write the transformer and text encoder linears already quantized (as pureflux quantize would), one tensor at a time" };
        var random = new Option<bool>("--random") { Description = "Seeded random BF16 weights (the only kind make-model writes; required to say so)" };
        var output = new Option<string>("--out", "-o") { Description = "Directory to create", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Weight seed", DefaultValueFactory = _ => 0 };
        var cmd = new Command("make-model", "Write a FLUX.2 [klein], Z-Image, Qwen-Image or FLUX.1 snapshot (real layout, real tokenizer) with random weights.") { preset, random, output, seed, f32, quant };
        cmd.SetAction(parse =>
        {
            if (!parse.GetValue(random)) throw new ArgumentException("make-model writes random weights only: pass --random");
            string name = parse.GetRequiredValue(preset);
            string dir = parse.GetRequiredValue(output);
            var sw = Stopwatch.StartNew();
            var mode = parse.GetValue(quant) is { } qv ? GenerateCommand.ParseQuant(qv) : PureFlux.Model.Layers.QuantMode.None;
            if (mode != PureFlux.Model.Layers.QuantMode.None && PureFlux.Model.QwenImage.QwenImagePreset.Find(name) is null)
                throw new ArgumentException($"--quant applies to the Qwen-Image presets ({string.Join(", ", PureFlux.Model.QwenImage.QwenImagePreset.All.Select(p => p.Name))}), not '{name}'; quantize other snapshots with pureflux quantize");
            if (PureFlux.Model.QwenImage.QwenImagePreset.Find(name) is { } qi)
            {
                if (parse.GetValue(f32)) throw new ArgumentException($"--f32-transformer applies to the Z-Image presets, not '{name}'");
                PureFlux.Model.QwenImage.QwenImageRandomSnapshot.Write(dir, qi, parse.GetValue(seed), part => ctx.Err.WriteLine(part), mode);
            }
            else if (PureFlux.Model.Flux1.Flux1Preset.Find(name) is { } f1)
            {
                if (parse.GetValue(f32)) throw new ArgumentException($"--f32-transformer applies to the Z-Image presets, not '{name}'");
                PureFlux.Model.Flux1.Flux1RandomSnapshot.Write(dir, f1, parse.GetValue(seed), part => ctx.Err.WriteLine(part));
            }
            else if (PureFlux.Model.ZImage.ZImagePreset.Find(name) is { } z)
                PureFlux.Model.ZImage.ZImageRandomSnapshot.Write(dir, z, parse.GetValue(seed), parse.GetValue(f32), part => ctx.Err.WriteLine(part));
            else
            {
                if (parse.GetValue(f32)) throw new ArgumentException($"--f32-transformer applies to the Z-Image presets, not '{name}'");
                RandomSnapshot.Write(dir, SnapshotPreset.Find(name), parse.GetValue(seed), part => ctx.Err.WriteLine($"writing {part}..."));
            }
            long bytes = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            ctx.Out.WriteLine($"wrote {name} to {dir}: {CommonOptions.FormatBytes(bytes)} in {sw.Elapsed.TotalSeconds:0.0} s");
            return Cli.Ok;
        });
        return cmd;
    }
}
