using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace PureFlux.Runtime;

/// <summary>A device found on this machine, as listed by <see cref="Devices.List"/>.</summary>
public sealed record DeviceInfo(string Id, DeviceKind Kind, string Name, long MemoryBytes);

/// <summary>
/// Finds and opens devices by their <c>--device</c> id: auto, cpu, cuda[:N], opencl[:N], ilgpu-cpu[:WxN].
/// </summary>
public static class Devices
{
    private static readonly Lazy<Context> SharedContext = new(CreateContext);
    private static int _resolverInstalled;

    public const string Usage = "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu[:WxN]";

    /// <summary>ILGPU's default CPU accelerator shape: warps of 4 threads, 4 warps per group (16 threads).</summary>
    public const string EmulatorDefaultShape = "4x4";

    /// <summary>The process-wide ILGPU context (all accelerator kinds).</summary>
    public static Context Context => SharedContext.Value;

    /// <summary>Every device this process can open; ILGPU devices only where their driver is present.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        var list = new List<DeviceInfo> { new("cpu", DeviceKind.Cpu, new CpuDevice().Name, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes) };
        int cuda = 0, cl = 0;
        foreach (var d in Context.Devices)
        {
            switch (d)
            {
                case CudaDevice: list.Add(new($"cuda:{cuda++}", DeviceKind.Cuda, d.Name, d.MemorySize)); break;
                case CLDevice: list.Add(new($"opencl:{cl++}", DeviceKind.OpenCL, d.Name, d.MemorySize)); break;
                case CPUDevice: list.Add(new("ilgpu-cpu", DeviceKind.IlgpuCpu, d.Name, d.MemorySize)); break;
            }
        }
        return list;
    }

    /// <summary>Opens a device by id. "auto" picks CUDA when present, else the managed CPU backend.</summary>
    /// <exception cref="ArgumentException">Unknown id, or the requested kind of device is not present (says why).</exception>
    public static Device Open(string spec)
    {
        spec = (spec ?? "auto").Trim().ToLowerInvariant();
        var (kind, index, shape) = Parse(spec);
        if (spec == "auto")
        {
            var cudaDevs = Context.GetCudaDevices();
            return cudaDevs.Count > 0 ? OpenIlgpu(cudaDevs[0], "cuda:0", DeviceKind.Cuda) : new CpuDevice();
        }
        switch (kind)
        {
            case DeviceKind.Cpu:
                return new CpuDevice();
            case DeviceKind.IlgpuCpu:
                // The default shape is ILGPU's own CPU device; another shape is a device of its own (the emulator runs
                // each group's threads as OS threads, so its speed on a small machine depends on W×N; see EmulatorShape).
                return shape == (4, 4)
                    ? OpenIlgpu(Context.GetCPUDevice(0), "ilgpu-cpu", DeviceKind.IlgpuCpu)
                    : new IlgpuDevice($"ilgpu-cpu:{shape.Warp}x{shape.Warps}", DeviceKind.IlgpuCpu,
                        new CPUDevice(shape.Warp, shape.Warps, 1).CreateCPUAccelerator(Context, CPUAcceleratorMode.Parallel));
            case DeviceKind.Cuda:
            {
                var devs = Context.GetCudaDevices();
                if (devs.Count == 0) throw new ArgumentException($"device '{spec}': no CUDA device found ({WhyNoCuda()})");
                if (index >= devs.Count) throw new ArgumentException($"device '{spec}': only {devs.Count} CUDA device(s) found (cuda:0..cuda:{devs.Count - 1})");
                return OpenIlgpu(devs[index], $"cuda:{index}", DeviceKind.Cuda);
            }
            default:
            {
                var devs = Context.GetCLDevices();
                if (devs.Count == 0) throw new ArgumentException($"device '{spec}': no OpenCL device found ({WhyNoOpenCL()})");
                if (index >= devs.Count) throw new ArgumentException($"device '{spec}': only {devs.Count} OpenCL device(s) found");
                return OpenIlgpu(devs[index], $"opencl:{index}", DeviceKind.OpenCL);
            }
        }
    }

    /// <summary>True when a device of this kind can be opened here (used by tests to skip with a reason).</summary>
    public static bool IsAvailable(DeviceKind kind, out string reason)
    {
        reason = "";
        switch (kind)
        {
            case DeviceKind.Cpu:
            case DeviceKind.IlgpuCpu:
                return true;
            case DeviceKind.Cuda:
                if (Context.GetCudaDevices().Count > 0) return true;
                reason = $"no CUDA device ({WhyNoCuda()})";
                return false;
            default:
                if (Context.GetCLDevices().Count > 0) return true;
                reason = $"no OpenCL device ({WhyNoOpenCL()})";
                return false;
        }
    }

    private static (DeviceKind kind, int index, (int Warp, int Warps) shape) Parse(string spec)
    {
        var noShape = (0, 0);
        if (spec == "auto") return (DeviceKind.Cpu, 0, noShape);
        string name = spec, idx = "0";
        int colon = spec.IndexOf(':');
        if (colon >= 0) { name = spec[..colon]; idx = spec[(colon + 1)..]; }
        if (name == "ilgpu-cpu")
            return (DeviceKind.IlgpuCpu, 0, EmulatorShape(spec, colon < 0 ? EmulatorDefaultShape : idx));
        if (!int.TryParse(idx, out int index) || index < 0)
            throw new ArgumentException($"device '{spec}': bad device index '{idx}'; expected {Usage}");
        return name switch
        {
            "cpu" when colon < 0 => (DeviceKind.Cpu, 0, noShape),
            "cuda" => (DeviceKind.Cuda, index, noShape),
            "opencl" => (DeviceKind.OpenCL, index, noShape),
            _ => throw new ArgumentException($"unknown device '{spec}'; expected {Usage}"),
        };
    }

    /// <summary>
    /// The ILGPU CPU accelerator's group shape "WxN": warps of W ≥ 2 threads (ILGPU's minimum), N warps per group (powers of two, W×N ≤ 1024).
    /// The accelerator runs every thread of a group as an OS thread and meets at each barrier, so on a 2-core machine
    /// a smaller group is many times faster (FLUX.1's 64² pipeline golden: 175 s at 4x4, 50 s at 2x2) while the kernels
    /// still run with several warps, shared memory and barriers. The default is ILGPU's own, 4x4.
    /// </summary>
    private static (int Warp, int Warps) EmulatorShape(string spec, string text)
    {
        var parts = text.Split('x');
        if (parts.Length == 2 && int.TryParse(parts[0], out int w) && int.TryParse(parts[1], out int n)
            && w >= 2 && n >= 1 && (w & (w - 1)) == 0 && (n & (n - 1)) == 0 && (long)w * n <= 1024)
            return (w, n);
        throw new ArgumentException($"device '{spec}': bad ILGPU CPU group shape '{text}'; expected WxN, warps of W ≥ 2 threads and N warps per group, powers of two with W×N ≤ 1024 (default {EmulatorDefaultShape})");
    }

    private static IlgpuDevice OpenIlgpu(ILGPU.Runtime.Device device, string id, DeviceKind kind) =>
        new(id, kind, device.CreateAccelerator(Context));

    private static Context CreateContext()
    {
        InstallNativeResolver();
        return Context.Create(b => b.Default().EnableAlgorithms().Optimize(OptimizationLevel.O2));
    }

    /// <summary>
    /// ILGPU binds to the unversioned names "cuda" and "OpenCL" (libcuda.so, libOpenCL.so). Driver packages
    /// often install only libcuda.so.1 / libOpenCL.so.1 (the .so link comes with -dev packages), and then
    /// the device silently vanishes. This resolver runs only when the default probe fails.
    /// </summary>
    public static void InstallNativeResolver()
    {
        if (Interlocked.Exchange(ref _resolverInstalled, 1) != 0) return;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (Assembly _, string name) =>
        {
            string[] candidates = name switch
            {
                "cuda" or "libcuda" or "libcuda.so" => ["libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib/wsl/lib/libcuda.so.1"],
                "OpenCL" or "libOpenCL" or "libOpenCL.so" => ["libOpenCL.so.1", "/usr/lib/x86_64-linux-gnu/libOpenCL.so.1"],
                _ => [],
            };
            foreach (var c in candidates)
                if (NativeLibrary.TryLoad(c, out var handle)) return handle;
            return IntPtr.Zero;
        };
    }

    private static string WhyNoCuda() =>
        CanLoad("libcuda.so") || CanLoad("libcuda.so.1")
            ? "the NVIDIA driver library loads, but it reports no usable GPU"
            : "the NVIDIA driver library libcuda.so(.1) was not found";

    private static string WhyNoOpenCL() =>
        CanLoad("libOpenCL.so") || CanLoad("libOpenCL.so.1")
            ? "libOpenCL loads, but no platform offers a device with the generic address space ILGPU needs (PoCL 3 lacks it; PoCL 6 has it)"
            : "libOpenCL.so(.1) was not found";

    private static bool CanLoad(string lib)
    {
        if (!NativeLibrary.TryLoad(lib, out var h)) return false;
        NativeLibrary.Free(h);
        return true;
    }
}
