using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class Attention
{
    /// <summary>Sizes and flags passed to the kernels (one struct keeps the parameter lists short). Public only because
    /// ILGPU's CPU accelerator emits code that must see it.</summary>
    public struct KernelParams
    {
        public int Sq, Sk, Hq, Hkv, D, Flags;
        public float Scale;
        /// <summary>Elements between the bias planes of consecutive heads (0 = one plane for all heads).</summary>
        public long BiasHeadStride;
    }

    private const int FlagCausal = 1, FlagKeyMask = 2, FlagMask = 4, FlagBias = 8;

    // Fast kernel tiling: one group of 128 threads per (head, 16 query rows); keys in tiles of 32 through shared memory.
    // Work is split into 128 (row, lane) slots (row = slot/8, lane = slot%8); a smaller group (ILGPU's CPU
    // accelerator allows 16 threads) loops over the slots.
    private const int GpuRows = 16, GpuKeys = 32, GpuThreads = 128, GpuMaxD = 128;
    /// <summary>Row stride of the K/V tile in shared memory: 129 words, so threads reading different keys at the
    /// same d hit different banks.</summary>
    private const int GpuKvStride = GpuMaxD + 1;

    private static void ForwardIlgpu(IlgpuDevice device, Tensor q, Tensor k, Tensor v, Tensor o, AttentionOptions opt, Dims p)
    {
        var kp = new KernelParams
        {
            Sq = p.Sq, Sk = p.Sk, Hq = p.Hq, Hkv = p.Hkv, D = p.D, Scale = p.Scale, BiasHeadStride = p.BiasHeadStride,
            Flags = (opt.Causal ? FlagCausal : 0) | (opt.KeyMask is null ? 0 : FlagKeyMask)
                  | (opt.Mask is null ? 0 : FlagMask) | (opt.Bias is null ? 0 : FlagBias),
        };
        // Absent masks still need a valid view for the kernel signature; the flags keep them unread.
        using var dummyU8 = opt.KeyMask is null || opt.Mask is null ? Tensor.Empty(device, DType.U8, 4) : null;
        using var dummyF32 = opt.Bias is null ? Tensor.Empty(device, DType.F32, 1) : null;
        var keyMask = (opt.KeyMask ?? dummyU8!).AsView<byte>();
        var mask = (opt.Mask ?? dummyU8!).AsView<byte>();
        var bias = (opt.Bias ?? dummyF32!).AsView<float>();

        if (opt.Algorithm == AttentionAlgorithm.Reference || p.D > GpuMaxD)
        {
            var naive = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<byte>, ArrayView<byte>, ArrayView<float>, KernelParams>(NaiveKernel));
            naive(new Index2D(p.Sq, p.Hq), q.AsView<float>(), k.AsView<float>(), v.AsView<float>(), o.AsView<float>(), keyMask, mask, bias, kp);
            return;
        }
        var flash = device.Kernel(static a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<byte>, ArrayView<byte>, ArrayView<float>, KernelParams>(FlashKernel));
        int tiles = (p.Sq + GpuRows - 1) / GpuRows;
        flash(new KernelConfig(tiles * p.Hq, Softmax.GroupSizeFor(device, GpuThreads)), q.AsView<float>(), k.AsView<float>(), v.AsView<float>(), o.AsView<float>(), keyMask, mask, bias, kp);
    }

    /// <summary>The logit of (query i, key j) of head h after bias and masks (−∞ when masked or out of range).</summary>
    private static float MaskedLogit(float s, int h, int i, int j, KernelParams p, ArrayView<byte> keyMask, ArrayView<byte> mask, ArrayView<float> bias)
    {
        if (j >= p.Sk || i >= p.Sq) return float.NegativeInfinity;
        if ((p.Flags & FlagCausal) != 0 && j > i + (p.Sk - p.Sq)) return float.NegativeInfinity;
        if ((p.Flags & FlagKeyMask) != 0 && keyMask[j] == 0) return float.NegativeInfinity;
        if ((p.Flags & FlagMask) != 0 && mask[(long)i * p.Sk + j] == 0) return float.NegativeInfinity;
        if ((p.Flags & FlagBias) != 0) s += bias[h * p.BiasHeadStride + (long)i * p.Sk + j];
        return s;
    }

    /// <summary>
    /// Reference kernel (ladder step 0) and the path for D &gt; 128: one thread per (query row, head). Pass 1 finds
    /// the row max, pass 2 accumulates exp(logit − max)·v straight into the thread's own output row, then divides.
    /// </summary>
    [IlgpuKernel]
    private static void NaiveKernel(Index2D index, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o,
        ArrayView<byte> keyMask, ArrayView<byte> mask, ArrayView<float> bias, KernelParams p)
    {
        int i = index.X, h = index.Y;
        int kvh = h / (p.Hq / p.Hkv);
        long qBase = ((long)i * p.Hq + h) * p.D;
        float max = float.NegativeInfinity;
        for (int j = 0; j < p.Sk; j++)
        {
            long kBase = ((long)j * p.Hkv + kvh) * p.D;
            float dot = 0f;
            for (int c = 0; c < p.D; c++) dot += q[qBase + c] * k[kBase + c];
            max = XMath.Max(max, MaskedLogit(dot * p.Scale, h, i, j, p, keyMask, mask, bias));
        }
        for (int c = 0; c < p.D; c++) o[qBase + c] = 0f;
        if (max == float.NegativeInfinity) return; // every key masked: zeros
        float sum = 0f;
        for (int j = 0; j < p.Sk; j++)
        {
            long kBase = ((long)j * p.Hkv + kvh) * p.D;
            float dot = 0f;
            for (int c = 0; c < p.D; c++) dot += q[qBase + c] * k[kBase + c];
            float e = XMath.Exp(MaskedLogit(dot * p.Scale, h, i, j, p, keyMask, mask, bias) - max);
            sum += e;
            for (int c = 0; c < p.D; c++) o[qBase + c] += e * v[kBase + c];
        }
        float inv = 1f / sum;
        for (int c = 0; c < p.D; c++) o[qBase + c] *= inv;
    }

    /// <summary>
    /// Flash attention, D ≤ 128. Group = 128 threads for (head, 16 query rows). Q (pre-scaled) and the O accumulator
    /// stay in shared memory; per tile of 32 keys: K → shared, 16×32 logits (4 per thread), V → the same shared
    /// tile while threads 0..15 run the online-softmax update of their row, then O = α·O + P·V (thread = row t/8,
    /// columns t%8, t%8+8, …). Shared: 16·128 + 32·129 + 16·32 + 16·128 + 3·16 floats ≈ 35 KiB.
    /// </summary>
    [IlgpuKernel(explicitlyGrouped: true)]
    private static void FlashKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o,
        ArrayView<byte> keyMask, ArrayView<byte> mask, ArrayView<float> bias, KernelParams p)
    {
        var qs = SharedMemory.Allocate<float>(GpuRows * GpuMaxD);
        var kvs = SharedMemory.Allocate<float>(GpuKeys * GpuKvStride);
        var ps = SharedMemory.Allocate<float>(GpuRows * GpuKeys);
        var os = SharedMemory.Allocate<float>(GpuRows * GpuMaxD);
        var ms = SharedMemory.Allocate<float>(GpuRows);
        var ls = SharedMemory.Allocate<float>(GpuRows);
        var alphas = SharedMemory.Allocate<float>(GpuRows);

        int t = Group.IdxX, threads = Group.DimX;
        int tiles = (p.Sq + GpuRows - 1) / GpuRows;
        int h = Grid.IdxX / tiles;
        int q0 = Grid.IdxX % tiles * GpuRows;
        int kvh = h / (p.Hq / p.Hkv);
        int d = p.D;

        for (int idx = t; idx < GpuRows * d; idx += threads)
        {
            int r = idx / d, c = idx % d, qi = q0 + r;
            qs[r * GpuMaxD + c] = qi < p.Sq ? q[((long)qi * p.Hq + h) * d + c] * p.Scale : 0f;
            os[r * GpuMaxD + c] = 0f;
        }
        for (int r = t; r < GpuRows; r += threads)
        {
            ms[r] = float.NegativeInfinity;
            ls[r] = 0f;
        }
        int keyEnd = p.Sk;
        if ((p.Flags & FlagCausal) != 0)
            keyEnd = XMath.Clamp(XMath.Min(q0 + GpuRows, p.Sq) + (p.Sk - p.Sq), 0, p.Sk);
        Group.Barrier();

        for (int k0 = 0; k0 < keyEnd; k0 += GpuKeys)
        {
            for (int idx = t; idx < GpuKeys * d; idx += threads)
            {
                int j = idx / d, c = idx % d, kj = k0 + j;
                kvs[j * GpuKvStride + c] = kj < p.Sk ? k[((long)kj * p.Hkv + kvh) * d + c] : 0f;
            }
            Group.Barrier();
            for (int slot = t; slot < GpuThreads; slot += threads)
            {
                int row = slot / 8, lane = slot % 8;
                for (int jj = 0; jj < GpuKeys / 8; jj++)
                {
                    int j = lane + 8 * jj;
                    float dot = 0f;
                    for (int c = 0; c < d; c++) dot += qs[row * GpuMaxD + c] * kvs[j * GpuKvStride + c];
                    ps[row * GpuKeys + j] = k0 + j < keyEnd ? MaskedLogit(dot, h, q0 + row, k0 + j, p, keyMask, mask, bias) : float.NegativeInfinity;
                }
            }
            Group.Barrier();
            for (int idx = t; idx < GpuKeys * d; idx += threads)
            {
                int j = idx / d, c = idx % d, kj = k0 + j;
                kvs[j * GpuKvStride + c] = kj < p.Sk ? v[((long)kj * p.Hkv + kvh) * d + c] : 0f;
            }
            for (int r = t; r < GpuRows; r += threads)
            {
                float mOld = ms[r], mx = float.NegativeInfinity;
                for (int j = 0; j < GpuKeys; j++) mx = XMath.Max(mx, ps[r * GpuKeys + j]);
                float mNew = XMath.Max(mOld, mx);
                float mUse = mNew == float.NegativeInfinity ? 0f : mNew; // all −∞ so far: p = 0, no NaN
                float alpha = XMath.Exp(mOld - mUse);
                float sum = 0f;
                for (int j = 0; j < GpuKeys; j++)
                {
                    float e = XMath.Exp(ps[r * GpuKeys + j] - mUse);
                    ps[r * GpuKeys + j] = e;
                    sum += e;
                }
                ls[r] = ls[r] * alpha + sum;
                ms[r] = mNew;
                alphas[r] = alpha;
            }
            Group.Barrier();
            for (int slot = t; slot < GpuThreads; slot += threads)
            {
                int row = slot / 8, lane = slot % 8;
                float a = alphas[row];
                for (int c = lane; c < d; c += 8)
                {
                    float acc = os[row * GpuMaxD + c] * a;
                    for (int j = 0; j < GpuKeys; j++) acc += ps[row * GpuKeys + j] * kvs[j * GpuKvStride + c];
                    os[row * GpuMaxD + c] = acc;
                }
            }
            Group.Barrier();
        }

        for (int idx = t; idx < GpuRows * d; idx += threads)
        {
            int r = idx / d, c = idx % d, qi = q0 + r;
            if (qi < p.Sq)
            {
                float l = ls[r];
                o[((long)qi * p.Hq + h) * d + c] = l > 0f ? os[r * GpuMaxD + c] / l : 0f;
            }
        }
    }
}
