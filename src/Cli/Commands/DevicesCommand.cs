using System.CommandLine;

namespace PureFlux.Cli.Commands;

/// <summary><c>pureflux devices [--device ID]</c>: list the devices this machine offers, or open one to check it works.</summary>
internal static class DevicesCommand
{
    public static Command Create(CliContext ctx)
    {
        var device = new Option<string?>("--device", "-d")
        {
            Description = $"Open this device and report it instead of listing all ({Devices.Usage})",
        };
        var cmd = new Command("devices", "List the devices PureFlux can run on (id, kind, name, memory).") { device };
        cmd.SetAction(parse =>
        {
            string? id = parse.GetValue(device);
            if (id is not null)
            {
                using var opened = Devices.Open(id); // ArgumentException for unknown / absent devices → one-line error
                ctx.Out.WriteLine($"{opened.Id}: {opened.Kind}, {opened.Name}: ok");
                return Cli.Ok;
            }
            WriteTable(ctx.Out, Devices.List());
            return Cli.Ok;
        });
        return cmd;
    }

    internal static void WriteTable(TextWriter w, IReadOnlyList<DeviceInfo> devices)
    {
        string[] head = ["id", "kind", "name", "memory"];
        var rows = devices.Select(d => new[] { d.Id, d.Kind.ToString(), d.Name, CommonOptions.FormatBytes(d.MemoryBytes) }).ToList();
        var width = Enumerable.Range(0, head.Length).Select(c => rows.Select(r => r[c].Length).Append(head[c].Length).Max()).ToArray();
        string Line(string[] cells) => string.Join("  ", cells.Select((s, c) => c == cells.Length - 1 ? s : s.PadRight(width[c]))).TrimEnd();
        w.WriteLine(Line(head));
        foreach (var r in rows) w.WriteLine(Line(r));
    }
}
