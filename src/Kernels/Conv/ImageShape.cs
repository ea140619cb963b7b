namespace PureFlux.Kernels;

/// <summary>Reads image-like shapes: [C, H, W] or NCHW with batch 1 ([1, C, H, W]), as the VAE tensors come.</summary>
internal static class ImageShape
{
    /// <summary>(C, H, W) of a [C, H, W] or [1, C, H, W] tensor; a clear ArgumentException otherwise.</summary>
    public static (int C, int H, int W) Chw(string op, string arg, Tensor t)
    {
        var d = t.Shape;
        if (d.Rank == 3) return (d[0], d[1], d[2]);
        if (d.Rank == 4)
        {
            if (d[0] != 1)
                throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {d}; only batch 1 is supported (expected [C, H, W] or [1, C, H, W])");
            return (d[1], d[2], d[3]);
        }
        throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {d}; expected [C, H, W] or [1, C, H, W]");
    }

    /// <summary>Checks that <paramref name="t"/> is [c, h, w] or [1, c, h, w].</summary>
    public static void Expect(string op, string arg, Tensor t, int c, int h, int w)
    {
        var (tc, th, tw) = Chw(op, arg, t);
        if (tc != c || th != h || tw != w)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {t.Shape}; expected [{c}, {h}, {w}] (or [1, {c}, {h}, {w}])");
    }

    /// <summary>Checks that a per-channel parameter is [c] (or [1, c]).</summary>
    public static void Vector(string op, string arg, Tensor t, int c)
    {
        if (t.Count != c || t.Shape.Last != c)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {t.Shape}; expected [{c}]");
    }
}
