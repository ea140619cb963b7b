using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// A leading batch axis [B, S, H, D] through attention and RoPE: each sample must equal the same op run on that
/// sample alone (bit for bit: the batch runs the one implementation per sample), and samples must not mix.
/// </summary>
public class BatchAxisTests
{
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Batched_attention_equals_each_sample_alone(string backend)
    {
        var dev = Backends.Get(backend);
        const int b = 3, s = 37, h = 2, d = 32;
        int n = b * s * h * d;
        var qh = HostData.Random(n, 1);
        var kh = HostData.Random(n, 2);
        var vh = HostData.Random(n, 3);
        for (int i = n / b; i < n; i++) vh[i] += 3f; // samples 1.. differ in scale: a mixed-up sample shows
        using var q = Tensor.FromSpan<float>(dev, qh, new Shape(b, s, h, d));
        using var k = Tensor.FromSpan<float>(dev, kh, new Shape(b, s, h, d));
        using var v = Tensor.FromSpan<float>(dev, vh, new Shape(b, s, h, d));
        using var o = Tensor.Empty(dev, DType.F32, b, s, h, d);
        Attention.Forward(q, k, v, o);
        var all = o.ToFloatArray();
        int per = s * h * d;
        for (int i = 0; i < b; i++)
        {
            using var one = Tensor.Empty(dev, DType.F32, s, h, d);
            Attention.Forward(q.Slice(i, 1).Reshape(s, h, d), k.Slice(i, 1).Reshape(s, h, d), v.Slice(i, 1).Reshape(s, h, d), one);
            Assert.Equal(one.ToFloatArray(), all.AsSpan(i * per, per).ToArray());
        }
        // Sample 1 attends to its own values (shifted by +3), not to sample 0's.
        Assert.True(all.AsSpan(per, per).ToArray().Average() > all.AsSpan(0, per).ToArray().Average() + 2.5);
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Batched_attention_rejects_a_batch_mismatch_with_one_line(string backend)
    {
        var dev = Backends.Get(backend);
        using var q = Tensor.Empty(dev, DType.F32, 2, 5, 1, 8);
        using var k = Tensor.Empty(dev, DType.F32, 5, 1, 8);
        using var o = Tensor.Empty(dev, DType.F32, 2, 5, 1, 8);
        var e = Assert.ThrowsAny<ArgumentException>(() => Attention.Forward(q, k, k, o));
        Assert.Contains("expected [2, S, H, D]", e.Message);
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Batched_rope_applies_the_shared_table_to_every_sample(string backend)
    {
        var dev = Backends.Get(backend);
        const int b = 2, s = 9, h = 3, d = 16;
        var xh = HostData.Random(b * s * h * d, 4);
        var cosh = HostData.Random(s * d, 5);
        var sinh = HostData.Random(s * d, 6);
        using var x = Tensor.FromSpan<float>(dev, xh, new Shape(b, s, h, d));
        using var cos = Tensor.FromSpan<float>(dev, cosh, new Shape(s, d));
        using var sin = Tensor.FromSpan<float>(dev, sinh, new Shape(s, d));
        using var y = Tensor.Empty(dev, DType.F32, b, s, h, d);
        Rope.ApplyInterleaved(x, cos, sin, y);
        var all = y.ToFloatArray();
        int per = s * h * d;
        for (int i = 0; i < b; i++)
        {
            using var one = Tensor.Empty(dev, DType.F32, s, h, d);
            Rope.ApplyInterleaved(x.Slice(i, 1).Reshape(s, h, d), cos, sin, one);
            Assert.Equal(one.ToFloatArray(), all.AsSpan(i * per, per).ToArray());
        }
        // Interleaved pair (0, 1) of sample 1, token 0, head 0, by hand.
        int o0 = per;
        float expected = xh[o0] * cosh[0] - xh[o0 + 1] * sinh[0];
        Assert.Equal(expected, all[o0], 5);
    }
}
