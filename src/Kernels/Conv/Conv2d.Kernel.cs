using ILGPU;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Conv2d
{
    /// <summary>
    /// Scalar parameters of the ILGPU conv kernels, passed by value. Public only because ILGPU's CPU accelerator
    /// emits IL that must see the type (internal types need InternalsVisibleTo("ILGPURuntime")); not for callers.
    /// </summary>
    [System.ComponentModel.EditorBrowsable(System.ComponentModel.EditorBrowsableState.Never)]
    public struct ConvParams
    {
        public int C, H, W, O, KH, KW, Stride, PadTop, PadLeft, Ho, Wo, TilesX, HasBias, TileW, TileH;
    }

    // Tiled kernel: a group of tw × th threads computes a tw × th patch of output pixels for
    // OcPerGroup output channels (one pixel, OcPerGroup accumulators per thread). Per step it stages the input
    // patch of CinChunk channels and the matching weights in shared memory, so each input value read from
    // global memory serves up to kh·kw·OcPerGroup FMAs. Shared arrays are sized for kh, kw ≤ 3 and stride ≤ 2
    // (every VAE conv); other geometries take the plain direct kernel. The tile is 16 × 8 where a group may
    // hold 128 threads, smaller elsewhere (ILGPU's CPU accelerator allows 16 threads per group).
    private const int TileW = 16, TileH = 8;
    private const int OcPerGroup = 4, CinChunk = 4;
    private const int MaxK = 3, MaxStride = 2;
    private const int MaxPatchH = (TileH - 1) * MaxStride + MaxK, MaxPatchW = (TileW - 1) * MaxStride + MaxK;

    private static void ForwardIlgpu(IlgpuDevice device, Tensor x, Tensor weight, Tensor? bias, Tensor y, Geometry g)
    {
        Tensor? converted = null;
        try
        {
            var w = weight;
            if (weight.DType != DType.F32)
            {
                // One pass to F32 (O·C·kh·kw values, small next to the convolution) keeps one conv kernel for all dtypes.
                converted = Tensor.Empty(device, DType.F32, weight.Shape, "conv2d.weight_f32");
                var convert = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<ushort>, ArrayView<float>, int>(WeightToF32Kernel));
                convert((int)weight.Count, weight.AsView<ushort>(), converted.AsView<float>(), weight.DType == DType.BF16 ? 1 : 0);
                w = converted;
            }
            int maxThreads = device.Accelerator.MaxNumThreadsPerGroup;
            int tw = maxThreads >= TileW * TileH ? TileW : Math.Min(4, maxThreads);
            int th = maxThreads >= TileW * TileH ? TileH : Math.Max(1, Math.Min(4, maxThreads / tw));
            var p = new ConvParams
            {
                C = g.C, H = g.H, W = g.W, O = g.O, KH = g.KH, KW = g.KW, Stride = g.Stride,
                PadTop = g.Pad.Top, PadLeft = g.Pad.Left, Ho = g.Ho, Wo = g.Wo,
                TilesX = (g.Wo + tw - 1) / tw, HasBias = bias is null ? 0 : 1, TileW = tw, TileH = th,
            };
            // Without a bias, y's view stands in for it (never read when HasBias is 0).
            var b = bias is null ? y.AsView<float>() : bias.AsView<float>();
            if (g.KH <= MaxK && g.KW <= MaxK && g.Stride <= MaxStride)
            {
                int tiles = p.TilesX * ((g.Ho + th - 1) / th);
                int oBlocks = (g.O + OcPerGroup - 1) / OcPerGroup;
                var kernel = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvParams>(TiledKernel));
                kernel(new KernelConfig(new Index2D(tiles, oBlocks), new Index2D(tw, th)),
                    x.AsView<float>(), w.AsView<float>(), b, y.AsView<float>(), p);
            }
            else
            {
                var kernel = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ConvParams>(DirectKernel));
                kernel((int)y.Count, x.AsView<float>(), w.AsView<float>(), b, y.AsView<float>(), p);
            }
        }
        finally
        {
            // Same stream: a later user of the pooled buffer runs after the kernels above.
            converted?.Dispose();
        }
    }

    /// <summary>F16 or BF16 raw bits → F32 (by bit manipulation, valid on every ILGPU backend).</summary>
    [IlgpuKernel]
    private static void WeightToF32Kernel(Index1D i, ArrayView<ushort> src, ArrayView<float> dst, int isBf16)
    {
        uint h = src[i];
        if (isBf16 != 0)
        {
            dst[i] = Interop.IntAsFloat(h << 16);
            return;
        }
        uint sign = (h & 0x8000u) << 16;
        uint exp = (h >> 10) & 0x1Fu;
        uint mant = h & 0x3FFu;
        float v;
        if (exp == 0u)
        {
            // Zero or subnormal: mant · 2^-24.
            v = mant * 5.9604645e-8f;
            if (sign != 0u) v = -v;
        }
        else if (exp == 31u)
            v = Interop.IntAsFloat(sign | 0x7F800000u | (mant << 13));
        else
            v = Interop.IntAsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
        dst[i] = v;
    }

    /// <summary>Grid (output tiles, blocks of OcPerGroup output channels); group (p.TileW ≤ 16, p.TileH ≤ 8) threads.</summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void TiledKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> y, ConvParams p)
    {
        var sx = SharedMemory.Allocate<float>(CinChunk * MaxPatchH * MaxPatchW);
        var sw = SharedMemory.Allocate<float>(OcPerGroup * CinChunk * MaxK * MaxK);
        int tx = Group.IdxX, ty = Group.IdxY;
        int tw = p.TileW, th = p.TileH, groupThreads = tw * th;
        int tid = ty * tw + tx;
        int tileX = Grid.IdxX % p.TilesX, tileY = Grid.IdxX / p.TilesX;
        int o0 = Grid.IdxY * OcPerGroup;
        int ox = tileX * tw + tx, oy = tileY * th + ty;
        int s = p.Stride;
        int ph = (th - 1) * s + p.KH, pw = (tw - 1) * s + p.KW;
        int iy0 = tileY * th * s - p.PadTop, ix0 = tileX * tw * s - p.PadLeft;
        int taps = p.KH * p.KW;
        int patch = ph * pw;
        float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f;
        for (int c0 = 0; c0 < p.C; c0 += CinChunk)
        {
            for (int i = tid; i < CinChunk * patch; i += groupThreads)
            {
                int cc = i / patch, rem = i - cc * patch;
                int r = rem / pw, q = rem - r * pw;
                int c = c0 + cc, iy = iy0 + r, ix = ix0 + q;
                float v = 0f;
                if (c < p.C && iy >= 0 && iy < p.H && ix >= 0 && ix < p.W)
                    v = x[((long)c * p.H + iy) * p.W + ix];
                sx[i] = v;
            }
            int wPerOc = CinChunk * taps;
            for (int i = tid; i < OcPerGroup * wPerOc; i += groupThreads)
            {
                int j = i / wPerOc, rem = i - j * wPerOc;
                int cc = rem / taps, t = rem - cc * taps;
                int o = o0 + j, c = c0 + cc;
                float v = 0f;
                if (o < p.O && c < p.C)
                    v = w[((long)o * p.C + c) * taps + t];
                sw[i] = v;
            }
            Group.Barrier();
            for (int cc = 0; cc < CinChunk; cc++)
            {
                for (int ky = 0; ky < p.KH; ky++)
                {
                    int rowBase = (cc * ph + ty * s + ky) * pw + tx * s;
                    int wBase = cc * taps + ky * p.KW;
                    for (int kx = 0; kx < p.KW; kx++)
                    {
                        float v = sx[rowBase + kx];
                        int wi = wBase + kx;
                        a0 += v * sw[wi];
                        a1 += v * sw[wPerOc + wi];
                        a2 += v * sw[2 * wPerOc + wi];
                        a3 += v * sw[3 * wPerOc + wi];
                    }
                }
            }
            Group.Barrier();
        }
        if (ox >= p.Wo || oy >= p.Ho) return;
        long plane = (long)p.Ho * p.Wo;
        long pix = (long)oy * p.Wo + ox;
        if (o0 < p.O) y[o0 * plane + pix] = a0 + (p.HasBias != 0 ? bias[o0] : 0f);
        if (o0 + 1 < p.O) y[(o0 + 1) * plane + pix] = a1 + (p.HasBias != 0 ? bias[o0 + 1] : 0f);
        if (o0 + 2 < p.O) y[(o0 + 2) * plane + pix] = a2 + (p.HasBias != 0 ? bias[o0 + 2] : 0f);
        if (o0 + 3 < p.O) y[(o0 + 3) * plane + pix] = a3 + (p.HasBias != 0 ? bias[o0 + 3] : 0f);
    }

    /// <summary>One thread per output value, any kernel size and stride (the fallback of <see cref="TiledKernel"/>).</summary>
    [IlgpuKernel]
    private static void DirectKernel(Index1D i, ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> y, ConvParams p)
    {
        int ox = i % p.Wo;
        int rest = i / p.Wo;
        int oy = rest % p.Ho;
        int o = rest / p.Ho;
        int taps = p.KH * p.KW;
        float acc = 0f;
        for (int c = 0; c < p.C; c++)
        {
            for (int ky = 0; ky < p.KH; ky++)
            {
                int iy = oy * p.Stride + ky - p.PadTop;
                if (iy < 0 || iy >= p.H) continue;
                for (int kx = 0; kx < p.KW; kx++)
                {
                    int ix = ox * p.Stride + kx - p.PadLeft;
                    if (ix < 0 || ix >= p.W) continue;
                    acc += x[((long)c * p.H + iy) * p.W + ix] * w[((long)o * p.C + c) * taps + ky * p.KW + kx];
                }
            }
        }
        y[i] = acc + (p.HasBias != 0 ? bias[o] : 0f);
    }
}
