using PureFlux.Model.Engine;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace PureFlux.Cli.Progress;

/// <summary>
/// The live display on a terminal (Spectre.Console, redrawn in place on stderr): for experiment and bench a line for the
/// schedule (run i of n, its ETA from the mean of the completed runs), and always a line for the current run (its stage,
/// step i of n, elapsed, ETA from the mean of the completed steps). Notes and narration scroll above it.
/// </summary>
internal sealed class LiveProgress : IProgressDisplay
{
    private readonly IAnsiConsole _console;
    private readonly ProgressContext _context;
    private readonly ProgressTask _current;
    private readonly Clock _currentClock = new();
    private ProgressTask? _runs;
    private Clock? _runsClock;
    private string _stage = "starting";

    private LiveProgress(IAnsiConsole console, ProgressContext context)
    {
        _console = console;
        _context = context;
        _current = context.AddTask(_stage, maxValue: 1);
        _current.Tag = _currentClock;
        _current.IsIndeterminate = true;
    }

    public static T Show<T>(TextWriter err, Func<IProgressDisplay, T> work)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(err),
            Ansi = AnsiSupport.Yes,
            Interactive = InteractionSupport.Yes, // --progress live asks for it even where stderr is not a terminal
            ColorSystem = ColorSystemSupport.Detect,
        });
        // Without a terminal size (TERM=dumb, no tty: a redirected --progress live, a chroot, a test) Spectre reads a page
        // of 0 rows, and its live renderer then throws on its refresh thread, which ends the process: give it a page.
        if (console.Profile.Width < 20) console.Profile.Width = 80;
        if (console.Profile.Height < 5) console.Profile.Height = 24;
        // Spectre hides the cursor while it draws; an interrupt exits from a signal thread, so it must show it again.
        Interrupts.RestoreTerminal = () => { try { err.Write("\e[?25h"); } catch (IOException) { } };
        try
        {
            return console.Progress()
                .AutoClear(true)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 20 }, new PercentageColumn(), new ClockColumn())
                .Start(ctx => work(new LiveProgress(console, ctx)));
        }
        finally { Interrupts.RestoreTerminal = null; }
    }

    public void Note(string line) => _console.WriteLine(line, Style.Plain);
    public void Log(string line) => _console.WriteLine(line, Style.Plain);

    public void RunStarted(RunStart run)
    {
        var now = Now;
        if (_runs is null)
        {
            _runsClock = new Clock();
            _runs = _context.AddTaskBefore("runs", _current, autoStart: true, maxValue: run.Count);
            _runs.Tag = _runsClock;
        }
        _runsClock!.Restart(now, keepEta: true);
        if (!run.Warmup)
        {
            // Measured runs follow each other: this start is the previous run's end.
            _runsClock.Eta.Started(now);
            if (run.Index > 0) _runsClock.Eta.Completed(run.Index, run.Count, now);
            _runs.MaxValue = run.Count;
            _runs.Value = run.Index;
        }
        _runs.IsIndeterminate = run.Warmup;
        _runs.Description = Markup.Escape(run.Warmup ? run.Label : $"run {run.Index + 1}/{run.Count}: {run.Label}");
        _currentClock.Restart(now, keepEta: false);
        _current.Value = 0;
        _current.IsIndeterminate = true;
        SetStage("load");
    }

    public void Stage(string name)
    {
        if (name == "denoising") _currentClock.Eta.Started(Now);
        _current.IsIndeterminate = name != "denoising";
        SetStage(name);
    }

    public void Step(int done, int total)
    {
        _currentClock.Eta.Completed(done, total, Now);
        _current.IsIndeterminate = false;
        _current.MaxValue = total;
        _current.Value = done;
        _current.Description = Markup.Escape($"{_stage} · step {done}/{total}");
    }

    private void SetStage(string name)
    {
        _stage = name;
        _current.Description = Markup.Escape(name);
    }

    private static TimeSpan Now => TimeSpan.FromTicks(TimeProvider.System.GetTimestamp() * TimeSpan.TicksPerSecond / TimeProvider.System.TimestampFrequency);

    /// <summary>A line's own start time and ETA (Spectre's task clock cannot restart, and its ETA is a speed sample, not our mean).</summary>
    private sealed class Clock
    {
        private long _startTicks;
        public Eta Eta { get; private set; } = new();

        public void Restart(TimeSpan now, bool keepEta)
        {
            if (!keepEta) Eta = new Eta();
            if (!keepEta || _startTicks == 0) Volatile.Write(ref _startTicks, now.Ticks);
        }

        public string Render()
        {
            var now = Now;
            long start = Volatile.Read(ref _startTicks);
            var elapsed = start == 0 ? TimeSpan.Zero : now - TimeSpan.FromTicks(start);
            return $"{Eta.Format(elapsed)} ETA {Eta.Format(Eta.Remaining(now))}";
        }
    }

    private sealed class ClockColumn : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text(task.Tag is Clock c ? c.Render() : "", Style.Plain);
    }
}
