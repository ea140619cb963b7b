using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Latents
{
    private static void Ilgpu(IlgpuDevice device, Tensor x, Tensor y, Kind kind, int c, int h, int w)
    {
        var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, int>(LayoutKernel));
        kernel((int)x.Count, x.AsView<float>(), y.AsView<float>(), (int)kind, c, h, w);
    }

    /// <summary>
    /// One thread per value, indexed over the [c, h, w] side (patchified side for (un)patchify):
    /// i = (ch·h + row)·w + col. It computes the matching index on the other side and copies one way or the other.
    /// </summary>
    [IlgpuKernel]
    private static void LayoutKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, int kind, int c, int h, int w)
    {
        if (kind >= 4)
        {
            // (Un)patch tokens: i indexes the full-size [c, 2h, 2w] map; token (r/2, q/2), feature ((r%2)·2 + q%2)·c + ch.
            int q = i % (2 * w);
            int rq = i / (2 * w);
            int r = rq % (2 * h);
            int chan = rq / (2 * h);
            long at = ((long)(r / 2) * w + q / 2) * 4 * c + ((r % 2) * 2 + q % 2) * c + chan;
            if (kind == 4) y[at] = x[i];
            else y[i] = x[at];
            return;
        }
        int col = i % w;
        int rest = i / w;
        int row = rest % h;
        int ch = rest / h;
        long other;
        if (kind <= 1)
        {
            // Patchified channel ch = c0·4 + dy·2 + dx ↔ full-size [c0][2·row + dy][2·col + dx] of [c/4, 2h, 2w].
            int c0 = ch / 4, dy = (ch / 2) % 2, dx = ch % 2;
            other = ((long)c0 * 2 * h + 2 * row + dy) * 2 * w + 2 * col + dx;
        }
        else
        {
            // Token (row·w + col), channel ch of [h·w, c].
            other = ((long)row * w + col) * c + ch;
        }
        if (kind == 0) y[i] = x[other];          // Patchify: i indexes y
        else if (kind == 1) y[other] = x[i];     // Unpatchify: i indexes x
        else if (kind == 2) y[other] = x[i];     // Pack: i indexes x
        else y[i] = x[other];                    // Unpack: i indexes y
    }
}
