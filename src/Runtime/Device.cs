using System.Collections.Concurrent;
using System.Diagnostics;
using ILGPU.Runtime;

namespace PureFlux.Runtime;

public enum DeviceKind
{
    /// <summary>Managed SIMD CPU backend (Vector512/Vector256, multithreaded): the fast CPU path.</summary>
    Cpu,
    Cuda,
    OpenCL,
    /// <summary>ILGPU's CPU accelerator: runs the GPU kernels on the CPU (slow; for testing the kernels).</summary>
    IlgpuCpu,
}

/// <summary>Where tensors live and operators run. Each device owns a <see cref="MemoryPool"/>.</summary>
public abstract class Device : IDisposable
{
    protected Device(string id, string name, DeviceKind kind)
    {
        Id = id;
        Name = name;
        Kind = kind;
        Pool = new MemoryPool(this);
    }

    /// <summary>The id accepted by <c>--device</c> ("cpu", "cuda", "cuda:1", "opencl", "ilgpu-cpu").</summary>
    public string Id { get; }
    /// <summary>Human-readable hardware name.</summary>
    public string Name { get; }
    public DeviceKind Kind { get; }
    public MemoryPool Pool { get; }

    /// <summary>Allocates memory outside the pool (the pool itself calls this for fresh buffers).</summary>
    public abstract DeviceBuffer AllocateRaw(long bytes);

    /// <summary>Waits until all queued work on this device is done.</summary>
    public abstract void Synchronize();

    public override string ToString() => $"{Id} ({Name})";

    public virtual void Dispose()
    {
        Pool.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The managed SIMD CPU backend's device: host memory, <see cref="Threads"/> worker threads.</summary>
public sealed class CpuDevice : Device
{
    public CpuDevice(int threads = 0)
        : base("cpu", CpuName(), DeviceKind.Cpu)
    {
        Threads = threads > 0 ? threads : DefaultThreads();
    }

    /// <summary>Worker threads operators may use (PUREFLUX_THREADS, else the processor count).</summary>
    public int Threads { get; }

    public ParallelOptions ParallelOptions => new() { MaxDegreeOfParallelism = Threads };

    public override DeviceBuffer AllocateRaw(long bytes) => new CpuBuffer(this, bytes);

    public override void Synchronize() { }

    private static int DefaultThreads() =>
        int.TryParse(Environment.GetEnvironmentVariable("PUREFLUX_THREADS"), out var t) && t > 0 ? t : Environment.ProcessorCount;

    private static string CpuName()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim() + $", {Environment.ProcessorCount} threads, {SimdDescription()}";
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return $"{Environment.ProcessorCount} threads, {SimdDescription()}";
    }

    public static string SimdDescription() =>
        System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512"
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "SSE/NEON";
}

/// <summary>
/// An ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU accelerator) with a per-device kernel cache.
/// Drive it from one thread at a time: kernels are cached per device, and OpenCL kernel objects are not safe
/// for concurrent launches (their arguments are set on the shared object).
/// </summary>
public sealed class IlgpuDevice : Device
{
    private readonly ConcurrentDictionary<object, object> _kernels = new();
    private readonly ConcurrentDictionary<string, TimeSpan> _compileTimes = new();

    internal IlgpuDevice(string id, DeviceKind kind, Accelerator accelerator)
        : base(id, accelerator.Name, kind)
    {
        Accelerator = accelerator;
    }

    public Accelerator Accelerator { get; }

    public override DeviceBuffer AllocateRaw(long bytes) => new IlgpuBuffer(this, bytes);

    public override void Synchronize() => Accelerator.Synchronize();

    /// <summary>
    /// Loads (compiles) a kernel once per device and caches it. The cache key is the loader's method, so
    /// pass a static lambda per kernel: <c>device.Kernel(static a =&gt; a.LoadAutoGroupedStreamKernel&lt;...&gt;(MyKernel))</c>.
    /// </summary>
    public TDelegate Kernel<TDelegate>(Func<Accelerator, TDelegate> loader) where TDelegate : Delegate =>
        Kernel(loader.Method, loader);

    /// <summary>As <see cref="Kernel{TDelegate}(Func{Accelerator, TDelegate})"/> with an explicit key (for specialised variants).</summary>
    public TDelegate Kernel<TDelegate>(object key, Func<Accelerator, TDelegate> loader) where TDelegate : Delegate
    {
        if (_kernels.TryGetValue(key, out var cached)) return (TDelegate)cached;
        var sw = Stopwatch.StartNew();
        var kernel = loader(Accelerator);
        _compileTimes[key is System.Reflection.MethodInfo m ? $"{m.DeclaringType?.Name}.{m.Name}" : key.ToString() ?? "?"] = sw.Elapsed;
        return (TDelegate)_kernels.GetOrAdd(key, kernel);
    }

    /// <summary>Time spent compiling each kernel on first use (the JIT cost, reported apart from run time).</summary>
    public IReadOnlyDictionary<string, TimeSpan> KernelCompileTimes => _compileTimes;

    public override void Dispose()
    {
        base.Dispose();
        Accelerator.Dispose();
    }
}
