using System.Runtime.InteropServices;

namespace PureFlux.Cli;

/// <summary>
/// What the <c>pureflux</c> process does on SIGINT / SIGTERM (installed by Program.cs, not by <see cref="Cli.Run"/>, so
/// tests that run commands in process keep their host's handling): every temporary path in
/// <see cref="TempFileRegistry.Default"/> is deleted — twice, a moment apart, to catch a file a writer thread was just
/// creating — and the process exits with 128 + the signal number, as a shell expects.
/// </summary>
public static class Interrupts
{
    /// <summary>Set while a live progress display draws (it hides the cursor): puts the terminal back before the message.</summary>
    internal static volatile Action? RestoreTerminal;

    public static void Handle(PosixSignalContext context)
    {
        context.Cancel = true; // exit here, after the sweep, rather than by the runtime's default
        RestoreTerminal?.Invoke();
        int removed = TempFileRegistry.Default.DeleteAll(TimeSpan.FromMilliseconds(100));
        var (name, code) = context.Signal switch
        {
            PosixSignal.SIGINT => ("SIGINT", 130),
            PosixSignal.SIGTERM => ("SIGTERM", 143),
            PosixSignal.SIGQUIT => ("SIGQUIT", 131),
            PosixSignal.SIGHUP => ("SIGHUP", 129),
            _ => (context.Signal.ToString(), 1),
        };
        var left = TempFileRegistry.Default.Pending.Where(p => File.Exists(p) || Directory.Exists(p)).ToArray();
        try
        {
            Console.Error.WriteLine();
            Console.Error.WriteLine($"error: interrupted ({name}); " + (left.Length > 0
                ? $"could not remove {string.Join(", ", left.Select(p => $"'{p}'"))}"
                : removed == 0 ? "nothing was left half-written"
                : $"removed {removed} temporary file{(removed == 1 ? "" : "s")}; nothing was left half-written"));
        }
        catch (IOException)
        {
            // stderr closed: exit anyway
        }
        Environment.Exit(code);
    }
}
