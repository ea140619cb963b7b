using System.CommandLine;
using PureFlux.Model.Verification;

namespace PureFlux.Cli.Commands;

/// <summary>
/// <c>pureflux verify GOLDEN_DIR [--device ID]</c>: run every component of a golden set on a device and print
/// max abs / relative error per checked tensor; exit 1 if any tensor is past its tolerance.
/// </summary>
internal static class VerifyCommand
{
    public static Command Create(CliContext ctx)
    {
        var dir = new Argument<string>("GOLDEN_DIR") { Description = "Golden set: model/ + *_forward.safetensors + pipeline_*.safetensors + scheduler.json" };
        var device = CommonOptions.Device();
        var all = new Option<bool>("--all") { Description = "Print every row, not only the first of each component plus failures" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "For a set's tokenizer-ids.json: tokenizer.json (Qwen sets; default: the built-in Qwen3 tokenizer), or a directory holding clip-l/ and t5-xxl/ (FLUX.1 sets; default: the built-in ones)" };
        var cmd = new Command("verify", "Check every component against reference tensors; non-zero exit past the tolerances.") { dir, device, all, tokenizer };
        cmd.SetAction(parse =>
        {
            string golden = parse.GetRequiredValue(dir);
            if (!Directory.Exists(golden)) throw new IOException($"{golden}: directory not found");
            using var dev = Devices.Open(parse.GetValue(device)!);
            ctx.Err.WriteLine($"verifying {golden} on {dev.Id} ({dev.Name})");
            var rows = new GoldenVerifier(golden, dev, parse.GetValue(tokenizer)).Run(part => ctx.Err.WriteLine($"  {part}..."));
            bool showAll = parse.GetValue(all);
            int nameWidth = Math.Min(48, rows.Max(r => r.Tensor.Length));
            ctx.Out.WriteLine($"{"component",-22} {"tensor".PadRight(nameWidth)} {"max abs",10} {"rel",10} {"tol",8}  result");
            string? last = null;
            foreach (var r in rows)
            {
                bool first = r.Component != last;
                last = r.Component;
                if (showAll || first || !r.Passed || r == rows[^1])
                    ctx.Out.WriteLine($"{r.Component,-22} {Trim(r.Tensor, nameWidth).PadRight(nameWidth)} {r.MaxAbs,10:0.00e+0} {r.Relative,10:0.00e+0} {r.Tolerance,8:0.0e+0}  {(r.Passed ? "ok" : "FAIL")}");
            }
            // Why a file could not be verified rarely fits the tensor column: print those reasons whole.
            foreach (var r in rows.Where(r => !r.Passed && r.Tensor.Length > nameWidth))
                ctx.Out.WriteLine($"{r.Component}: {r.Tensor}");
            int failed = rows.Count(r => !r.Passed);
            foreach (var g in rows.GroupBy(r => r.Component))
                ctx.Out.WriteLine($"{g.Key,-22} {g.Count(),4} tensors, worst rel {g.Max(r => r.Relative):0.00e+0}");
            ctx.Out.WriteLine($"{rows.Count - failed} passed, {failed} failed");
            return failed == 0 ? Cli.Ok : Cli.Failed;
        });
        return cmd;
    }

    private static string Trim(string s, int w) => s.Length <= w ? s : s[..(w - 1)] + "…";
}
