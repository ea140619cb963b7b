using System.CommandLine;
using System.Diagnostics;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary><c>pureflux make-model --preset klein-4b --random --out DIR [--seed N]</c>: write a random-weight snapshot.</summary>
internal static class MakeModelCommand
{
    public static Command Create(CliContext ctx)
    {
        var preset = new Option<string>("--preset") { Description = $"Sizes: {string.Join(", ", SnapshotPreset.All.Select(p => p.Name))}", Required = true };
        var random = new Option<bool>("--random") { Description = "Seeded random BF16 weights (the only kind make-model writes; required to say so)" };
        var output = new Option<string>("--out", "-o") { Description = "Directory to create", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Weight seed", DefaultValueFactory = _ => 0 };
        var cmd = new Command("make-model", "Write a FLUX.2 [klein] snapshot (real layout, real tokenizer) with random weights.") { preset, random, output, seed };
        cmd.SetAction(parse =>
        {
            if (!parse.GetValue(random)) throw new ArgumentException("make-model writes random weights only: pass --random");
            var p = SnapshotPreset.Find(parse.GetRequiredValue(preset));
            string dir = parse.GetRequiredValue(output);
            var sw = Stopwatch.StartNew();
            RandomSnapshot.Write(dir, p, parse.GetValue(seed), part => ctx.Err.WriteLine($"writing {part}..."));
            long bytes = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            ctx.Out.WriteLine($"wrote {p.Name} to {dir}: {CommonOptions.FormatBytes(bytes)} in {sw.Elapsed.TotalSeconds:0.0} s");
            return Cli.Ok;
        });
        return cmd;
    }
}
