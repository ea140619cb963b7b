using System.Collections.Concurrent;

namespace PureFlux.Tests.Support;

/// <summary>
/// The backends every operator test runs on. Managed CPU and ILGPU's CPU accelerator are always present;
/// CUDA and OpenCL rows run when such a device exists and otherwise skip, saying why.
/// PUREFLUX_TEST_BACKENDS (comma list, e.g. "opencl") restricts the rows that run, for CI's PoCL pass.
/// PUREFLUX_TEST_ILGPU_CPU=WxN runs the ilgpu-cpu rows on the accelerator with that group shape (<c>--device
/// ilgpu-cpu:WxN</c>; CI's serial emulator pass uses 2x2, several times faster than ILGPU's default 4x4 on 2 cores).
/// </summary>
public static class Backends
{
    public static readonly string[] Ids = ["cpu", "ilgpu-cpu", "opencl", "cuda"];

    /// <summary>Theory data: one row per backend id.</summary>
    public static TheoryData<string> All => new(Ids);

    private static readonly ConcurrentDictionary<string, Device> Opened = new();

    /// <summary>The (shared, never disposed) device for a backend id, or a skip with the reason.</summary>
    public static Device Get(string id)
    {
        var only = Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS");
        if (!string.IsNullOrWhiteSpace(only) && !only.Split(',').Select(s => s.Trim()).Contains(id))
            Assert.Skip($"skipped: backend '{id}' not selected (PUREFLUX_TEST_BACKENDS={only})");
        var kind = id switch
        {
            "cpu" => DeviceKind.Cpu,
            "ilgpu-cpu" => DeviceKind.IlgpuCpu,
            "opencl" => DeviceKind.OpenCL,
            "cuda" => DeviceKind.Cuda,
            _ => throw new ArgumentException(id),
        };
        if (!Devices.IsAvailable(kind, out var reason))
            Assert.Skip($"skipped: {reason}");
        var shape = Environment.GetEnvironmentVariable("PUREFLUX_TEST_ILGPU_CPU");
        return Opened.GetOrAdd(id, i => Devices.Open(i == "ilgpu-cpu" && !string.IsNullOrWhiteSpace(shape) ? $"ilgpu-cpu:{shape.Trim()}" : i));
    }
}
