using System.Diagnostics;
using System.Text;
using System.Text.Json;
using PureFlux.Cli.Progress;
using PureFlux.Model.Engine;
using PureFlux.Model.Experiments;

namespace PureFlux.Cli;

/// <summary>
/// What a fresh-process child is asked to run: the experiment's job (as the command line takes it), the arm's effective
/// switches, and whether this is a warm-up or captures its output. The child rebuilds the run's settings from these
/// exactly as <see cref="ExperimentPlan"/> does (the command line's plans have default model options).
/// </summary>
internal sealed record FreshRunSpec(string Model, string Device, string Arm, string Switches, string Prompt, int Width, int Height, int? Steps,
    ulong Seed, bool Capture, bool Warmup)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        RespectRequiredConstructorParameters = true, // a missing field is an error, not a silent default
        RespectNullableAnnotations = true,
    };

    public GenerationJob ToJob() => new() { Prompts = [Prompt], Width = Width, Height = Height, Steps = Steps, Seed = Seed };

    /// <summary>The spec file as the child reads it; one-line errors naming --spec.</summary>
    public static FreshRunSpec Read(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"--spec {path}: no such file");
        try
        {
            return JsonSerializer.Deserialize<FreshRunSpec>(File.ReadAllText(path), Json)
                ?? throw new ArgumentException($"--spec {path}: expected a run spec object, got null");
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--spec {path}: not a valid run spec ({e.Message.Split('\n')[0]})");
        }
    }
}

/// <summary>
/// The child's report: <see cref="RunOutcome"/> in a small binary file (the step latents and images of repetition 0 are
/// floats; text would be large and slow at 1024²). Written atomically by the child, read once by the parent.
/// </summary>
internal static class RunOutcomeFile
{
    private const string Magic = "PFRUN1";

    public static void Write(string path, RunOutcome o) => AtomicFile.Write(path, fs =>
    {
        using var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(o.Stages.Length);
        foreach (var s in o.Stages) { w.Write(s.Stage); w.Write(s.Seconds); }
        w.Write(o.TotalSeconds);
        w.Write(o.PeakRssBytes);
        w.Write(o.PeakRssPerRun);
        w.Write(o.DeviceId);
        w.Write(o.DeviceName);
        w.Write(o.StepLatents?.Count ?? -1);
        foreach (var l in o.StepLatents ?? []) Floats(w, l);
        Floats(w, o.Image);
        w.Write(o.Rgb?.Length ?? -1);
        if (o.Rgb is not null) w.Write(o.Rgb);
    });

    public static RunOutcome Read(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        if (r.ReadString() != Magic) throw new InvalidDataException($"{path}: not a run outcome file");
        var stages = new StageTime[r.ReadInt32()];
        for (int i = 0; i < stages.Length; i++) stages[i] = new StageTime(r.ReadString(), r.ReadDouble());
        double total = r.ReadDouble();
        long peak = r.ReadInt64();
        bool perRun = r.ReadBoolean();
        string id = r.ReadString(), name = r.ReadString();
        int count = r.ReadInt32();
        List<float[]>? steps = count < 0 ? null : Enumerable.Range(0, count).Select(_ => Floats(r)!).ToList();
        var image = Floats(r);
        int rgbLength = r.ReadInt32();
        byte[]? rgb = rgbLength < 0 ? null : r.ReadBytes(rgbLength);
        return new RunOutcome(stages, total, peak, perRun, steps, image, rgb) { DeviceId = id, DeviceName = name };
    }

    private static void Floats(BinaryWriter w, float[]? values)
    {
        w.Write(values?.Length ?? -1);
        if (values is not null) w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private static float[]? Floats(BinaryReader r)
    {
        int n = r.ReadInt32();
        if (n < 0) return null;
        var values = new float[n];
        if (r.Read(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())) != n * sizeof(float))
            throw new InvalidDataException("run outcome file ends early");
        return values;
    }
}

/// <summary>
/// <c>pureflux experiment --fresh-process</c>: every run (and warm-up) is a child process of this same executable
/// running the hidden <c>experiment-run</c> command, which performs one <see cref="Experiment.RunOne"/> and writes its
/// <see cref="RunOutcome"/>. The run's total is the parent's wall time from starting the child to its exit (process
/// start, runtime start-up and model load included), so load-time effects are measured; peak RSS is the child's own.
/// The child reports its stage and steps on stderr ("progress stage NAME", "progress step D/T") for the display.
/// </summary>
internal sealed class FreshProcessRunner : IExperimentRunner, IDisposable
{
    public const string ProgressPrefix = "progress ";

    private readonly string _modelDir;
    private readonly ExperimentPlan _plan;
    private readonly IProgressDisplay _display;
    private readonly string _dir;
    private readonly TempFileRegistry.Registration _registration;
    private int _runs, _warmups;

    public FreshProcessRunner(string modelDir, ExperimentPlan plan, IProgressDisplay display)
    {
        (_modelDir, _plan, _display) = (Path.GetFullPath(modelDir), plan, display);
        _dir = Path.Combine(Path.GetTempPath(), $"pureflux-fresh-{Environment.ProcessId}-{Guid.NewGuid():N}");
        _registration = TempFileRegistry.Default.Register(_dir, directory: true); // Ctrl-C sweeps it
        Directory.CreateDirectory(_dir);
    }

    public string Where => "a fresh process per run";

    public RunOutcome Run(ExperimentVariant arm, RunSettings settings, bool capture, bool warmup)
    {
        string what = warmup ? $"warm-up of '{arm.Name}'" : $"run {++_runs} ('{arm.Name}')";
        string stem = Path.Combine(_dir, warmup ? $"warmup-{++_warmups}" : $"run-{_runs}");
        string specPath = stem + ".json", outPath = stem + ".outcome";
        var j = _plan.Job;
        var spec = new FreshRunSpec(_modelDir, _plan.DeviceSpec, arm.Name, string.Join(",", arm.Switches.Values.Select(v => $"{v.Key}={v.Value}")),
            j.Prompts[0], j.Width ?? 0, j.Height ?? 0, j.Steps, j.Seed, capture, warmup);
        AtomicFile.WriteAllBytes(specPath, JsonSerializer.SerializeToUtf8Bytes(spec, FreshRunSpec.Json));
        try
        {
            var (file, prefix) = SelfCommand();
            var psi = new ProcessStartInfo(file)
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            foreach (var a in prefix) psi.ArgumentList.Add(a);
            foreach (var a in new[] { "experiment-run", "--spec", specPath, "--out", outPath }) psi.ArgumentList.Add(a);

            string? lastLine = null, lastOut = null;
            var wall = Stopwatch.StartNew();
            using var child = Process.Start(psi) ?? throw new IOException($"experiment --fresh-process: could not start {file}");
            // An exiting parent (Ctrl-C, SIGTERM) takes its child along rather than leaving it running.
            EventHandler kill = (_, _) => { try { child.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } };
            AppDomain.CurrentDomain.ProcessExit += kill;
            try
            {
                child.OutputDataReceived += (_, e) => { if (!string.IsNullOrWhiteSpace(e.Data)) lastOut = e.Data; };
                child.ErrorDataReceived += (_, e) =>
                {
                    if (string.IsNullOrWhiteSpace(e.Data)) return;
                    if (!ForwardProgress(e.Data)) lastLine = e.Data;
                };
                child.BeginOutputReadLine();
                child.BeginErrorReadLine();
                child.WaitForExit(); // after the streams' ends too: lastLine is complete
            }
            finally { AppDomain.CurrentDomain.ProcessExit -= kill; }
            double total = wall.Elapsed.TotalSeconds;

            if (child.ExitCode != 0 || !File.Exists(outPath))
            {
                lastLine ??= lastOut; // a host that failed before our code ran (missing runtime, bad arguments) may say why on stdout
                string reason = lastLine is null ? $"exit code {child.ExitCode}, nothing on stderr"
                    : lastLine.StartsWith("error: ", StringComparison.Ordinal) ? lastLine["error: ".Length..] : lastLine;
                string message = $"experiment --fresh-process: the {what} failed in its child process: {reason}";
                // The child's usage errors (a switch this run cannot take) stay usage errors here.
                throw child.ExitCode == Cli.Usage ? new ArgumentException(message) : new FreshProcessException(message);
            }
            return RunOutcomeFile.Read(outPath) with { TotalSeconds = total };
        }
        finally
        {
            TempFileRegistry.TryDelete(specPath);
            TempFileRegistry.TryDelete(outPath);
        }
    }

    /// <summary>A child's "progress …" line to the display; false for any other line (kept as the error to report).</summary>
    private bool ForwardProgress(string line)
    {
        if (!line.StartsWith(ProgressPrefix, StringComparison.Ordinal)) return false;
        string rest = line[ProgressPrefix.Length..];
        if (rest.StartsWith("stage ", StringComparison.Ordinal)) _display.Stage(rest["stage ".Length..]);
        else if (rest.StartsWith("step ", StringComparison.Ordinal) && rest["step ".Length..].Split('/') is [var d, var t]
                 && int.TryParse(d, out int done) && int.TryParse(t, out int steps))
            _display.Step(done, steps);
        return true;
    }

    /// <summary>
    /// How to start this executable again: the <c>pureflux</c> apphost itself; or, under a host (<c>dotnet pureflux.dll</c>,
    /// or a test process that loaded the CLI as a library), the apphost next to pureflux.dll, else that host with the dll.
    /// </summary>
    internal static (string File, string[] Prefix) SelfCommand()
    {
        string exe = OperatingSystem.IsWindows() ? ".exe" : "";
        string? self = Environment.ProcessPath;
        // Whole file names: "PureFlux.Tests" without its "extension" would pass for "PureFlux".
        if (self is not null && Path.GetFileName(self) == "pureflux" + exe) return (self, []);
        string dll = typeof(Cli).Assembly.Location;
        string apphost = Path.Combine(Path.GetDirectoryName(dll)!, "pureflux" + exe);
        if (File.Exists(apphost)) return (apphost, []);
        string host = self is not null && Path.GetFileName(self) == "dotnet" + exe ? self
            : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        return (host, [dll]);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        _registration.Dispose();
    }
}

/// <summary>A fresh-process child failed; the message names the arm and the run and carries the child's own error line.</summary>
public sealed class FreshProcessException(string message) : Exception(message);

/// <summary>The child's display: stages and steps as "progress …" lines on stderr for the parent to draw; nothing else.</summary>
internal sealed class ChildProgress(TextWriter err) : IProgressDisplay
{
    public void Note(string line) { }
    public void Log(string line) { }
    public void RunStarted(RunStart run) { }
    public void Stage(string name) => err.WriteLine(FreshProcessRunner.ProgressPrefix + "stage " + name);
    public void Step(int done, int total) => err.WriteLine($"{FreshProcessRunner.ProgressPrefix}step {done}/{total}");
}
