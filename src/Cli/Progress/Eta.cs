namespace PureFlux.Cli.Progress;

/// <summary>
/// Time left in a sequence of similar units (the steps of a denoising loop, the measured runs of an experiment) from the
/// mean of the completed ones. Units run back to back, so the completed ones took (last completion − first start).
/// Times are offsets on one clock (a <see cref="TimeProvider"/>'s timestamps), so tests can give them directly.
/// </summary>
internal sealed class Eta
{
    private readonly Lock _lock = new();
    private TimeSpan? _firstStart;
    private TimeSpan _lastDone;
    private int _done, _total;

    /// <summary>The first unit started (later calls are ignored: the units run back to back).</summary>
    public void Started(TimeSpan at)
    {
        lock (_lock) _firstStart ??= at;
    }

    /// <summary><paramref name="done"/> of <paramref name="total"/> units are complete at <paramref name="at"/>.</summary>
    public void Completed(int done, int total, TimeSpan at)
    {
        lock (_lock) (_done, _total, _lastDone) = (done, total, at);
    }

    public TimeSpan? Remaining(TimeSpan now)
    {
        lock (_lock)
            return _firstStart is { } first ? Remaining(_lastDone - first, _done, _total, now - _lastDone) : null;
    }

    /// <summary>
    /// mean × units left − time already spent in the current one, not below zero; null before any unit completed (no mean yet).
    /// </summary>
    public static TimeSpan? Remaining(TimeSpan completedTime, int done, int total, TimeSpan inCurrent)
    {
        if (done <= 0 || total <= 0) return null;
        if (done >= total) return TimeSpan.Zero;
        var left = completedTime / done * (total - done) - inCurrent;
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>"0:42", "12:05", "1:02:09"; "-:--" when unknown.</summary>
    public static string Format(TimeSpan? t)
    {
        if (t is not { } v) return "-:--";
        return v.TotalHours >= 1 ? $"{(int)v.TotalHours}:{v.Minutes:00}:{v.Seconds:00}" : $"{v.Minutes}:{v.Seconds:00}";
    }
}
