namespace PureFlux.Tests.Support;

/// <summary>
/// An output tensor with sentinel bytes before and after it in the same buffer, to catch kernels that write
/// out of bounds. Call <see cref="AssertIntact"/> after the op.
/// </summary>
public sealed class Guarded : IDisposable
{
    private const int Pad = 256;
    private const byte Sentinel = 0xA5;
    private readonly DeviceBuffer _buffer;

    public Guarded(Device device, DType dtype, params int[] dims)
    {
        var shape = new Shape(dims);
        long bytes = dtype.ByteCount(shape.Count);
        _buffer = device.AllocateRaw(bytes + 2 * Pad);
        var whole = new Tensor(_buffer, 0, DType.U8, new Shape((int)(bytes + 2 * Pad)));
        var fill = new byte[whole.Count];
        Array.Fill(fill, Sentinel);
        whole.CopyFrom<byte>(fill);
        Tensor = new Tensor(_buffer, Pad, dtype, shape, "out");
    }

    public Tensor Tensor { get; }

    public static implicit operator Tensor(Guarded g) => g.Tensor;

    public float[] ToFloatArray() => Tensor.ToFloatArray();

    public void AssertIntact(string what)
    {
        var whole = new Tensor(_buffer, 0, DType.U8, new Shape((int)_buffer.Bytes)).ToArray<byte>();
        long end = Pad + Tensor.ByteCount;
        for (int i = 0; i < Pad; i++)
            Assert.True(whole[i] == Sentinel, $"{what}: wrote {Pad - i} bytes before the output");
        for (long i = end; i < whole.Length; i++)
            Assert.True(whole[i] == Sentinel, $"{what}: wrote past the end of the output (byte {i - end} after it)");
    }

    public void Dispose() => _buffer.Dispose();
}
