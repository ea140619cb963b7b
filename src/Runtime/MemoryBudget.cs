using System.Globalization;
using ILGPU.Runtime.Cuda;

namespace PureFlux.Runtime;

/// <summary>
/// How much memory a new job may use on a device: host RAM for the CPU backends (<c>MemAvailable</c> of
/// /proc/meminfo, capped by the process's memory limit), the device's memory for CUDA and OpenCL. Buffers the
/// device's pool holds but has not rented out count as available too: the job will reuse them.
/// </summary>
public static class MemoryBudget
{
    /// <summary>Bytes available on <paramref name="device"/> and where the number comes from (for messages).</summary>
    public static (long Bytes, string Source) Available(Device device)
    {
        var pool = device.Pool.Snapshot();
        long cached = Math.Max(0, pool.ReservedBytes - pool.LiveBytes);
        if (device is IlgpuDevice g && g.Kind != DeviceKind.IlgpuCpu)
        {
            if (g.Accelerator is CudaAccelerator cuda)
            {
                try { return (cuda.GetFreeMemory() + cached, $"free memory of {device.Id}"); }
                catch (Exception e) when (e is not OutOfMemoryException) { /* fall back to the total */ }
            }
            return (g.Accelerator.MemorySize, $"memory of {device.Id}");
        }
        var (host, source) = Host();
        return (host + cached, source);
    }

    /// <summary>Host memory a new allocation can get: MemAvailable (Linux), capped by the GC's view of the limit (cgroup, or physical RAM).</summary>
    public static (long Bytes, string Source) Host()
    {
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long? available = MemAvailable();
        if (available is long a)
            return a <= limit ? (a, "MemAvailable in /proc/meminfo") : (limit, "the process's memory limit");
        return (limit, "the GC's memory limit");
    }

    /// <summary>MemAvailable from /proc/meminfo in bytes, or null where there is none.</summary>
    public static long? MemAvailable(string path = "/proc/meminfo")
    {
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line["MemAvailable:".Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 1 && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long kb) && kb < long.MaxValue / 1024)
                    return parts.Length > 1 && parts[1] == "kB" ? kb * 1024 : kb;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>"23.4 GiB" for messages (any non-negative size, however large).</summary>
    public static string Format(double bytes) => bytes switch
    {
        >= 1L << 40 => $"{(bytes / (1L << 40)).ToString("0.0", CultureInfo.InvariantCulture)} TiB",
        >= 1L << 30 => $"{(bytes / (1L << 30)).ToString("0.0", CultureInfo.InvariantCulture)} GiB",
        >= 1L << 20 => $"{(bytes / (1L << 20)).ToString("0.0", CultureInfo.InvariantCulture)} MiB",
        _ => $"{(bytes / 1024).ToString("0.0", CultureInfo.InvariantCulture)} KiB",
    };
}
