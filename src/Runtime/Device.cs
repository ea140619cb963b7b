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
        NativeHeap.Configure();
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

    /// <summary>The experiment switch <c>fused-modulate</c>: true (the default) runs the modulated norms
    /// (<c>LayerNormModulate</c>, <c>RmsNorm</c> with a scale) as one kernel; false runs the norm, then the modulation as
    /// a separate pass over the activations, as an unfused PyTorch graph does.</summary>
    public bool FuseModulate { get; set; } = true;

    /// <summary>The experiment switch <c>fused-swiglu</c>: true (the default) runs SiLU(gate)·up as one kernel; false
    /// runs SiLU, then the product, as two.</summary>
    public bool FuseSwiGlu { get; set; } = true;

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
    /// <summary>Most worker threads PUREFLUX_THREADS may ask for.</summary>
    public const int MaxThreads = 1024;

    /// <param name="threads">Worker threads; 0 = PUREFLUX_THREADS, else the processor count.</param>
    /// <exception cref="ArgumentException">PUREFLUX_THREADS is set but not a whole number in 1..<see cref="MaxThreads"/>.</exception>
    public CpuDevice(int threads = 0)
        : base("cpu", CpuName(threads = threads > 0 ? threads : DefaultThreads()), DeviceKind.Cpu)
    {
        Threads = threads;
    }

    /// <summary>Worker threads operators may use (PUREFLUX_THREADS, else the processor count).</summary>
    public int Threads { get; }

    /// <summary>Which step of the GEMM kernel ladder <c>Gemm.Linear</c> runs on this device (the experiment switch
    /// <c>gemm=LEVEL</c>); the default is the fastest, <see cref="CpuGemmLevel.Parallel"/>.</summary>
    public CpuGemmLevel GemmLevel { get; set; } = CpuGemmLevel.Parallel;

    /// <summary>How <c>Attention.Forward</c> computes when its options ask for the fast path (the experiment switch
    /// <c>attention=flash|materialized</c>); the default is tiled flash attention.</summary>
    public CpuAttentionKernel AttentionKernel { get; set; } = CpuAttentionKernel.Flash;

    public ParallelOptions ParallelOptions => new() { MaxDegreeOfParallelism = Threads };

    public override DeviceBuffer AllocateRaw(long bytes) => new CpuBuffer(this, bytes);

    public override void Synchronize() { }

    /// <summary>PUREFLUX_THREADS when set (a bad value is an error, never silently ignored), else the processor count.</summary>
    public static int DefaultThreads() => ParseThreads(Environment.GetEnvironmentVariable("PUREFLUX_THREADS"));

    /// <summary>A PUREFLUX_THREADS value: null or blank = the processor count; otherwise 1..<see cref="MaxThreads"/>, or a one-line ArgumentException.</summary>
    public static int ParseThreads(string? v)
    {
        if (string.IsNullOrWhiteSpace(v)) return Environment.ProcessorCount;
        if (!int.TryParse(v.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int t) || t < 1 || t > MaxThreads)
            throw new ArgumentException($"PUREFLUX_THREADS='{v}': expected a whole number of threads from 1 to {MaxThreads} (unset: all {Environment.ProcessorCount} processors)");
        return t;
    }

    /// <summary>"model name, N threads, SIMD": the threads this device really uses, not the processor count.</summary>
    private static string CpuName(int threads)
    {
        string used = threads == Environment.ProcessorCount ? $"{threads} threads" : $"{threads} of {Environment.ProcessorCount} threads";
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal))
                    return line[(line.IndexOf(':') + 1)..].Trim() + $", {used}, {SimdDescription()}";
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return $"{used}, {SimdDescription()}";
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

/// <summary>Steps of the CPU GEMM kernel ladder that run every weight type (F32, F16, BF16).</summary>
public enum CpuGemmLevel
{
    /// <summary>Three scalar loops (ladder step 0): a reference, orders of magnitude slower.</summary>
    Naive,
    /// <summary>The packed, register-blocked AVX-512 kernel on one thread.</summary>
    Packed,
    /// <summary>The packed kernel across the device's threads (the default).</summary>
    Parallel,
}

/// <summary>CPU attention implementations behind <c>Attention.Forward</c>'s fast path.</summary>
public enum CpuAttentionKernel
{
    /// <summary>Tiled flash attention: online softmax, no S_q × S_k matrix (the default).</summary>
    Flash,
    /// <summary>The full score matrix per head, formed and multiplied with the packed GEMM (S_q·S_k floats per head).</summary>
    Materialized,
}
