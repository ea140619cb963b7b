using System.CommandLine;

namespace PureFlux.Cli.Commands;

/// <summary>Options shared by several commands, so they read the same everywhere.</summary>
internal static class CommonOptions
{
    /// <summary>--device: auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu (checked when the command opens it).</summary>
    public static Option<string> Device() => new("--device", "-d")
    {
        Description = $"Device to run on: {Devices.Usage}",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>--progress: what long commands show on stderr while they work (checked by <see cref="Progress.ProgressDisplay.Parse"/>).</summary>
    public static Option<string> Progress() => new("--progress")
    {
        Description = "Progress on stderr: auto (a live display on a terminal, plain lines otherwise), live, plain or none",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>Formats a byte count for tables: "23.4 GiB".</summary>
    public static string FormatBytes(long bytes) => bytes switch
    {
        <= 0 => "-",
        >= 1L << 50 => "host", // ILGPU's CPU accelerator reports no real limit: it uses host memory
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.0} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        _ => $"{bytes / 1024.0:0.0} KiB",
    };
}
