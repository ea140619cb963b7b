namespace PureFlux.Runtime;

/// <summary>
/// Per-device buffer cache by size class. Returned buffers are kept and handed out again for requests
/// of the same class, so a steady-state loop (one denoising step after another) allocates nothing new.
/// Size classes are 2^k and 1.5·2^k bytes (at most 33% slack), 256 bytes minimum.
/// </summary>
public sealed class MemoryPool : IDisposable
{
    private readonly Device _device;
    private readonly Dictionary<long, Stack<DeviceBuffer>> _free = new();
    // Buffers rented and not yet returned: a double or foreign Return would hand one buffer to two tensors.
    private readonly HashSet<DeviceBuffer> _rented = new(ReferenceEqualityComparer.Instance);
    private readonly object _lock = new();

    internal MemoryPool(Device device) => _device = device;

    /// <summary>Bytes of pooled buffers currently rented out.</summary>
    public long LiveBytes { get; private set; }
    /// <summary>Highest <see cref="LiveBytes"/> seen.</summary>
    public long PeakLiveBytes { get; private set; }
    /// <summary>Bytes held by the pool: rented plus cached for reuse.</summary>
    public long ReservedBytes { get; private set; }
    public long PeakReservedBytes { get; private set; }
    /// <summary>Fresh allocations from the device.</summary>
    public long Allocations { get; private set; }
    /// <summary>Requests served from the cache.</summary>
    public long ReuseHits { get; private set; }

    public PoolStats Snapshot()
    {
        lock (_lock) return new PoolStats(LiveBytes, PeakLiveBytes, ReservedBytes, PeakReservedBytes, Allocations, ReuseHits);
    }

    public static long SizeClass(long bytes)
    {
        if (bytes <= 256) return 256;
        long p = 1L << (63 - (int)long.LeadingZeroCount(bytes - 1)); // largest power of two < bytes
        if (bytes <= p + p / 2) return p + p / 2;
        return p * 2;
    }

    /// <summary>Rents a buffer of at least <paramref name="bytes"/> (contents undefined).</summary>
    public DeviceBuffer Rent(long bytes)
    {
        long cls = SizeClass(bytes);
        lock (_lock)
        {
            DeviceBuffer buffer;
            if (_free.TryGetValue(cls, out var stack) && stack.Count > 0)
            {
                buffer = stack.Pop();
                ReuseHits++;
            }
            else
            {
                buffer = _device.AllocateRaw(cls);
                Allocations++;
                ReservedBytes += cls;
                PeakReservedBytes = Math.Max(PeakReservedBytes, ReservedBytes);
            }
            _rented.Add(buffer);
            LiveBytes += cls;
            PeakLiveBytes = Math.Max(PeakLiveBytes, LiveBytes);
            return buffer;
        }
    }

    public void Return(DeviceBuffer buffer)
    {
        lock (_lock)
        {
            if (!_rented.Remove(buffer))
                throw new ArgumentException($"{_device.Id} pool: a {buffer.Bytes}-byte buffer returned that is not rented from this pool (returned twice, or from another device)");
            LiveBytes -= buffer.Bytes;
            if (!_free.TryGetValue(buffer.Bytes, out var stack)) _free[buffer.Bytes] = stack = new Stack<DeviceBuffer>();
            stack.Push(buffer);
        }
    }

    /// <summary>Frees every cached (not rented) buffer.</summary>
    public void Trim()
    {
        lock (_lock)
        {
            foreach (var stack in _free.Values)
                while (stack.Count > 0)
                {
                    var b = stack.Pop();
                    ReservedBytes -= b.Bytes;
                    b.Dispose();
                }
        }
    }

    public void Dispose() => Trim();
}

public readonly record struct PoolStats(long LiveBytes, long PeakLiveBytes, long ReservedBytes, long PeakReservedBytes, long Allocations, long ReuseHits);
