using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Runtime;

/// <summary>
/// A dense row-major tensor on one device: shape, dtype and a byte range of a <see cref="DeviceBuffer"/>.
/// Tensors made by <see cref="Empty"/> rent from the device's pool and return to it on Dispose; views
/// (<see cref="Reshape"/>, <see cref="Slice"/>) and wrapped memory never free anything.
/// </summary>
public sealed unsafe class Tensor : IDisposable
{
    private readonly bool _pooled;
    private readonly bool _ownsBuffer;
    private bool _disposed;

    /// <param name="pooled">Dispose returns <paramref name="buffer"/> to its device's pool.</param>
    /// <param name="ownsBuffer">Dispose disposes <paramref name="buffer"/> (e.g. a zero-copy view of a file mapping).</param>
    public Tensor(DeviceBuffer buffer, long byteOffset, DType dtype, Shape shape, string? name = null, bool pooled = false, bool ownsBuffer = false)
    {
        if (buffer.IsDisposed) throw new ObjectDisposedException($"tensor '{name ?? "?"}': its buffer is already disposed");
        long need = dtype.ByteCount(shape.Count);
        if (byteOffset < 0 || byteOffset + need > buffer.Bytes)
            throw new ArgumentException($"tensor '{name ?? "?"}' {dtype}{shape} needs {need} bytes at offset {byteOffset}, but its buffer has {buffer.Bytes}");
        Buffer = buffer;
        ByteOffset = byteOffset;
        DType = dtype;
        Shape = shape;
        Name = name;
        _pooled = pooled;
        _ownsBuffer = ownsBuffer && !pooled;
    }

    public DeviceBuffer Buffer { get; }
    public long ByteOffset { get; }
    public DType DType { get; }
    public Shape Shape { get; }
    /// <summary>Name used in error messages (weight name, or the op argument).</summary>
    public string? Name { get; set; }
    public Device Device => Buffer.Device;
    public long Count => Shape.Count;
    public long ByteCount => DType.ByteCount(Shape.Count);
    public int Rank => Shape.Rank;

    /// <summary>A tensor from the device's pool; contents undefined.</summary>
    public static Tensor Empty(Device device, DType dtype, Shape shape, string? name = null) =>
        new(device.Pool.Rent(Math.Max(1, dtype.ByteCount(shape.Count))), 0, dtype, shape, name, pooled: true);

    public static Tensor Empty(Device device, DType dtype, params int[] dims) => Empty(device, dtype, new Shape(dims));

    /// <summary>A zero-filled tensor from the device's pool.</summary>
    public static Tensor Zeros(Device device, DType dtype, Shape shape, string? name = null)
    {
        var t = Empty(device, dtype, shape, name);
        t.Clear();
        return t;
    }

    /// <summary>Copies host data into a new tensor on <paramref name="device"/>.</summary>
    public static Tensor FromSpan<T>(Device device, ReadOnlySpan<T> data, Shape shape, DType? dtype = null, string? name = null) where T : unmanaged
    {
        var dt = dtype ?? DTypeOf<T>();
        if (dt.ByteCount(shape.Count) != (long)data.Length * sizeof(T))
            throw new ArgumentException($"tensor '{name ?? "?"}': {data.Length} {typeof(T).Name} values do not fill {dt}{shape}");
        var t = Empty(device, dt, shape, name);
        t.CopyFrom(data);
        return t;
    }

    public static Tensor FromArray(Device device, float[] data, params int[] dims) => FromSpan<float>(device, data, new Shape(dims));

    /// <summary>The natural storage type for a dtype (BF16/F16 as raw ushort bits, I4 as packed bytes).</summary>
    public static DType DTypeOf<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? DType.F32
        : typeof(T) == typeof(sbyte) ? DType.I8
        : typeof(T) == typeof(byte) ? DType.U8
        : typeof(T) == typeof(int) ? DType.I32
        : typeof(T) == typeof(long) ? DType.I64
        : typeof(T) == typeof(System.Half) ? DType.F16
        : typeof(T) == typeof(ushort) ? DType.BF16
        : throw new ArgumentException($"no dtype for {typeof(T).Name}");

    /// <summary>Same data, new shape (element count must match). Does not own the buffer.</summary>
    public Tensor Reshape(params int[] dims)
    {
        var s = new Shape(dims);
        if (s.Count != Count) throw new ArgumentException($"tensor '{Name ?? "?"}': cannot reshape {Shape} ({Count} elements) to {s} ({s.Count} elements)");
        return new Tensor(Buffer, ByteOffset, DType, s, Name);
    }

    /// <summary>Rows [start, start+count) along the first axis, as a view.</summary>
    public Tensor Slice(int start, int count)
    {
        if (Rank == 0 || start < 0 || count < 0 || start + count > Shape[0])
            throw new ArgumentOutOfRangeException(nameof(start), $"tensor '{Name ?? "?"}' {Shape}: rows [{start}, {start + count}) out of range");
        var dims = Shape.ToArray();
        long rowElems = Count / Math.Max(1, dims[0]);
        if (DType == DType.I4 && rowElems % 2 != 0) throw new ArgumentException("I4 rows must hold an even number of elements to slice");
        dims[0] = count;
        return new Tensor(Buffer, ByteOffset + DType.ByteCount(rowElems * start), DType, new Shape(dims), Name);
    }

    /// <summary>Host memory of a CPU tensor. T must match the storage size (float for F32, ushort for BF16, ...).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        CheckLive();
        if (Buffer is not CpuBuffer cpu)
            throw new InvalidOperationException($"tensor '{Name ?? "?"}' lives on {Device.Id}; AsSpan needs a CPU tensor");
        long bytes = ByteCount;
        if (bytes % sizeof(T) != 0) throw new InvalidOperationException($"tensor '{Name ?? "?"}' {DType}: {bytes} bytes is not a whole number of {typeof(T).Name}");
        long n = bytes / sizeof(T);
        if (n > int.MaxValue) throw new InvalidOperationException($"tensor '{Name ?? "?"}' is too large for one span ({n} elements)");
        return new Span<T>((void*)(cpu.Pointer + (nint)ByteOffset), (int)n);
    }

    /// <summary>Pointer to the first element of a CPU tensor.</summary>
    public nint Pointer => _disposed ? throw new ObjectDisposedException($"tensor '{Name ?? "?"}'")
        : Buffer is CpuBuffer cpu ? cpu.Pointer + (nint)ByteOffset
        : throw new InvalidOperationException($"tensor '{Name ?? "?"}' lives on {Device.Id}; Pointer needs a CPU tensor");

    /// <summary>Device memory of an ILGPU tensor, typed as T.</summary>
    public ArrayView<T> AsView<T>() where T : unmanaged
    {
        CheckLive();
        if (Buffer is not IlgpuBuffer g)
            throw new InvalidOperationException($"tensor '{Name ?? "?"}' lives on {Device.Id}; AsView needs an ILGPU tensor");
        long bytes = ByteCount;
        // Round I4 / odd byte tensors up to whole elements of T (the buffer is large enough: sizes are pooled classes).
        long n = (bytes + sizeof(T) - 1) / sizeof(T);
        return g.ByteView.SubView(ByteOffset, n * sizeof(T)).Cast<T>();
    }

    /// <summary>Copies host data in (host or device tensor).</summary>
    public void CopyFrom<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        CheckLive();
        var bytes = MemoryMarshal.AsBytes(data);
        if (bytes.Length != ByteCount) throw new ArgumentException($"tensor '{Name ?? "?"}' {DType}{Shape} holds {ByteCount} bytes; got {bytes.Length}");
        switch (Buffer)
        {
            case CpuBuffer cpu:
                bytes.CopyTo(new Span<byte>((void*)(cpu.Pointer + (nint)ByteOffset), bytes.Length));
                break;
            case IlgpuBuffer g:
                g.ByteView.SubView(ByteOffset, bytes.Length).CopyFromCPU(bytes);
                break;
        }
    }

    /// <summary>Copies the raw contents to a host array of T.</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        CheckLive();
        long bytes = ByteCount;
        if (bytes % sizeof(T) != 0) throw new InvalidOperationException($"tensor '{Name ?? "?"}' {DType}: not a whole number of {typeof(T).Name}");
        var result = new T[bytes / sizeof(T)];
        var dst = MemoryMarshal.AsBytes(result.AsSpan());
        switch (Buffer)
        {
            case CpuBuffer cpu:
                new ReadOnlySpan<byte>((void*)(cpu.Pointer + (nint)ByteOffset), dst.Length).CopyTo(dst);
                break;
            case IlgpuBuffer g:
                Device.Synchronize();
                g.ByteView.SubView(ByteOffset, dst.Length).CopyToCPU(dst);
                break;
        }
        return result;
    }

    /// <summary>The values as float32 (converting F16/BF16/integers).</summary>
    public float[] ToFloatArray()
    {
        switch (DType)
        {
            case DType.F32: return ToArray<float>();
            case DType.BF16: return Array.ConvertAll(ToArray<ushort>(), Bf16.ToFloat);
            case DType.F16: return Array.ConvertAll(ToArray<System.Half>(), h => (float)h);
            case DType.I8: return Array.ConvertAll(ToArray<sbyte>(), v => (float)v);
            case DType.U8: return Array.ConvertAll(ToArray<byte>(), v => (float)v);
            case DType.F8E4M3: return Array.ConvertAll(ToArray<byte>(), v => Fp8.Decode(v, Fp8Format.E4M3));
            case DType.F8E5M2: return Array.ConvertAll(ToArray<byte>(), v => Fp8.Decode(v, Fp8Format.E5M2));
            case DType.I32: return Array.ConvertAll(ToArray<int>(), v => (float)v);
            case DType.I64: return Array.ConvertAll(ToArray<long>(), v => (float)v);
            default: throw new InvalidOperationException($"tensor '{Name ?? "?"}': ToFloatArray does not unpack {DType}");
        }
    }

    /// <summary>Copies this tensor to <paramref name="device"/> (a pooled tensor there).</summary>
    public Tensor To(Device device)
    {
        CheckLive();
        var t = Empty(device, DType, Shape, Name);
        try { CopyTo(t); }
        catch { t.Dispose(); throw; }
        return t;
    }

    /// <summary>Copies all bytes into <paramref name="destination"/> (same dtype and element count; any devices).</summary>
    public void CopyTo(Tensor destination)
    {
        CheckLive();
        destination.CheckLive();
        if (destination.DType != DType || destination.Count != Count)
            throw new ArgumentException($"copy {Name ?? "?"} {DType}{Shape} -> {destination.Name ?? "?"} {destination.DType}{destination.Shape}: dtype and element count must match");
        long bytes = ByteCount;
        switch (Buffer, destination.Buffer)
        {
            case (CpuBuffer src, _):
                destination.CopyFrom(new ReadOnlySpan<byte>((void*)(src.Pointer + (nint)ByteOffset), checked((int)bytes)));
                break;
            case (IlgpuBuffer src, CpuBuffer dst):
                Device.Synchronize();
                src.ByteView.SubView(ByteOffset, bytes).CopyToCPU(new Span<byte>((void*)(dst.Pointer + (nint)destination.ByteOffset), checked((int)bytes)));
                break;
            case (IlgpuBuffer src, IlgpuBuffer dst) when src.Device == dst.Device:
                src.ByteView.SubView(ByteOffset, bytes).CopyTo(dst.ByteView.SubView(destination.ByteOffset, bytes));
                break;
            default:
                destination.CopyFrom<byte>(ToArray<byte>());
                break;
        }
    }

    /// <summary>Sets every byte to zero.</summary>
    public void Clear()
    {
        CheckLive();
        switch (Buffer)
        {
            case CpuBuffer cpu:
                NativeMemory.Clear((void*)(cpu.Pointer + (nint)ByteOffset), (nuint)ByteCount);
                break;
            case IlgpuBuffer g:
                g.ByteView.SubView(ByteOffset, ByteCount).MemSetToZero();
                break;
        }
    }

    public override string ToString() => $"{Name ?? "tensor"} {DType}{Shape} on {Device.Id}";

    private void CheckLive()
    {
        if (_disposed) throw new ObjectDisposedException($"tensor '{Name ?? "?"}'");
    }

    /// <summary>Returns a pooled buffer to its pool, disposes an owned one; views and wrapped memory are left alone.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_pooled) Device.Pool.Return(Buffer);
        else if (_ownsBuffer) Buffer.Dispose();
    }
}
