using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Runtime;

/// <summary>A block of device memory. Owned by a <see cref="MemoryPool"/>, a file mapping, or its creator.</summary>
public abstract class DeviceBuffer : IDisposable
{
    protected DeviceBuffer(Device device, long bytes)
    {
        Device = device;
        Bytes = bytes;
    }

    public Device Device { get; }
    public long Bytes { get; }
    public bool IsDisposed { get; private set; }

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }

    protected abstract void Release();
}

/// <summary>Host memory: 64-byte aligned native memory, or a view into memory someone else owns (e.g. an mmap).</summary>
public sealed unsafe class CpuBuffer : DeviceBuffer
{
    private readonly IDisposable? _owner;
    private readonly bool _ownsMemory;

    /// <summary>Allocates <paramref name="bytes"/> of 64-byte aligned native memory, zero-filled.</summary>
    internal CpuBuffer(Device device, long bytes) : base(device, bytes)
    {
        Pointer = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        NativeMemory.Clear((void*)Pointer, (nuint)bytes);
        _ownsMemory = true;
    }

    /// <summary>Wraps memory owned elsewhere; <paramref name="owner"/> (may be null) is kept alive with this buffer.</summary>
    public CpuBuffer(Device device, nint pointer, long bytes, IDisposable? owner) : base(device, bytes)
    {
        Pointer = pointer;
        _owner = owner;
    }

    public nint Pointer { get; }

    protected override void Release()
    {
        if (_ownsMemory) NativeMemory.AlignedFree((void*)Pointer);
        _owner?.Dispose();
    }
}

/// <summary>Memory on an ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU accelerator).</summary>
public sealed class IlgpuBuffer : DeviceBuffer
{
    internal IlgpuBuffer(IlgpuDevice device, long bytes) : base(device, bytes)
    {
        Memory = device.Accelerator.Allocate1D<byte>(Math.Max(bytes, 1));
        Memory.MemSetToZero();
    }

    public MemoryBuffer1D<byte, Stride1D.Dense> Memory { get; }

    /// <summary>The whole buffer as a contiguous byte view.</summary>
    public ArrayView<byte> ByteView => Memory.View.AsContiguous();

    protected override void Release() => Memory.Dispose();
}
