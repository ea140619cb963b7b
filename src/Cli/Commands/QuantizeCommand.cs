using System.CommandLine;
using System.Diagnostics;
using PureFlux.Model.Layers;
using PureFlux.Model.Engine;
using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux quantize --model DIR --quant int8|int4|fp8-e4m3|fp8-e5m2 --out DIR2</c>: a copy of a snapshot with the transformer's and
/// text encoder's linear weights stored quantized, so <c>generate --model DIR2</c> maps them instead of quantizing at
/// every load (identical images to <c>--quant MODE</c> on DIR).
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = new Option<string>("--model", "-m") { Description = "FLUX.2 [klein], Z-Image, FLUX.1 or Qwen-Image snapshot directory (as released: BF16, or FP32 for Z-Image's transformer)", Required = true };
        var quant = new Option<string>("--quant", "-q") { Description = "int8 (per output channel), int4 (groups of 128/64/32), fp8-e4m3 or fp8-e5m2 (8-bit floats, per-output-channel scales)", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Directory to create (absent or empty)", Required = true };
        var cmd = new Command("quantize", "Write a copy of a snapshot with int8/int4/fp8 linear weights, loaded without re-quantizing.") { model, quant, output };
        cmd.SetAction(parse =>
        {
            var mode = GenerateCommand.ParseQuant(parse.GetRequiredValue(quant));
            if (mode == QuantMode.None) throw new ArgumentException("--quant none: expected int8, int4, fp8-e4m3 or fp8-e5m2");
            string dst = parse.GetRequiredValue(output);
            var sw = Stopwatch.StartNew();
            string src = parse.GetRequiredValue(model);
            if (ModelFamilies.Detect(src) is not IQuantizableFamily family)
                throw new ArgumentException($"quantize: {src} is a snapshot of a family that cannot be quantized yet");
            family.Quantize(src, mode, dst, ctx.Err.WriteLine);
            long bytes = Directory.EnumerateFiles(dst, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            ctx.Out.WriteLine($"wrote {mode.Name()} snapshot to {dst}: {CommonOptions.FormatBytes(bytes)} in {sw.Elapsed.TotalSeconds:0.0} s");
            return Cli.Ok;
        });
        return cmd;
    }
}
