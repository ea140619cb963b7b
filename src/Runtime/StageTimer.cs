using System.Diagnostics;

namespace PureFlux.Runtime;

/// <summary>
/// Wall-clock timing of named stages ("load", "text encoding", "step 1", "vae"). Synchronises the device at
/// each stage end so asynchronous GPU work is charged to the stage that queued it.
/// </summary>
public sealed class StageTimer(Device? device = null)
{
    private readonly List<(string Name, TimeSpan Time)> _stages = new();

    public IReadOnlyList<(string Name, TimeSpan Time)> Stages => _stages;

    public IDisposable Stage(string name) => new Scope(this, name);

    public TimeSpan Total => _stages.Aggregate(TimeSpan.Zero, (a, s) => a + s.Time);

    private sealed class Scope(StageTimer owner, string name) : IDisposable
    {
        private readonly Stopwatch _sw = Stopwatch.StartNew();
        public void Dispose()
        {
            owner.Record(name, _sw);
        }
    }

    private void Record(string name, Stopwatch sw)
    {
        device?.Synchronize();
        _stages.Add((name, sw.Elapsed));
    }

    /// <summary>Peak resident set size of this process (VmHWM on Linux), or -1 where unknown.</summary>
    public static long PeakRssBytes() => StatusBytes("VmHWM:");

    /// <summary>Current resident set size of this process (VmRSS on Linux), or -1 where unknown.</summary>
    public static long CurrentRssBytes() => StatusBytes("VmRSS:");

    private static long StatusBytes(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(field, StringComparison.Ordinal))
                    return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException) { }
        return -1;
    }
}
