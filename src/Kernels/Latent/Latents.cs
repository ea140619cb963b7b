namespace PureFlux.Kernels;

/// <summary>
/// FLUX.2 latent plumbing between the VAE's [C, H, W] maps and the transformer's token rows, batch 1
/// (every image tensor may also be given as [1, C, H, W], every token tensor as [1, S, C]):
/// <list type="bullet">
/// <item><see cref="Patchify"/>: x [C, H, W] → y [4C, H/2, W/2], y[c·4 + dy·2 + dx][i][j] = x[c][2i + dy][2j + dx]
/// (2×2 space-to-depth, as klein's _patchify_latents).</item>
/// <item><see cref="Unpatchify"/>: the inverse, x [4C, h, w] → y [C, 2h, 2w].</item>
/// <item><see cref="Pack"/>: x [C, h, w] → y [h·w, C], rows in row-major (h, w) order (a transpose).</item>
/// <item><see cref="Unpack"/>: the inverse, x [h·w, C] → y [C, h, w] (h, w taken from y).</item>
/// <item><see cref="PatchTokens"/>: x [C, 2h, 2w] → y [h·w, 4C] in one step with the channel fastest,
/// y[i·w + j][(dy·2 + dx)·C + c] = x[c][2i + dy][2j + dx] (Z-Image's and FLUX.1's patch order; klein's Patchify + Pack
/// puts the channel slowest).</item>
/// <item><see cref="UnpatchTokens"/>: the inverse, x [h·w, 4C] → y [C, 2h, 2w].</item>
/// </list>
/// Pure data movement: results are exact. Outputs must not alias inputs.
/// </summary>
public static partial class Latents
{
    public static void Patchify(Tensor x, Tensor y)
    {
        const string op = "Latents.Patchify";
        CheckF32(op, x, y);
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        Check.That(h % 2 == 0 && w % 2 == 0, op, $"x has shape {x.Shape}; H and W must be even for a 2x2 patchify");
        ImageShape.Expect(op, "y", y, 4 * c, h / 2, w / 2);
        Dispatch(op, x, y, Kind.Patchify, 4 * c, h / 2, w / 2);
    }

    public static void Unpatchify(Tensor x, Tensor y)
    {
        const string op = "Latents.Unpatchify";
        CheckF32(op, x, y);
        var (c4, h, w) = ImageShape.Chw(op, "x", x);
        Check.That(c4 % 4 == 0, op, $"x has shape {x.Shape}; its channel count must be a multiple of 4 (2x2 patches)");
        ImageShape.Expect(op, "y", y, c4 / 4, 2 * h, 2 * w);
        Dispatch(op, x, y, Kind.Unpatchify, c4, h, w);
    }

    public static void Pack(Tensor x, Tensor y)
    {
        const string op = "Latents.Pack";
        CheckF32(op, x, y);
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        ExpectTokens(op, "y", y, h * w, c);
        Dispatch(op, x, y, Kind.Pack, c, h, w);
    }

    public static void Unpack(Tensor x, Tensor y)
    {
        const string op = "Latents.Unpack";
        CheckF32(op, x, y);
        var (c, h, w) = ImageShape.Chw(op, "y", y);
        ExpectTokens(op, "x", x, h * w, c);
        Dispatch(op, x, y, Kind.Unpack, c, h, w);
    }

    public static void PatchTokens(Tensor x, Tensor y)
    {
        const string op = "Latents.PatchTokens";
        CheckF32(op, x, y);
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        Check.That(h % 2 == 0 && w % 2 == 0, op, $"x has shape {x.Shape}; H and W must be even for 2x2 patches");
        ExpectTokens(op, "y", y, h / 2 * (w / 2), 4 * c);
        Dispatch(op, x, y, Kind.PatchTokens, c, h / 2, w / 2);
    }

    public static void UnpatchTokens(Tensor x, Tensor y)
    {
        const string op = "Latents.UnpatchTokens";
        CheckF32(op, x, y);
        var (c, h, w) = ImageShape.Chw(op, "y", y);
        Check.That(h % 2 == 0 && w % 2 == 0, op, $"y has shape {y.Shape}; H and W must be even for 2x2 patches");
        ExpectTokens(op, "x", x, h / 2 * (w / 2), 4 * c);
        Dispatch(op, x, y, Kind.UnpatchTokens, c, h / 2, w / 2);
    }

    /// <summary>Which layout change; (c, h, w) is always the [4C, h, w] side for (un)patchify, the [C, h, w] side for
    /// (un)pack, and (C, h, w) of the [C, 2h, 2w] map with an h × w token grid for (un)patch tokens.</summary>
    internal enum Kind { Patchify, Unpatchify, Pack, Unpack, PatchTokens, UnpatchTokens }

    private static void CheckF32(string op, Tensor x, Tensor y)
    {
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
    }

    /// <summary>t must be [s, c] or [1, s, c].</summary>
    private static void ExpectTokens(string op, string arg, Tensor t, int s, int c)
    {
        var d = t.Shape;
        bool ok = (d.Rank == 2 && d[0] == s && d[1] == c) || (d.Rank == 3 && d[0] == 1 && d[1] == s && d[2] == c);
        if (!ok)
            throw new ArgumentException($"{op}: {arg} ({t.Name ?? "unnamed"}) has shape {d}; expected [{s}, {c}] (or [1, {s}, {c}])");
    }

    private static void Dispatch(string op, Tensor x, Tensor y, Kind kind, int c, int h, int w)
    {
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: Cpu(cpu, x, y, kind, c, h, w); break;
            case IlgpuDevice gpu: Ilgpu(gpu, x, y, kind, c, h, w); break;
        }
    }

    private static unsafe void Cpu(CpuDevice device, Tensor x, Tensor y, Kind kind, int c, int h, int w)
    {
        float* src = (float*)x.Pointer;
        float* dst = (float*)y.Pointer;
        long plane = (long)h * w;
        // One work item per channel of the [c, h, w] side; each item touches one plane there and a strided
        // set of values on the other side.
        void Channel(int ch)
        {
            switch (kind)
            {
                case Kind.Patchify:
                case Kind.Unpatchify:
                {
                    // ch = c0·4 + dy·2 + dx on the patchified side; the full-size side is [c/4, 2h, 2w].
                    int c0 = ch >> 2, dy = (ch >> 1) & 1, dx = ch & 1;
                    float* patched = (kind == Kind.Patchify ? dst : src) + ch * plane;
                    float* full = (kind == Kind.Patchify ? src : dst) + c0 * 4 * plane + (long)dy * 2 * w + dx;
                    for (int i = 0; i < h; i++)
                    {
                        float* p = patched + (long)i * w;
                        float* f = full + (long)i * 4 * w;
                        if (kind == Kind.Patchify)
                            for (int j = 0; j < w; j++) p[j] = f[2 * j];
                        else
                            for (int j = 0; j < w; j++) f[2 * j] = p[j];
                    }
                    break;
                }
                case Kind.Pack:
                {
                    float* s = src + ch * plane;
                    for (long t = 0; t < plane; t++) dst[t * c + ch] = s[t];
                    break;
                }
                case Kind.PatchTokens:
                case Kind.UnpatchTokens:
                {
                    // ch is the latent channel; its [2h, 2w] plane maps to feature (dy·2 + dx)·c + ch of token (i, j).
                    float* full = (kind == Kind.PatchTokens ? src : dst) + ch * 4 * plane;
                    float* tokens = kind == Kind.PatchTokens ? dst : src;
                    for (int r = 0; r < 2 * h; r++)
                        for (int q = 0; q < 2 * w; q++)
                        {
                            long at = ((long)(r >> 1) * w + (q >> 1)) * 4 * c + ((r & 1) * 2 + (q & 1)) * c + ch;
                            if (kind == Kind.PatchTokens) tokens[at] = full[(long)r * 2 * w + q];
                            else full[(long)r * 2 * w + q] = tokens[at];
                        }
                    break;
                }
                default:
                {
                    float* d = dst + ch * plane;
                    for (long t = 0; t < plane; t++) d[t] = src[t * c + ch];
                    break;
                }
            }
        }
        if (device.Threads == 1 || c * plane < 1 << 15)
            for (int ch = 0; ch < c; ch++) Channel(ch);
        else
            Parallel.For(0, c, device.ParallelOptions, Channel);
    }
}
