namespace PureFlux.Model.Engine;

/// <summary>A run of a harness's schedule starting: its label, its place (0-based) among <paramref name="Count"/> measured runs, or a warm-up (not counted).</summary>
public sealed record RunStart(string Label, int Index, int Count, bool Warmup);

/// <summary>
/// What a long harness (<c>experiment</c>, <c>bench e2e</c>) tells its caller while it works: narration lines, which run
/// starts, and that run's stages and steps. The library only reports; the command line draws it (a live display or plain
/// lines), so the model code carries no rendering.
/// </summary>
public sealed class RunProgress
{
    /// <summary>Narration: "warm-up …", "run 3/6: …", a run's result.</summary>
    public Action<string>? Log { get; init; }
    public Action<RunStart>? RunStarted { get; init; }
    /// <summary>A stage of the current run begins ("load", then <see cref="GenerationHooks.Stage"/>'s names).</summary>
    public Action<string>? Stage { get; init; }
    /// <summary>(steps done, steps) of the current run's denoising.</summary>
    public Action<int, int>? Step { get; init; }

    /// <summary>Narration only, as a plain line writer (library callers, notebooks).</summary>
    public static RunProgress? Lines(Action<string>? log) => log is null ? null : new RunProgress { Log = log };
}
