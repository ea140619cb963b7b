using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>Zero padding of a 2D convolution, in input pixels on each side (PyTorch's F.pad order is left, right, top, bottom).</summary>
public readonly record struct Conv2dPadding(int Top, int Bottom, int Left, int Right)
{
    /// <summary>The same padding <paramref name="p"/> on all four sides (nn.Conv2d(padding=p)).</summary>
    public static Conv2dPadding Same(int p) => new(p, p, p, p);

    /// <summary>No padding.</summary>
    public static Conv2dPadding None => default;
}

/// <summary>
/// 2D convolution (cross-correlation, as nn.Conv2d), batch 1:
/// x [C, H, W] (or [1, C, H, W]) F32, weight [O, C, kh, kw] F32/F16/BF16, bias [O] F32 or null,
/// y [O, H', W'] (or [1, O, H', W']) F32 with H' = (H + top + bottom − kh) / stride + 1, W' likewise.
/// <para>
/// CPU path: a direct convolution written as a GEMM of (output channels × output pixels) over
/// k = (c, ky, kx), without an im2col matrix. The input is copied once into a zero-padded, column-phase-split
/// buffer xq[c][row][phase][i] = xpad[c][row][i·stride + phase], so every tap (c, ky, kx) of a run of
/// consecutive output pixels is one contiguous vector load (also for stride 2), and a table of K = C·kh·kw tap
/// offsets replaces the im2col matrix (the "indirection" idea of XNNPACK's indirect convolution, here as
/// offsets into one buffer). The register tile is 4 output channels × 4 vectors of 16 output pixels
/// (16 Vector512 accumulators); the 4 vectors may come from different output rows, so narrow maps (W' = 16, 32)
/// still fill the tile. Each step of the k loop does 4 vector loads, 4 weight broadcasts and 16 FMAs. Weights
/// are re-packed per task into [k][4 channels] (converting F16/BF16 on the way), so broadcasts read
/// sequential memory; that costs O·C·kh·kw per call, negligible next to the O·C·kh·kw·H'·W' FMAs.
/// Threads split (blocks of 4 output channels) × (chunks of output rows) while the padded input fits the
/// cache (that copy lives in the calling thread's reusable scratch); for larger inputs tasks are row chunks that run
/// every channel block (weights packed once per call), each padding only its own slab of input rows (≤ 4 MiB, in the
/// worker's scratch) right before using it, so the input is read from DRAM once instead of once per channel block
/// and no call allocates (and page-faults) a whole padded copy. 1×1 stride-1 unpadded convs are the packed GEMM.
/// Measured (Zen 4, 2 threads, 3×3 pad 1): 512→512 at 32×32 / 64×64 and 256→256 at 128×128 run at 90–95% of
/// a register-only Vector512 FMA loop per CPU-second (~105 of ~114 GFLOP/s per core); see bench/ConvBenchmarks.cs.
/// </para>
/// </summary>
public static partial class Conv2d
{
    /// <summary>Geometry of one call, after the checks.</summary>
    internal readonly record struct Geometry(int C, int H, int W, int O, int KH, int KW, int Stride, Conv2dPadding Pad, int Ho, int Wo);

    public static void Forward(Tensor x, Tensor weight, Tensor? bias, Tensor y, int stride, Conv2dPadding pad)
    {
        const string op = nameof(Conv2d);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.DType(op, "y", y, DType.F32);
        Check.That(stride >= 1, op, $"stride is {stride}; expected >= 1");
        Check.That(pad.Top >= 0 && pad.Bottom >= 0 && pad.Left >= 0 && pad.Right >= 0, op, $"padding {pad} has a negative side");
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        Check.Rank(op, "weight", weight, 4);
        int o = weight.Shape[0], kh = weight.Shape[2], kw = weight.Shape[3];
        Check.That(weight.Shape[1] == c, op, $"weight has shape {weight.Shape}; expected [O, {c}, kh, kw] (input channels of x {x.Shape})");
        Check.That(kh >= 1 && kw >= 1 && o >= 1, op, $"weight has shape {weight.Shape}; expected O, kh, kw >= 1");
        int hp = h + pad.Top + pad.Bottom, wp = w + pad.Left + pad.Right;
        Check.That(hp >= kh && wp >= kw, op, $"padded input {hp}x{wp} is smaller than the {kh}x{kw} kernel");
        int ho = (hp - kh) / stride + 1, wo = (wp - kw) / stride + 1;
        ImageShape.Expect(op, "y", y, o, ho, wo);
        if (bias is not null)
        {
            Check.DType(op, "bias", bias, DType.F32);
            ImageShape.Vector(op, "bias", bias, o);
        }
        var g = new Geometry(c, h, w, o, kh, kw, stride, pad, ho, wo);
        using var profile = OpProfile.Start(op, x.Device, 2.0 * o * ho * wo * c * kh * kw, g, static g => $"{g.C}->{g.O} {g.KH}x{g.KW}/{g.Stride} at {g.H}x{g.W}");
        switch (Check.SameDevice(op, x, weight, bias, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, weight, bias, y, g); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, weight, bias, y, g); break;
        }
    }

    // ---------------------------------------------------------------- CPU

    /// <summary>Output channels per register tile.</summary>
    private const int OcTile = 4;
    /// <summary>Output vectors (runs of Lanes pixels) per register tile.</summary>
    private const int VecTile = 4;
    /// <summary>Padded-input size above which tasks go row-major (see ForwardCpu); about a quarter of a 32 MiB L3.</summary>
    private const long RowMajorInputBytes = 8 << 20;

    /// <summary>Experiment switch (bench conv-ab): run 1×1 stride-1 unpadded convs through the direct path instead of the GEMM.</summary>
    internal static bool Direct1x1 = false;

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor weight, Tensor? bias, Tensor y, Geometry g)
    {
        if (g.KH == 1 && g.KW == 1 && g.Stride == 1 && g.Pad == Conv2dPadding.None && !Direct1x1)
        {
            Forward1x1Gemm(device, x, weight, bias, y, g);
            return;
        }
        int lanes = Vector512.IsHardwareAccelerated ? 16 : 8;
        int s = g.Stride;
        int hp = g.H + g.Pad.Top + g.Pad.Bottom;
        int nvx = (g.Wo + lanes - 1) / lanes;            // output vectors per row
        int wq = nvx * lanes + (g.KW - 1) / s;          // phase row width: covers every tap of every vector
        long xqCount = (long)hp * g.C * s * wq;
        Check.That(xqCount < int.MaxValue, nameof(Conv2d), $"input {g.C}x{g.H}x{g.W} is too large for the CPU path (padded copy has {xqCount} elements)");

        int k = g.C * g.KH * g.KW;
        // The k loop runs ky-major (k = (ky·C + c)·kw + kx) so that, with xq laid out [row][c][phase][i], its loads
        // walk one contiguous block per ky with a small constant stride: the hardware prefetchers follow it, and
        // it stays within few pages (a channel-major layout jumps a whole plane, often a new page, per channel).
        // tapOffsets[k] is relative to a vector's (top row, channel 0, phase 0, first pixel) position;
        // weightIndex[k] is the position of that tap in a weight row [C, kh, kw].
        var tapOffsets = new int[k];
        var weightIndex = new int[k];
        long rowBlock = (long)g.C * s * wq;            // one padded input row of all channels and phases
        for (int ky = 0, i = 0; ky < g.KH; ky++)
            for (int c = 0; c < g.C; c++)
                for (int kx = 0; kx < g.KW; kx++, i++)
                {
                    tapOffsets[i] = (int)(ky * rowBlock + (long)c * s * wq + (kx % s) * wq + kx / s);
                    weightIndex[i] = (c * g.KH + ky) * g.KW + kx;
                }

        int oBlocks = (g.O + OcTile - 1) / OcTile;
        // Two task orders. While xq is small enough to stay in the last-level cache, tasks are (block of 4 output
        // channels) × (row chunk), each packing its own weights: no packing pass, and the input is re-read from
        // cache once per block. Past that, re-reading xq per channel block would stream it from DRAM
        // O/4 times, so all weights are packed once (O·K values, parallel) and tasks are row chunks that run every
        // channel block on rows whose input stays in L2 while the (cache-resident) packed weights stream.
        bool large = xqCount * sizeof(float) > RowMajorInputBytes;
        bool rowMajor = WholeInputCopy ? large && oBlocks > 1 : large;
        float* yp = (float*)y.Pointer;
        float* bp = bias is null ? null : (float*)bias.Pointer;
        nint wPtr = weight.Pointer;
        var wType = weight.DType;
        float* xqp = null;
        Tensor? xqTensor = null;
        try
        {
            if (WholeInputCopy)
            {
                xqTensor = Tensor.Empty(device, DType.F32, new Shape((int)xqCount), "conv2d.xq");
                xqp = (float*)xqTensor.Pointer;
            }
            else if (!rowMajor)
                // The whole padded input (≤ 8 MiB here) in the calling thread's scratch, reused by later calls: a fresh
                // pool buffer would be zero-filled and page-faulted at every new size of a single VAE decode.
                xqp = (float*)(_xqScratch ??= new()).Get(xqCount * sizeof(float));
            if (xqp != null) BuildPhaseInput(device, (float*)x.Pointer, xqp, g, hp, wq);

            fixed (int* offs = tapOffsets, widx = weightIndex)
            {
                int* offsPtr = offs, widxPtr = widx;
                if (!rowMajor)
                {
                    int rowChunks = Math.Clamp((3 * device.Threads + oBlocks - 1) / oBlocks, 1, g.Ho); // split rows only when blocks are few
                    if (device.Threads == 1) rowChunks = 1;
                    int tasks = oBlocks * rowChunks;
                    var ctx = new CpuContext(xqp, yp, bp, wPtr, wType, g, lanes, nvx, wq, k, rowChunks);
                    if (tasks == 1)
                        RunChannelBlockTask(ctx, offsPtr, widxPtr, 0);
                    else
                        Parallel.For(0, tasks, device.ParallelOptions, t => RunChannelBlockTask(ctx, offsPtr, widxPtr, t));
                    return;
                }
                // Row-major: each task pads its own slab of input rows (≤ SlabBytes, in that worker's scratch) just
                // before using it, so the input is never copied as a whole into a fresh buffer and the slab is cache-hot.
                int chunks;
                long slabFloats = 0;
                if (xqp != null)
                    chunks = device.Threads == 1 ? 1 : Math.Min(g.Ho, 4 * device.Threads);
                else
                {
                    int slabRowsBudget = (int)Math.Max(g.KH, SlabBytes / (rowBlock * sizeof(float)));
                    int rowsPerChunk = Math.Max(1, (slabRowsBudget - g.KH) / s + 1);
                    int needed = (g.Ho + rowsPerChunk - 1) / rowsPerChunk;
                    chunks = Math.Min(g.Ho, device.Threads == 1 ? needed : Math.Max(4 * device.Threads, needed));
                    int maxRows = (g.Ho + chunks - 1) / chunks;
                    slabFloats = ((long)(maxRows - 1) * s + g.KH) * rowBlock;
                }
                var rowCtx = new CpuContext(xqp, yp, bp, wPtr, wType, g, lanes, nvx, wq, k, chunks);
                long blockStride = (long)k * OcTile;
                float* packed = (float*)(_packedScratch ??= new()).Get(oBlocks * blockStride * sizeof(float));
                float* src = (float*)x.Pointer;
                Parallel.For(0, oBlocks, device.ParallelOptions, ob => PackWeights(rowCtx, ob * OcTile, widxPtr, packed + ob * blockStride));
                if (chunks == 1)
                    RunRowTask(rowCtx, src, offsPtr, packed, slabFloats, 0);
                else
                    Parallel.For(0, chunks, device.ParallelOptions, t => RunRowTask(rowCtx, src, offsPtr, packed, slabFloats, t));
            }
        }
        finally
        {
            xqTensor?.Dispose();
        }
    }

    /// <summary>Upper bound of one row task's padded input slab (rows × C × phases × wq floats); 4 MiB per thread keeps
    /// both threads' slabs in L3 and re-pads only kh − s rows per chunk (~15% extra copying at 256 channels, 256²).</summary>
    private const long SlabBytes = 4 << 20;

    /// <summary>Experiment switch (bench conv-ab): the previous buffer handling — the whole padded input in a pool tensor for
    /// every call, row-major tasks (only when O > 4) reading it.</summary>
    internal static bool WholeInputCopy = false;

    [ThreadStatic] private static ThreadScratch? _xqScratch, _slabScratch, _packedScratch;

    /// <summary>
    /// A 1×1, stride-1, unpadded conv is a plain GEMM over the NCHW planes: Y[O, H·W] = W[O, C] · X[C, H·W] (+ bias per
    /// row), run by the packed BLIS GEMM (<see cref="GemmCpu"/>) with X as a [K, N] B operand (no copy of the input).
    /// The direct path first copies the whole input into its padded buffer (32–64 MiB at the VAE's 1×1 shapes): in a
    /// single VAE decode that buffer was a fresh pool allocation, zero-filled on one thread and page-faulted, and the
    /// profile showed 10–24 GFLOP/s for these calls (bench quick conv, Zen 5, 2 threads: 256→128 at 256² 18.6 GFLOP/s
    /// cold, 256 warm). The GEMM reads X where it is and packs only KC×NC panels into small per-thread buffers.
    /// </summary>
    private static unsafe void Forward1x1Gemm(CpuDevice device, Tensor x, Tensor weight, Tensor? bias, Tensor y, Geometry g)
    {
        int n = g.H * g.W;
        float* a = (float*)weight.Pointer;
        float* converted = null;
        try
        {
            if (weight.DType != DType.F32)
            {
                long count = (long)g.O * g.C;
                converted = (float*)NativeMemory.AlignedAlloc((nuint)count * sizeof(float), 64);
                if (weight.DType == DType.BF16)
                {
                    ushort* src = (ushort*)weight.Pointer;
                    for (long i = 0; i < count; i++) converted[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
                }
                else
                {
                    Half* src = (Half*)weight.Pointer;
                    for (long i = 0; i < count; i++) converted[i] = (float)src[i];
                }
                a = converted;
            }
            var b = new BOperand((float*)x.Pointer, DType.F32, BLayout.KN, n);
            GemmCpu.Run(a, g.C, b, null, (float*)y.Pointer, n, g.O, n, g.C, device.Threads,
                bias is null ? null : (float*)bias.Pointer);
        }
        finally
        {
            if (converted != null) NativeMemory.AlignedFree(converted);
        }
    }

    private readonly unsafe struct CpuContext(float* xq, float* y, float* bias, nint weight, DType weightType, Geometry g,
        int lanes, int nvx, int wq, int k, int rowChunks)
    {
        public readonly float* Xq = xq, Y = y, Bias = bias;
        public readonly nint Weight = weight;
        public readonly DType WeightType = weightType;
        public readonly Geometry G = g;
        public readonly int Lanes = lanes, Nvx = nvx, Wq = wq, K = k, RowChunks = rowChunks;
    }

    /// <summary>xq[r][c][p][i] = x[c][r − top][i·s + p − left], zero outside x (r over the padded rows).</summary>
    private static unsafe void BuildPhaseInput(CpuDevice device, float* src, float* dst, Geometry g, int hp, int wq)
    {
        long rowBlock = (long)g.C * g.Stride * wq;
        if (device.Threads == 1 || (long)g.C * g.H * g.W < 1 << 15)
            for (int r = 0; r < hp; r++) PadRow(src, dst + r * rowBlock, g, wq, r);
        else
            Parallel.For(0, hp, device.ParallelOptions, r => PadRow(src, dst + r * rowBlock, g, wq, r));
    }

    /// <summary>One padded row r of xq (all channels and phases) at <paramref name="row0"/>: row0[c][p][i] = x[c][r − top][i·s + p − left].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // optimized from the first call: a single VAE decode calls each shape a few times
    private static unsafe void PadRow(float* src, float* row0, in Geometry g, int wq, int r)
    {
        int s = g.Stride;
        int iy = r - g.Pad.Top;
        for (int c = 0; c < g.C; c++)
        {
            for (int p = 0; p < s; p++)
            {
                float* row = row0 + ((long)c * s + p) * wq;
                if (iy < 0 || iy >= g.H)
                {
                    new Span<float>(row, wq).Clear();
                    continue;
                }
                float* srow = src + ((long)c * g.H + iy) * g.W;
                if (s == 1)
                {
                    // i − left in [0, W): one copy, zeros around it.
                    int lo = Math.Min(g.Pad.Left, wq);
                    int n = Math.Clamp(wq - lo, 0, g.W);
                    new Span<float>(row, lo).Clear();
                    new ReadOnlySpan<float>(srow, n).CopyTo(new Span<float>(row + lo, n));
                    new Span<float>(row + lo + n, wq - lo - n).Clear();
                }
                else
                {
                    for (int i = 0; i < wq; i++)
                    {
                        int ix = i * s + p - g.Pad.Left;
                        row[i] = (uint)ix < (uint)g.W ? srow[ix] : 0f;
                    }
                }
            }
        }
    }

    /// <summary>Channel-block-major task: one block of 4 output channels (weights packed here) over one chunk of output rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // optimized from the first call: a single VAE decode calls each shape a few times
    private static unsafe void RunChannelBlockTask(in CpuContext ctx, int* offs, int* weightIndex, int task)
    {
        int ob = task / ctx.RowChunks, rc = task % ctx.RowChunks;
        var (rowStart, rowCount) = Partition.Range(ctx.G.Ho, rc, ctx.RowChunks);
        if (rowCount == 0) return;
        float* wp = (float*)NativeMemory.AlignedAlloc((nuint)ctx.K * OcTile * sizeof(float), 64);
        float* tile = stackalloc float[OcTile * VecTile * 16];
        try
        {
            PackWeights(ctx, ob * OcTile, weightIndex, wp);
            int jobs = (int)rowCount * ctx.Nvx;
            for (int j0 = 0; j0 < jobs; j0 += VecTile)
                ComputeTile(ctx, ctx.Xq, offs, wp, ob * OcTile, (int)rowStart, j0, jobs, tile);
        }
        finally
        {
            NativeMemory.AlignedFree(wp);
        }
    }

    /// <summary>Row-major task: one chunk of output rows, every block of output channels (weights packed once per call).
    /// Without a whole-input copy (ctx.Xq null) the task first pads its slab of input rows into this thread's scratch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // optimized from the first call: a single VAE decode calls each shape a few times
    private static unsafe void RunRowTask(in CpuContext ctx, float* src, int* offs, float* packedWeights, long slabFloats, int task)
    {
        var (rowStart, rowCount) = Partition.Range(ctx.G.Ho, task, ctx.RowChunks);
        if (rowCount == 0) return;
        var g = ctx.G;
        long rowBlock = (long)g.C * g.Stride * ctx.Wq;
        long rowStep = g.Stride * rowBlock;          // xq distance between output rows
        float* xq = ctx.Xq;
        if (xq == null)
        {
            float* slab = (float*)(_slabScratch ??= new()).Get(slabFloats * sizeof(float));
            int r0 = (int)rowStart * g.Stride, slabRows = ((int)rowCount - 1) * g.Stride + g.KH;
            for (int i = 0; i < slabRows; i++) PadRow(src, slab + i * rowBlock, g, ctx.Wq, r0 + i);
            xq = slab - rowStart * rowStep;         // so that output row rowStart reads the slab's first row
        }
        float* tile = stackalloc float[OcTile * VecTile * 16];
        int jobs = (int)rowCount * ctx.Nvx;
        int oBlocks = (g.O + OcTile - 1) / OcTile;
        long blockStride = (long)ctx.K * OcTile;
        // The tile's input (a few rows of xq) stays in L1/L2 while the packed weights stream from L3.
        for (int j0 = 0; j0 < jobs; j0 += VecTile)
            for (int ob = 0; ob < oBlocks; ob++)
                ComputeTile(ctx, xq, offs, packedWeights + ob * blockStride, ob * OcTile, (int)rowStart, j0, jobs, tile);
    }

    /// <summary>
    /// Output vectors [j0, j0 + 4) of a row chunk (vector j: row rowStart + j / nvx, pixels (j % nvx)·lanes …) for
    /// output channels o0 … o0 + 3: the register tile, then bias and the stores of the valid channels and pixels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // optimized from the first call: a single VAE decode calls each shape a few times
    private static unsafe void ComputeTile(in CpuContext ctx, float* xq, int* offs, float* wp, int o0, int rowStart, int j0, int jobs, float* tile)
    {
        var g = ctx.G;
        int s = g.Stride, lanes = ctx.Lanes, nvx = ctx.Nvx;
        long rowStep = (long)s * g.C * s * ctx.Wq; // xq distance between output rows (s padded rows)
        long planeOut = (long)g.Ho * g.Wo;
        var jobRow = stackalloc int[VecTile];
        var jobX = stackalloc int[VecTile];
        var inp = stackalloc float*[VecTile];
        int valid = Math.Min(VecTile, jobs - j0);
        for (int v = 0; v < VecTile; v++)
        {
            int j = j0 + Math.Min(v, valid - 1);   // a short last group repeats its last vector
            jobRow[v] = rowStart + j / nvx;
            jobX[v] = j % nvx * lanes;
            inp[v] = xq + jobRow[v] * rowStep + jobX[v];
        }
        if (lanes == 16)
            Tile512(wp, offs, ctx.K, inp[0], inp[1], inp[2], inp[3], tile);
        else
            Tile256(wp, offs, ctx.K, inp[0], inp[1], inp[2], inp[3], tile);

        for (int oc = 0; oc < OcTile && o0 + oc < g.O; oc++)
        {
            float b = ctx.Bias is null ? 0f : ctx.Bias[o0 + oc];
            for (int v = 0; v < valid; v++)
            {
                float* acc = tile + (oc * VecTile + v) * 16;
                float* dst = ctx.Y + (o0 + oc) * planeOut + (long)jobRow[v] * g.Wo + jobX[v];
                int n = Math.Min(lanes, g.Wo - jobX[v]);
                if (n == 16)
                    (Vector512.Load(acc) + Vector512.Create(b)).Store(dst);
                else
                    for (int i = 0; i < n; i++) dst[i] = acc[i] + b;
            }
        }
    }

    /// <summary>wp[k·4 + j] = weight[o0 + j][weightIndex[k]] as F32 (zero for channels past O).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // optimized from the first call: a single VAE decode calls each shape a few times
    private static unsafe void PackWeights(in CpuContext ctx, int o0, int* weightIndex, float* wp)
    {
        int k = ctx.K, o = ctx.G.O;
        for (int j = 0; j < OcTile; j++)
        {
            int oc = o0 + j;
            if (oc >= o)
            {
                for (int i = 0; i < k; i++) wp[i * OcTile + j] = 0f;
                continue;
            }
            long rowStart = (long)oc * k;
            switch (ctx.WeightType)
            {
                case DType.F32:
                {
                    float* src = (float*)ctx.Weight + rowStart;
                    for (int i = 0; i < k; i++) wp[i * OcTile + j] = src[weightIndex[i]];
                    break;
                }
                case DType.BF16:
                {
                    ushort* src = (ushort*)ctx.Weight + rowStart;
                    for (int i = 0; i < k; i++) wp[i * OcTile + j] = BitConverter.Int32BitsToSingle(src[weightIndex[i]] << 16);
                    break;
                }
                default:
                {
                    Half* src = (Half*)ctx.Weight + rowStart;
                    for (int i = 0; i < k; i++) wp[i * OcTile + j] = (float)src[weightIndex[i]];
                    break;
                }
            }
        }
    }

    /// <summary>
    /// The register tile: acc[oc][v][0..16) = Σ_k wp[k][oc] · in_v[offs[k] .. +16), 4 channels × 4 vectors of
    /// 16 pixels in 16 Vector512 accumulators (of the 32 AVX-512 registers; the rest hold the 4 loads and 4 broadcasts).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile512(float* wp, int* offs, int k, float* in0, float* in1, float* in2, float* in3, float* acc)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int i = 0; i < k; i++)
        {
            nint off = offs[i];
            var x0 = Vector512.Load(in0 + off);
            var x1 = Vector512.Load(in1 + off);
            var x2 = Vector512.Load(in2 + off);
            var x3 = Vector512.Load(in3 + off);
            var w = Vector512.Create(wp[0]);
            a00 = Vector512.FusedMultiplyAdd(x0, w, a00);
            a01 = Vector512.FusedMultiplyAdd(x1, w, a01);
            a02 = Vector512.FusedMultiplyAdd(x2, w, a02);
            a03 = Vector512.FusedMultiplyAdd(x3, w, a03);
            w = Vector512.Create(wp[1]);
            a10 = Vector512.FusedMultiplyAdd(x0, w, a10);
            a11 = Vector512.FusedMultiplyAdd(x1, w, a11);
            a12 = Vector512.FusedMultiplyAdd(x2, w, a12);
            a13 = Vector512.FusedMultiplyAdd(x3, w, a13);
            w = Vector512.Create(wp[2]);
            a20 = Vector512.FusedMultiplyAdd(x0, w, a20);
            a21 = Vector512.FusedMultiplyAdd(x1, w, a21);
            a22 = Vector512.FusedMultiplyAdd(x2, w, a22);
            a23 = Vector512.FusedMultiplyAdd(x3, w, a23);
            w = Vector512.Create(wp[3]);
            a30 = Vector512.FusedMultiplyAdd(x0, w, a30);
            a31 = Vector512.FusedMultiplyAdd(x1, w, a31);
            a32 = Vector512.FusedMultiplyAdd(x2, w, a32);
            a33 = Vector512.FusedMultiplyAdd(x3, w, a33);
            wp += OcTile;
        }
        a00.Store(acc + 0 * 16); a01.Store(acc + 1 * 16); a02.Store(acc + 2 * 16); a03.Store(acc + 3 * 16);
        a10.Store(acc + 4 * 16); a11.Store(acc + 5 * 16); a12.Store(acc + 6 * 16); a13.Store(acc + 7 * 16);
        a20.Store(acc + 8 * 16); a21.Store(acc + 9 * 16); a22.Store(acc + 10 * 16); a23.Store(acc + 11 * 16);
        a30.Store(acc + 12 * 16); a31.Store(acc + 13 * 16); a32.Store(acc + 14 * 16); a33.Store(acc + 15 * 16);
    }

    /// <summary>As <see cref="Tile512"/> with 8-lane vectors (AVX2 machines); results at acc[oc][v][0..8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Tile256(float* wp, int* offs, int k, float* in0, float* in1, float* in2, float* in3, float* acc)
    {
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
        for (int i = 0; i < k; i++)
        {
            nint off = offs[i];
            var x0 = Vector256.Load(in0 + off);
            var x1 = Vector256.Load(in1 + off);
            var x2 = Vector256.Load(in2 + off);
            var x3 = Vector256.Load(in3 + off);
            var w = Vector256.Create(wp[0]);
            a00 = Vector256.FusedMultiplyAdd(x0, w, a00);
            a01 = Vector256.FusedMultiplyAdd(x1, w, a01);
            a02 = Vector256.FusedMultiplyAdd(x2, w, a02);
            a03 = Vector256.FusedMultiplyAdd(x3, w, a03);
            w = Vector256.Create(wp[1]);
            a10 = Vector256.FusedMultiplyAdd(x0, w, a10);
            a11 = Vector256.FusedMultiplyAdd(x1, w, a11);
            a12 = Vector256.FusedMultiplyAdd(x2, w, a12);
            a13 = Vector256.FusedMultiplyAdd(x3, w, a13);
            w = Vector256.Create(wp[2]);
            a20 = Vector256.FusedMultiplyAdd(x0, w, a20);
            a21 = Vector256.FusedMultiplyAdd(x1, w, a21);
            a22 = Vector256.FusedMultiplyAdd(x2, w, a22);
            a23 = Vector256.FusedMultiplyAdd(x3, w, a23);
            w = Vector256.Create(wp[3]);
            a30 = Vector256.FusedMultiplyAdd(x0, w, a30);
            a31 = Vector256.FusedMultiplyAdd(x1, w, a31);
            a32 = Vector256.FusedMultiplyAdd(x2, w, a32);
            a33 = Vector256.FusedMultiplyAdd(x3, w, a33);
            wp += OcTile;
        }
        a00.Store(acc + 0 * 16); a01.Store(acc + 1 * 16); a02.Store(acc + 2 * 16); a03.Store(acc + 3 * 16);
        a10.Store(acc + 4 * 16); a11.Store(acc + 5 * 16); a12.Store(acc + 6 * 16); a13.Store(acc + 7 * 16);
        a20.Store(acc + 8 * 16); a21.Store(acc + 9 * 16); a22.Store(acc + 10 * 16); a23.Store(acc + 11 * 16);
        a30.Store(acc + 12 * 16); a31.Store(acc + 13 * 16); a32.Store(acc + 14 * 16); a33.Store(acc + 15 * 16);
    }
}
