using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>Deterministic test inputs and small host helpers shared by the element-wise / norm / RoPE tests.</summary>
internal static class HostData
{
    public static float[] Random(int count, int seed, float scale = 1f, float offset = 0f)
    {
        var rng = new Random(seed);
        var a = new float[count];
        for (int i = 0; i < a.Length; i++) a[i] = offset + scale * (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>Fills a guarded output with <paramref name="data"/> (for in-place / aliasing cases).</summary>
    public static Guarded GuardedWith(Device dev, float[] data, params int[] dims)
    {
        var g = new Guarded(dev, DType.F32, dims);
        g.Tensor.CopyFrom<float>(data);
        return g;
    }

    /// <summary>[1, H, S, D] (or [H, S, D]) → [S, H, D].</summary>
    public static float[] HeadsFirstToSequenceFirst(float[] a, int h, int s, int d)
    {
        var o = new float[a.Length];
        for (int hh = 0; hh < h; hh++)
            for (int ss = 0; ss < s; ss++)
                Array.Copy(a, (hh * s + ss) * d, o, (ss * h + hh) * d, d);
        return o;
    }
}
