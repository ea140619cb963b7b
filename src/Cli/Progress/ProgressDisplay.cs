using PureFlux.Model.Engine;

namespace PureFlux.Cli.Progress;

/// <summary>--progress: auto (live on a terminal, plain lines otherwise), live, plain or none.</summary>
internal enum ProgressMode { Auto, Live, Plain, None }

/// <summary>How plain output shows denoising steps: generate's redrawn bar, experiment's "    step 1/4, 2.3 s" lines, or not at all (bench).</summary>
internal enum PlainSteps { Bar, Lines, Silent }

/// <summary>What a long command shows while it works. Notes (header, warnings) always appear; the rest is progress.</summary>
internal interface IProgressDisplay
{
    /// <summary>A line every mode prints, even --progress none (the header, warnings).</summary>
    void Note(string line);
    /// <summary>Narration (warm-up, run 3/6, a run's result): plain and live print it, none does not.</summary>
    void Log(string line);
    void RunStarted(RunStart run);
    void Stage(string name);
    void Step(int done, int total);
}

internal static class ProgressDisplay
{
    public static ProgressMode Parse(string text) => text.ToLowerInvariant() switch
    {
        "auto" => ProgressMode.Auto,
        "live" => ProgressMode.Live,
        "plain" => ProgressMode.Plain,
        "none" => ProgressMode.None,
        _ => throw new ArgumentException($"--progress '{text}': expected auto, live, plain or none"),
    };

    /// <summary>auto → live only when stderr is a terminal (not redirected, not a test's writer, TERM not dumb).</summary>
    public static ProgressMode Resolve(ProgressMode mode, bool errIsTerminal) =>
        mode == ProgressMode.Auto ? (errIsTerminal ? ProgressMode.Live : ProgressMode.Plain) : mode;

    /// <summary>Runs <paramref name="work"/> with the display <paramref name="mode"/> asks for, drawn on stderr; the display ends when it returns or throws.</summary>
    public static T Show<T>(CliContext ctx, ProgressMode mode, PlainSteps steps, Func<IProgressDisplay, T> work) =>
        Resolve(mode, ctx.ErrIsTerminal) switch
        {
            ProgressMode.Live => LiveProgress.Show(ctx.Err, work),
            ProgressMode.None => work(new QuietProgress(ctx.Err)),
            _ => work(new PlainProgress(ctx.Err, steps, TimeProvider.System)),
        };

    /// <summary>The harness-side view of a display (experiment, bench e2e).</summary>
    public static RunProgress ToRunProgress(this IProgressDisplay d) => new()
    {
        Log = d.Log,
        RunStarted = d.RunStarted,
        Stage = d.Stage,
        Step = d.Step,
    };
}

/// <summary>
/// Plain lines for logs, CI and tests — what these commands printed before the live display, byte for byte: generate's
/// "\rstep i/n [####....]" bar (a newline after the last step), experiment's "    step i/n, 1.2 s" lines (seconds since
/// the run started), the harnesses' narration lines as they come.
/// </summary>
internal sealed class PlainProgress(TextWriter err, PlainSteps steps, TimeProvider clock) : IProgressDisplay
{
    private long _runStart = clock.GetTimestamp();

    public void Note(string line) => err.WriteLine(line);
    public void Log(string line) => err.WriteLine(line);
    public void RunStarted(RunStart run) => _runStart = clock.GetTimestamp();
    public void Stage(string name) { }

    public void Step(int done, int total)
    {
        switch (steps)
        {
            case PlainSteps.Bar:
                int filled = done * 20 / total;
                err.Write($"\rstep {done}/{total} [{new string('#', filled)}{new string('.', 20 - filled)}]{(done == total ? "\n" : "")}");
                break;
            case PlainSteps.Lines:
                err.WriteLine($"    step {done}/{total}, {clock.GetElapsedTime(_runStart).TotalSeconds:0.0} s");
                break;
        }
    }
}

/// <summary>--progress none: notes only.</summary>
internal sealed class QuietProgress(TextWriter err) : IProgressDisplay
{
    public void Note(string line) => err.WriteLine(line);
    public void Log(string line) { }
    public void RunStarted(RunStart run) { }
    public void Stage(string name) { }
    public void Step(int done, int total) { }
}
