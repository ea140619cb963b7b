using PureFlux.Tests.Support;

namespace PureFlux.Tests.Runtime;

public class TensorTests
{
    private static float[] Iota(int n) => Enumerable.Range(0, n).Select(i => i * 0.25f - 3f).ToArray();

    [Fact]
    public void Reshape_is_a_view_of_the_same_memory()
    {
        var dev = new CpuDevice(1);
        using var t = Tensor.FromArray(dev, Iota(24), 2, 3, 4);
        using var r = t.Reshape(6, 4);
        Assert.Equal([6, 4], r.Shape.ToArray());
        Assert.Equal(t.Pointer, r.Pointer);
        r.AsSpan<float>()[5] = 100f;
        Assert.Equal(100f, t.AsSpan<float>()[5]);
        using var flat = t.Reshape(24);
        Assert.Equal(t.ToArray<float>(), flat.ToArray<float>());
        using var scalar = Tensor.FromArray(dev, [5f]).Reshape();
        Assert.Equal(0, scalar.Rank);
        Assert.Equal(1, scalar.Count);
        var e = Assert.Throws<ArgumentException>(() => t.Reshape(5, 5));
        Assert.Contains("[2, 3, 4]", e.Message);
        Assert.Contains("[5, 5]", e.Message);
    }

    [Fact]
    public void Slice_selects_rows_and_nests()
    {
        var dev = new CpuDevice(1);
        var data = Iota(5 * 3 * 2);
        using var t = Tensor.FromArray(dev, data, 5, 3, 2);
        using var s = t.Slice(1, 3);
        Assert.Equal([3, 3, 2], s.Shape.ToArray());
        Assert.Equal(data.AsSpan(6, 18).ToArray(), s.ToArray<float>());
        using var s2 = s.Slice(2, 1); // row 3 of t
        Assert.Equal(data.AsSpan(18, 6).ToArray(), s2.ToFloatArray());
        using var empty = t.Slice(5, 0);
        Assert.Equal(0, empty.Count);
        s2.AsSpan<float>()[0] = -1f;
        Assert.Equal(-1f, t.ToArray<float>()[18]);

        Assert.Throws<ArgumentOutOfRangeException>(() => t.Slice(4, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Slice(-1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Slice(0, -1));
        using var sc = Tensor.FromArray(dev, [1f]).Reshape();
        Assert.Throws<ArgumentOutOfRangeException>(() => sc.Slice(0, 1));
    }

    [Fact]
    public void Slice_of_packed_int4_needs_whole_bytes_per_row()
    {
        var dev = new CpuDevice(1);
        using var even = Tensor.FromSpan<byte>(dev, new byte[] { 0x10, 0x32, 0x54, 0x76 }, Shape.Of(2, 4), DType.I4);
        using var row = even.Slice(1, 1);
        Assert.Equal(new byte[] { 0x54, 0x76 }, row.ToArray<byte>());
        using var odd = Tensor.Empty(dev, DType.I4, 3, 3);
        Assert.Equal(5, odd.ByteCount);
        Assert.Throws<ArgumentException>(() => odd.Slice(1, 1));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void CopyTo_across_devices_keeps_every_byte(string backend)
    {
        var gpu = Backends.Get(backend);
        var cpu = new CpuDevice(1);
        var data = Iota(7 * 33); // odd sizes: not a multiple of any vector width
        using var host = Tensor.FromArray(cpu, data, 7, 33);

        using var onGpu = host.To(gpu);
        Assert.Same(gpu, onGpu.Device);
        Assert.Equal(data, onGpu.ToArray<float>());

        using var gpu2 = Tensor.Empty(gpu, DType.F32, 7 * 33);
        onGpu.CopyTo(gpu2); // device -> device
        using var back = Tensor.Zeros(cpu, DType.F32, Shape.Of(7, 33));
        gpu2.CopyTo(back); // device -> host
        Assert.Equal(data, back.ToArray<float>());

        // Views with byte offsets on both sides: rows 2..4 of the host tensor into rows 4..6 of a device tensor.
        using var target = Tensor.Zeros(gpu, DType.F32, Shape.Of(7, 33));
        using (var src = host.Slice(2, 3))
        using (var dst = target.Slice(4, 3))
            src.CopyTo(dst);
        var expected = new float[7 * 33];
        data.AsSpan(2 * 33, 3 * 33).CopyTo(expected.AsSpan(4 * 33));
        Assert.Equal(expected, target.ToArray<float>());
        using (var rows = target.Slice(4, 3))
        using (var hostRows = Tensor.Empty(cpu, DType.F32, 3, 33))
        {
            rows.CopyTo(hostRows);
            Assert.Equal(data.AsSpan(2 * 33, 3 * 33).ToArray(), hostRows.ToArray<float>());
        }

        // BF16 upload/download and conversion on the way back.
        ushort[] bits = [Bf16.FromFloat(1f), Bf16.FromFloat(-2.5f), Bf16.FromFloat(1e-3f)];
        using var b = Tensor.FromSpan<ushort>(gpu, bits, Shape.Of(3), DType.BF16);
        Assert.Equal(bits.Select(Bf16.ToFloat).ToArray(), b.ToFloatArray());

        var e = Assert.Throws<ArgumentException>(() => host.CopyTo(Tensor.Empty(gpu, DType.F32, 7, 32)));
        Assert.Contains("element count", e.Message);
        Assert.Throws<ArgumentException>(() => host.CopyTo(Tensor.Empty(gpu, DType.I32, 7, 33)));
    }

    [Fact]
    public void ToFloatArray_converts_bf16_f16_and_integers()
    {
        var dev = new CpuDevice(1);
        float[] values = [0f, 1f, -2f, 0.5f, 3.140625f, -256f, 0.0078125f, float.PositiveInfinity]; // exact in both BF16 and F16
        using var bf = Tensor.FromSpan<ushort>(dev, values.Select(Bf16.FromFloat).ToArray(), Shape.Of(values.Length), DType.BF16);
        Assert.Equal(values, bf.ToFloatArray());
        // BF16 rounds to nearest even on 8 mantissa bits: 1 + 2^-8 is halfway and goes to 1, 1 + 3·2^-8 up to 1 + 2^-6.
        Assert.Equal(1f, Bf16.ToFloat(Bf16.FromFloat(1f + 1f / 256)));
        Assert.Equal(1f + 1f / 64, Bf16.ToFloat(Bf16.FromFloat(1f + 3f / 256)));
        Assert.True(float.IsNaN(Bf16.ToFloat(Bf16.FromFloat(float.NaN))));

        using var h = Tensor.FromSpan<Half>(dev, values.Select(v => (Half)v).ToArray(), Shape.Of(values.Length));
        Assert.Equal(DType.F16, h.DType);
        Assert.Equal(values, h.ToFloatArray());

        using var i8 = Tensor.FromSpan<sbyte>(dev, new sbyte[] { -128, 0, 127 }, Shape.Of(3));
        Assert.Equal([-128f, 0f, 127f], i8.ToFloatArray());
        using var i64 = Tensor.FromSpan<long>(dev, new long[] { -5, 1L << 40 }, Shape.Of(2));
        Assert.Equal([-5f, (float)(1L << 40)], i64.ToFloatArray());
        using var i4 = Tensor.Empty(dev, DType.I4, 4);
        Assert.Throws<InvalidOperationException>(() => i4.ToFloatArray());
    }

    [Fact]
    public void FromSpan_rejects_data_that_does_not_fill_the_shape()
    {
        var dev = new CpuDevice(1);
        var e = Assert.Throws<ArgumentException>(() => Tensor.FromSpan<float>(dev, new float[5], Shape.Of(2, 3), name: "w"));
        Assert.Contains("'w'", e.Message);
        Assert.Throws<ArgumentException>(() => new Tensor(dev.AllocateRaw(16), 8, DType.F32, Shape.Of(3)));
        Assert.Throws<ArgumentException>(() => new Shape(2, -1));
    }

    [Fact]
    public void A_disposed_tensor_refuses_every_access()
    {
        var dev = new CpuDevice(1);
        var t = Tensor.FromArray(dev, [1f, 2f], 2);
        t.Name = "w1";
        var other = Tensor.Empty(dev, DType.F32, 2);
        t.Dispose();
        t.Dispose(); // idempotent: the buffer goes back to the pool once
        Assert.Equal(256, dev.Pool.LiveBytes);

        var e = Assert.Throws<ObjectDisposedException>(() => t.AsSpan<float>().Length);
        Assert.Contains("w1", e.Message);
        Assert.Throws<ObjectDisposedException>(() => t.ToArray<float>());
        Assert.Throws<ObjectDisposedException>(() => t.ToFloatArray());
        Assert.Throws<ObjectDisposedException>(() => t.CopyFrom<float>([3f, 4f]));
        Assert.Throws<ObjectDisposedException>(() => t.CopyTo(other));
        Assert.Throws<ObjectDisposedException>(() => other.CopyTo(t));
        Assert.Throws<ObjectDisposedException>(() => t.Clear());
        Assert.Throws<ObjectDisposedException>(() => t.To(dev));
        Assert.Throws<ObjectDisposedException>(() => t.Pointer);
        other.Dispose();
        Assert.Equal(0, dev.Pool.LiveBytes);

        var raw = dev.AllocateRaw(64);
        raw.Dispose();
        Assert.Throws<ObjectDisposedException>(() => new Tensor(raw, 0, DType.F32, Shape.Of(4)));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void A_disposed_device_tensor_refuses_access(string backend)
    {
        var dev = Backends.Get(backend);
        var t = Tensor.Zeros(dev, DType.F32, Shape.Of(3));
        t.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.AsView<float>());
        Assert.Throws<ObjectDisposedException>(() => t.ToArray<float>());
        var cpu = new CpuDevice(1);
        using var h = Tensor.Zeros(cpu, DType.F32, Shape.Of(3));
        Assert.Throws<ObjectDisposedException>(() => h.CopyTo(t));
        Assert.Throws<ObjectDisposedException>(() => t.CopyTo(h));
        var e = Assert.Throws<InvalidOperationException>(() => h.AsView<float>());
        Assert.Contains("AsView needs an ILGPU tensor", e.Message);
    }
}
