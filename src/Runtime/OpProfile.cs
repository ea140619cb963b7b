using System.Collections.Concurrent;
using System.Diagnostics;

namespace PureFlux.Runtime;

/// <summary>One operator at one shape: calls, wall time and flops (0 where not counted).</summary>
public sealed record OpRecord(string Op, string Shape, long Calls, double Seconds, double GFlop)
{
    public double GFlopPerSecond => Seconds > 0 && GFlop > 0 ? GFlop / Seconds : 0;
}

/// <summary>
/// Opt-in wall time per operator and shape, for finding where a model's time goes ("the MLP GEMM at M = 256 runs at
/// 60% of the large-M rate"). Off by default: a disabled scope costs one branch and allocates nothing. Enable with
/// <see cref="Enabled"/> or PUREFLUX_PROFILE=1. On an ILGPU device each timed op synchronises the device at its end, so
/// asynchronous GPU work is charged to the op that queued it (which also removes overlap: profile runs are slower).
/// Ops are counted where they are called from one thread at a time; concurrent calls are summed.
/// </summary>
public static class OpProfile
{
    private sealed class Entry
    {
        public long Calls, Ticks;
        public double Flops;
    }

    private static readonly ConcurrentDictionary<(string Op, string Shape), Entry> Entries = new();

    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("PUREFLUX_PROFILE") == "1";

    /// <summary>Starts timing an element-wise <paramref name="op"/> keyed by the shape of <paramref name="x"/>.</summary>
    public static Scope Start(string op, Tensor x) =>
        Enabled ? new Scope(op, x.Device, 0, x.Shape.ToString(), Stopwatch.GetTimestamp()) : default;

    /// <summary>
    /// Starts timing <paramref name="op"/>; the shape is formatted from <paramref name="state"/> only when profiling is
    /// on. Call sites pass a static lambda and a value tuple, so a disabled scope allocates nothing (a lambda capturing
    /// locals would allocate its closure on every call).
    /// </summary>
    public static Scope Start<TState>(string op, Device device, double flops, TState state, Func<TState, string> shape) =>
        Enabled ? new Scope(op, device, flops, shape(state), Stopwatch.GetTimestamp()) : default;

    public static void Reset() => Entries.Clear();

    /// <summary>Everything recorded since the last <see cref="Reset"/>, most time first.</summary>
    public static IReadOnlyList<OpRecord> Snapshot() =>
        Entries.Select(kv => new OpRecord(kv.Key.Op, kv.Key.Shape, Interlocked.Read(ref kv.Value.Calls),
                (double)Interlocked.Read(ref kv.Value.Ticks) / Stopwatch.Frequency, kv.Value.Flops / 1e9))
            .OrderByDescending(r => r.Seconds).ToList();

    public readonly struct Scope : IDisposable
    {
        private readonly string? _op;
        private readonly Device? _device;
        private readonly double _flops;
        private readonly string? _shape;
        private readonly long _start;

        internal Scope(string op, Device device, double flops, string shape, long start)
        {
            _op = op;
            _device = device;
            _flops = flops;
            _shape = shape;
            _start = start;
        }

        public void Dispose()
        {
            if (_op is null) return;
            if (_device is not CpuDevice) _device?.Synchronize();
            long ticks = Stopwatch.GetTimestamp() - _start;
            var e = Entries.GetOrAdd((_op, _shape!), _ => new Entry());
            Interlocked.Increment(ref e.Calls);
            Interlocked.Add(ref e.Ticks, ticks);
            lock (e) e.Flops += _flops;
        }
    }
}
