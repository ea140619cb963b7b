using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Upsample
{
    private static void Nearest2xIlgpu(IlgpuDevice device, Tensor x, Tensor y, int c, int h, int w)
    {
        var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(Nearest2xKernel));
        kernel((int)y.Count, x.AsView<float>(), y.AsView<float>(), h, w);
    }

    /// <summary>One thread per output value: y[c][oy][ox] = x[c][oy / 2][ox / 2].</summary>
    [IlgpuKernel]
    private static void Nearest2xKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, int h, int w)
    {
        int ow = 2 * w;
        int ox = i % ow;
        int rest = i / ow;          // c·2h + oy
        int oy = rest % (2 * h);
        int ch = rest / (2 * h);
        y[i] = x[((long)ch * h + oy / 2) * w + ox / 2];
    }
}
