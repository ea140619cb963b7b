using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>
/// Scaled dot-product attention, o = softmax(scale · q kᵀ + bias, masked) v, per head.
/// q [S_q, H_q, D], k and v [S_k, H_kv, D], o [S_q, H_q, D] (F32, tokens-major: a Linear projection's [S, H·D]
/// reshaped; rank-4 [B, S, H, D] is accepted too: each sample attends within itself). H_q must be a multiple of H_kv (grouped-query attention:
/// kv head j serves q heads j·G … j·G+G−1 with G = H_q/H_kv, as transformers' repeat_kv). o must not overlap k or v
/// (the CPU fast path allows o == q). See <see cref="AttentionOptions"/> for scale, causal and the masks.
/// </summary>
public static partial class Attention
{
    private const string Op = nameof(Attention);

    /// <summary>The problem after the argument checks.</summary>
    /// <remarks><c>BiasHeadStride</c>: elements between the bias planes of consecutive query heads (0: one plane shared
    /// by every head; S_q·S_k: a bias per head).</remarks>
    private readonly record struct Dims(int Sq, int Sk, int Hq, int Hkv, int D, float Scale, long BiasHeadStride = 0)
    {
        public int Group => Hq / Hkv;
    }

    /// <summary>Multiply-adds of S = QKᵀ and O = PV, ×2 (about half of the score matrix under a causal mask).</summary>
    private static double AttentionFlops(Dims d, AttentionOptions options) =>
        4.0 * d.Sq * d.Sk * d.Hq * d.D * (options.Causal ? 0.5 : 1.0);

    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor o, AttentionOptions? options = null)
    {
        options ??= new AttentionOptions();
        // A leading batch axis [B, S, H, D] (B > 1): samples are independent problems over contiguous views, so the
        // batch runs as B launches of the one implementation (masks and bias, when given, apply to every sample).
        if (q.Rank == 4 && q.Shape[0] > 1)
        {
            int b = q.Shape[0];
            foreach (var (arg, t) in new[] { ("k", k), ("v", v), ("o", o) })
                Check.That(t.Rank == 4 && t.Shape[0] == b, Op, $"{arg} has shape {t.Shape}; q is batched {q.Shape}, so expected [{b}, S, H, D]");
            for (int i = 0; i < b; i++) Forward(q.Slice(i, 1), k.Slice(i, 1), v.Slice(i, 1), o.Slice(i, 1), options);
            return;
        }
        var (sq, hq, d) = Tokens("q", q);
        var (sk, hkv, dk) = Tokens("k", k);
        var (sv, hv, dv) = Tokens("v", v);
        var (so, ho, dO) = Tokens("o", o);
        Check.That(dk == d, Op, $"k has shape {k.Shape}; its head dim {dk} differs from q's {d} (q {q.Shape})");
        Check.That(sv == sk && hv == hkv && dv == d, Op, $"v has shape {v.Shape}; expected the shape of k {k.Shape}");
        Check.That(so == sq && ho == hq && dO == d, Op, $"o has shape {o.Shape}; expected the shape of q {q.Shape}");
        Check.That(d >= 1 && hq >= 1 && hkv >= 1, Op, $"q {q.Shape}, k {k.Shape}: heads and head dim must be ≥ 1");
        Check.That(hq % hkv == 0, Op, $"q has {hq} heads, not a multiple of k/v's {hkv} heads (q {q.Shape}, k {k.Shape})");
        Check.That(sk >= 1, Op, $"k has shape {k.Shape}; expected at least one key");
        if (options.KeyMask is { } km)
        {
            Check.DType(Op, "KeyMask", km, DType.U8);
            Check.Count(Op, "KeyMask", km, sk);
        }
        if (options.Mask is { } mask)
        {
            Check.DType(Op, "Mask", mask, DType.U8);
            Check.Count(Op, "Mask", mask, (long)sq * sk);
            Check.LastDim(Op, "Mask", mask, sk);
        }
        long biasHeadStride = 0;
        if (options.Bias is { } bias)
        {
            Check.DType(Op, "Bias", bias, DType.F32);
            long plane = (long)sq * sk;
            Check.That(bias.Count == plane || bias.Count == plane * hq, Op,
                $"Bias has shape {bias.Shape}; expected [S_q, S_k] = [{sq}, {sk}] (shared by the heads) or [H_q, S_q, S_k] = [{hq}, {sq}, {sk}] (one per head)");
            Check.LastDim(Op, "Bias", bias, sk);
            if (bias.Count != plane) biasHeadStride = plane;
        }
        float scale = options.Scale ?? 1f / MathF.Sqrt(d);
        Check.That(float.IsFinite(scale), Op, $"Scale {scale} is not finite");
        var dims = new Dims(sq, sk, hq, hkv, d, scale, biasHeadStride);
        if (sq == 0) return;
        using var profile = OpProfile.Start(Op, q.Device, AttentionFlops(dims, options), (dims, options.Causal),
            static s => $"S {s.dims.Sq}x{s.dims.Sk}, {s.dims.Hq}/{s.dims.Hkv} heads x {s.dims.D}{(s.Causal ? ", causal" : "")}");
        switch (Check.SameDevice(Op, q, k, v, o, options.KeyMask, options.Mask, options.Bias))
        {
            case CpuDevice cpu:
                if (options.Algorithm == AttentionAlgorithm.Reference) ForwardCpuReference(q, k, v, o, options, dims);
                else if (options.Algorithm == AttentionAlgorithm.Materialized || cpu.AttentionKernel == CpuAttentionKernel.Materialized)
                    ForwardCpuMaterialized(cpu, q, k, v, o, options, dims);
                else ForwardCpuFlash(cpu, q, k, v, o, options, dims);
                break;
            case IlgpuDevice when options.Algorithm == AttentionAlgorithm.Materialized:
                throw new NotSupportedException($"{Op}: the materialised algorithm runs on the cpu device only (ILGPU devices run the tiled kernel)");
            case IlgpuDevice { Kind: DeviceKind.Cuda } when FlashAttentionMma.Enabled && FlashAttentionMma.Supports(q, k, v, options): FlashAttentionMma.Forward(q, k, v, o, scale); break; // opt-in tensor cores: PUREFLUX_CUDA_MMA=1
            case IlgpuDevice gpu:
                ForwardIlgpu(gpu, q, k, v, o, options, dims);
                break;
        }
    }

    /// <summary>(S, H, D) of a [S, H, D] or [1, S, H, D] tensor, checking the dtype.</summary>
    private static (int S, int H, int D) Tokens(string arg, Tensor t)
    {
        Check.DType(Op, arg, t, DType.F32);
        var s = t.Shape;
        if (s.Rank == 3) return (s[0], s[1], s[2]);
        if (s.Rank == 4 && s[0] == 1) return (s[1], s[2], s[3]);
        throw new ArgumentException($"{Op}: {arg} ({t.Name ?? "unnamed"}) has shape {s}; expected [S, H, D] or [B, S, H, D]");
    }

    // ---------------------------------------------------------------- CPU reference (ladder step 0)

    /// <summary>One query row at a time: materialise the row of logits, softmax, weighted sum of v. Threads over heads.</summary>
    private static unsafe void ForwardCpuReference(Tensor q, Tensor k, Tensor v, Tensor o, AttentionOptions opt, Dims p)
    {
        float* qp = (float*)q.Pointer, kp = (float*)k.Pointer, vp = (float*)v.Pointer, op = (float*)o.Pointer;
        byte* keyMask = opt.KeyMask is { } km ? (byte*)km.Pointer : null;
        byte* mask = opt.Mask is { } m ? (byte*)m.Pointer : null;
        float* bias = opt.Bias is { } b ? (float*)b.Pointer : null;
        bool causal = opt.Causal;
        Parallel.For(0, p.Hq, h =>
        {
            var logits = new float[p.Sk];
            int kvh = h / p.Group;
            float* headBias = bias == null ? null : bias + h * p.BiasHeadStride;
            for (int i = 0; i < p.Sq; i++)
            {
                float* qi = qp + ((long)i * p.Hq + h) * p.D;
                float max = float.NegativeInfinity;
                for (int j = 0; j < p.Sk; j++)
                {
                    float s = float.NegativeInfinity;
                    if (Allowed(i, j, p, causal, keyMask, mask))
                    {
                        float* kj = kp + ((long)j * p.Hkv + kvh) * p.D;
                        float dot = 0;
                        for (int c = 0; c < p.D; c++) dot += qi[c] * kj[c];
                        s = dot * p.Scale + (headBias != null ? headBias[(long)i * p.Sk + j] : 0f);
                    }
                    logits[j] = s;
                    max = MathF.Max(max, s);
                }
                float* oi = op + ((long)i * p.Hq + h) * p.D;
                new Span<float>(oi, p.D).Clear();
                if (max == float.NegativeInfinity) continue; // every key masked: zeros
                float sum = 0;
                for (int j = 0; j < p.Sk; j++)
                {
                    float e = MathF.Exp(logits[j] - max);
                    sum += e;
                    if (e == 0) continue;
                    float* vj = vp + ((long)j * p.Hkv + kvh) * p.D;
                    for (int c = 0; c < p.D; c++) oi[c] += e * vj[c];
                }
                for (int c = 0; c < p.D; c++) oi[c] /= sum;
            }
        });
    }

    // ---------------------------------------------------------------- CPU materialised (the experiment baseline for flash)

    /// <summary>
    /// Per query head: S = Q_h K_hᵀ [S_q, S_k] with the packed GEMM (strided views, nothing copied), then per row scale,
    /// bias, masks and softmax in place, then O_h = P V_h with the GEMM again. Holds one head's S_q·S_k floats at a time;
    /// the GEMMs thread internally, the softmax rows are split over the device's threads. o may be q: head h's output
    /// columns are written after its own queries were consumed, and other heads read other columns.
    /// </summary>
    private static unsafe void ForwardCpuMaterialized(CpuDevice device, Tensor q, Tensor k, Tensor v, Tensor o, AttentionOptions opt, Dims p)
    {
        long plane = (long)p.Sq * p.Sk;
        float* s = (float*)NativeMemory.AlignedAlloc((nuint)(plane * sizeof(float)), 64);
        try
        {
            float* qp = (float*)q.Pointer, kp = (float*)k.Pointer, vp = (float*)v.Pointer, op = (float*)o.Pointer;
            nint keyMask = opt.KeyMask is { } km ? km.Pointer : 0, mask = opt.Mask is { } m ? m.Pointer : 0;
            nint bias = opt.Bias is { } b ? b.Pointer : 0, ps = (nint)s;
            long qStride = (long)p.Hq * p.D, kvStride = (long)p.Hkv * p.D;
            bool causal = opt.Causal;
            int threads = Math.Max(1, Math.Min(device.Threads, p.Sq));
            for (int h = 0; h < p.Hq; h++)
            {
                int kvh = h / p.Group;
                GemmCpu.Run(qp + (long)h * p.D, qStride, new BOperand(kp + (long)kvh * p.D, DType.F32, BLayout.NK, kvStride), null,
                    s, p.Sk, p.Sq, p.Sk, p.D, device.Threads);
                long biasOffset = h * p.BiasHeadStride;
                Parallel.For(0, threads, device.ParallelOptions, t =>
                {
                    var (start, len) = Partition.Range(p.Sq, t, threads, 1);
                    for (long i = start; i < start + len; i++)
                        SoftmaxRow((float*)ps + i * p.Sk, (int)i, p, causal, (byte*)keyMask, (byte*)mask,
                            bias == 0 ? null : (float*)bias + biasOffset + i * p.Sk);
                });
                GemmCpu.Run(s, p.Sk, new BOperand(vp + (long)kvh * p.D, DType.F32, BLayout.KN, kvStride), null,
                    op + (long)h * p.D, qStride, p.Sq, p.D, p.Sk, device.Threads);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(s);
        }
    }

    /// <summary>One row of logits → probabilities in place: scale, bias, masks (−∞), softmax; an all-masked row becomes zeros.</summary>
    private static unsafe void SoftmaxRow(float* row, int i, in Dims p, bool causal, byte* keyMask, byte* mask, float* biasRow)
    {
        var r = new Span<float>(row, p.Sk);
        System.Numerics.Tensors.TensorPrimitives.Multiply(r, p.Scale, r);
        if (biasRow != null) System.Numerics.Tensors.TensorPrimitives.Add(r, new ReadOnlySpan<float>(biasRow, p.Sk), r);
        if (causal || keyMask != null || mask != null)
            for (int j = 0; j < p.Sk; j++)
                if (!Allowed(i, j, p, causal, keyMask, mask)) r[j] = float.NegativeInfinity;
        float max = System.Numerics.Tensors.TensorPrimitives.Max(r);
        if (max == float.NegativeInfinity) { r.Clear(); return; }
        System.Numerics.Tensors.TensorPrimitives.Subtract(r, max, r);
        System.Numerics.Tensors.TensorPrimitives.Exp(r, r);
        float sum = System.Numerics.Tensors.TensorPrimitives.Sum(r);
        System.Numerics.Tensors.TensorPrimitives.Divide(r, sum, r);
    }

    private static unsafe bool Allowed(int i, int j, in Dims p, bool causal, byte* keyMask, byte* mask) =>
        !(causal && j > i + (p.Sk - p.Sq))
        && (keyMask == null || keyMask[j] != 0)
        && (mask == null || mask[(long)i * p.Sk + j] != 0);

    // ---------------------------------------------------------------- CPU flash attention

    /// <summary>Query rows per work item (one item = one head × QueryBlock rows).</summary>
    private const int QueryBlock = 64;
    /// <summary>Keys per inner step: the logits tile is QueryBlock × KeyBlock (32 KiB, L1/L2).</summary>
    private const int KeyBlock = 128;
    /// <summary>Keys per packed Kᵀ panel: the QK micro-kernel's width (4 × 16 lanes).</summary>
    private const int Panel = 64;
    /// <summary>Query rows per micro-kernel call.</summary>
    private const int Rows = 4;

    /// <summary>
    /// Flash attention (Dao et al. 2022, online softmax after Milakov &amp; Gimelshein 2018): per (head, block of 64
    /// query rows) the keys are visited in blocks of 128; logits of one block live in a 64×128 tile, the running max
    /// m, sum l and the output accumulator O (64 × D) are rescaled by exp(m_old − m_new) as blocks arrive, so no
    /// S_q × S_k matrix is ever formed. K is first packed transposed in 64-key panels ([D][64], contiguous) and V is
    /// packed per head with rows padded to a multiple of 16, so both micro-kernels stream contiguous memory.
    /// </summary>
    private static unsafe void ForwardCpuFlash(CpuDevice device, Tensor q, Tensor k, Tensor v, Tensor o, AttentionOptions opt, Dims p)
    {
        int d = p.D, dp = (d + 15) & ~15;
        int skp = (p.Sk + Panel - 1) / Panel * Panel;
        int panels = skp / Panel;
        long kvHeadFloats = (long)skp * dp; // both packed K and packed V hold skp × dp per kv head (K uses d rows)
        // Packed K/V and the key row come from the device pool (64-byte aligned; reused by the next call, no page faults).
        using var ktTensor = Tensor.Empty(device, DType.F32, new Shape(checked((int)(kvHeadFloats * p.Hkv))), "attention packed K");
        using var vTensor = Tensor.Empty(device, DType.F32, new Shape(checked((int)(kvHeadFloats * p.Hkv))), "attention packed V");
        using var keyAddTensor = Tensor.Empty(device, DType.F32, new Shape(skp), "attention key row");
        float* kt = (float*)ktTensor.Pointer, vpk = (float*)vTensor.Pointer;
        // Additive key row: 0 = attend, −∞ = padding or KeyMask 0. Added to every logits row.
        float* keyAdd = (float*)keyAddTensor.Pointer;
        {
            float* kp = (float*)k.Pointer, vp = (float*)v.Pointer;
            byte* keyMask = opt.KeyMask is { } km ? (byte*)km.Pointer : null;
            for (int j = 0; j < skp; j++)
                keyAdd[j] = j < p.Sk && (keyMask == null || keyMask[j] != 0) ? 0f : float.NegativeInfinity;

            // Pack K (transposed panels) and V (padded rows): one item per (kv head, panel).
            ParallelItems(device, p.Hkv * panels, _ => 0, (item, _) => PackPanel(kp, vp, kt, vpk, item / panels, item % panels, p, dp, kvHeadFloats), _ => { });

            int qBlocks = (p.Sq + QueryBlock - 1) / QueryBlock;
            var ctx = new FlashContext
            {
                Q = (float*)q.Pointer, O = (float*)o.Pointer, Kt = kt, V = vpk, KeyAdd = keyAdd,
                Mask = opt.Mask is { } m ? (byte*)m.Pointer : null,
                Bias = opt.Bias is { } b ? (float*)b.Pointer : null,
                Causal = opt.Causal, P = p, Dp = dp, KvHeadFloats = kvHeadFloats, QBlocks = qBlocks,
            };
            ParallelItems(device, p.Hq * qBlocks,
                _ => (nint)NativeMemory.AlignedAlloc((nuint)(ScratchFloats(d, dp) * sizeof(float)), 64),
                (item, scratch) => FlashItem(ctx, item, (float*)scratch),
                scratch => NativeMemory.AlignedFree((void*)scratch));
        }
    }

    /// <summary>Packs keys [64·panel, 64·panel + 64) of kv head h: Kᵀ panel [D][64] and V rows [64][Dp], zero padded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void PackPanel(float* kp, float* vp, float* kt, float* vpk, int h, int panel, Dims p, int dp, long kvHeadFloats)
    {
        int d = p.D;
        float* ktp = kt + h * kvHeadFloats + (long)panel * Panel * d;
        float* vdst = vpk + h * kvHeadFloats + (long)panel * Panel * dp;
        for (int jj = 0; jj < Panel; jj++)
        {
            int j = panel * Panel + jj;
            float* vrow = vdst + (long)jj * dp;
            if (j < p.Sk)
            {
                float* ksrc = kp + ((long)j * p.Hkv + h) * d;
                for (int c = 0; c < d; c++) ktp[c * Panel + jj] = ksrc[c];
                new ReadOnlySpan<float>(vp + ((long)j * p.Hkv + h) * d, d).CopyTo(new Span<float>(vrow, d));
                new Span<float>(vrow + d, dp - d).Clear();
            }
            else
            {
                for (int c = 0; c < d; c++) ktp[c * Panel + jj] = 0f;
                new Span<float>(vrow, dp).Clear();
            }
        }
    }

    private unsafe struct FlashContext
    {
        public float* Q, O, Kt, V, KeyAdd, Bias;
        public byte* Mask;
        public bool Causal;
        public Dims P;
        public int Dp, QBlocks;
        public long KvHeadFloats;
    }

    /// <summary>Q tile [64][D], logits tile [64][128], O tile [64][Dp], m, l, alpha [64] (each 64-byte aligned).</summary>
    private static long ScratchFloats(int d, int dp) =>
        QueryBlock * (long)((d + 15) & ~15) + QueryBlock * KeyBlock + QueryBlock * (long)dp + 3 * QueryBlock;

    /// <summary>Runs items 0..count-1 on device.Threads workers, each pulling the next item from a shared counter.</summary>
    private static void ParallelItems<TLocal>(CpuDevice device, int count, Func<int, TLocal> init, Action<int, TLocal> body, Action<TLocal> done)
    {
        int workers = Math.Min(device.Threads, count);
        int next = 0;
        void Work(int w)
        {
            var local = init(w);
            try
            {
                int item;
                while ((item = Interlocked.Increment(ref next) - 1) < count) body(item, local);
            }
            finally { done(local); }
        }
        if (workers <= 1) Work(0);
        else Parallel.For(0, workers, device.ParallelOptions, Work);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // full JIT from the first call, not tier 0
    private static unsafe void FlashItem(in FlashContext c, int item, float* scratch)
    {
        var p = c.P;
        int d = p.D, dp = c.Dp;
        int h = item / c.QBlocks, q0 = item % c.QBlocks * QueryBlock;
        int rows = Math.Min(QueryBlock, p.Sq - q0);
        int rowsPadded = (rows + Rows - 1) / Rows * Rows;
        int kvh = h / p.Group;
        int ldq = (d + 15) & ~15;
        float* qt = scratch;
        float* st = qt + QueryBlock * ldq;
        float* ot = st + QueryBlock * KeyBlock;
        float* mRow = ot + QueryBlock * dp;
        float* lRow = mRow + QueryBlock;
        float* alpha = lRow + QueryBlock;

        // Q tile, pre-scaled; padding rows are zero and never written out.
        for (int r = 0; r < rowsPadded; r++)
        {
            var dst = new Span<float>(qt + r * ldq, d);
            if (r < rows) TensorPrimitives.Multiply(new ReadOnlySpan<float>(c.Q + ((long)(q0 + r) * p.Hq + h) * d, d), p.Scale, dst);
            else dst.Clear();
            new Span<float>(ot + r * dp, dp).Clear();
            mRow[r] = float.NegativeInfinity;
            lRow[r] = 0f;
        }

        // Causal: keys past the last row's limit are masked for every row of this block.
        int keyEnd = p.Sk;
        if (c.Causal) keyEnd = Math.Clamp(q0 + rows - 1 + (p.Sk - p.Sq) + 1, 0, p.Sk);
        float* ktHead = c.Kt + kvh * c.KvHeadFloats;
        float* vHead = c.V + kvh * c.KvHeadFloats;

        for (int k0 = 0; k0 < keyEnd; k0 += KeyBlock)
        {
            int keys = Math.Min(KeyBlock, keyEnd - k0);
            int keysPadded = (keys + Panel - 1) / Panel * Panel; // ≤ skp - k0: panels are padded with masked keys
            // Logits: st[r][j] = (scale·q_r) · k_j
            for (int pj = 0; pj < keysPadded; pj += Panel)
            {
                float* panel = ktHead + (long)(k0 + pj) * d;
                for (int r = 0; r < rowsPadded; r += Rows)
                    QkMicro(qt + r * ldq, ldq, panel, d, st + r * KeyBlock + pj);
            }
            for (int r = 0; r < rows; r++)
            {
                float* s = st + r * KeyBlock;
                int qi = q0 + r;
                AddRow(s, c.KeyAdd + k0, keysPadded);
                if (c.Bias != null)
                {
                    var srow = new Span<float>(s, keys);
                    TensorPrimitives.Add(srow, new ReadOnlySpan<float>(c.Bias + h * p.BiasHeadStride + (long)qi * p.Sk + k0, keys), srow);
                }
                if (c.Mask != null)
                {
                    byte* mrow = c.Mask + (long)qi * p.Sk + k0;
                    for (int j = 0; j < keys; j++)
                        if (mrow[j] == 0) s[j] = float.NegativeInfinity;
                }
                if (c.Causal)
                {
                    int limit = qi + (p.Sk - p.Sq) - k0; // keys j > limit are masked
                    for (int j = Math.Max(0, limit + 1); j < keys; j++) s[j] = float.NegativeInfinity;
                }
                for (int j = keys; j < keysPadded; j++) s[j] = float.NegativeInfinity;
                OnlineSoftmaxRow(s, keysPadded, ref mRow[r], ref lRow[r], out alpha[r]);
            }
            for (int r = rows; r < rowsPadded; r++)
            {
                new Span<float>(st + r * KeyBlock, keysPadded).Clear();
                alpha[r] = 0f;
            }
            // O = diag(alpha)·O + P·V
            for (int r = 0; r < rowsPadded; r += Rows)
            {
                int c0 = 0;
                for (; c0 + 64 <= dp; c0 += 64)
                    PvMicro64(st + r * KeyBlock, vHead + (long)k0 * dp + c0, dp, keysPadded, ot + r * dp + c0, alpha + r);
                for (; c0 < dp; c0 += 16)
                    PvMicro16(st + r * KeyBlock, vHead + (long)k0 * dp + c0, dp, keysPadded, ot + r * dp + c0, alpha + r);
            }
        }

        for (int r = 0; r < rows; r++)
        {
            float l = lRow[r];
            var dst = new Span<float>(c.O + ((long)(q0 + r) * p.Hq + h) * d, d);
            if (l > 0) TensorPrimitives.Multiply(new ReadOnlySpan<float>(ot + r * dp, d), 1f / l, dst);
            else dst.Clear(); // every key masked
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddRow(float* s, float* add, int n)
    {
        for (int j = 0; j < n; j += 16)
            Vector512.Store(Vector512.Load(s + j) + Vector512.Load(add + j), s + j);
    }

    /// <summary>
    /// One row of the online softmax: m_new = max(m, max_j s_j); s_j ← exp(s_j − m_new); l ← l·α + Σ s_j with
    /// α = exp(m − m_new). A row with only −∞ so far uses 0 as its max, so its p are exactly 0 (no NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void OnlineSoftmaxRow(float* s, int n, ref float m, ref float l, out float alpha)
    {
        var vmax = Vector512.Create(float.NegativeInfinity);
        for (int j = 0; j < n; j += 16) vmax = Vector512.Max(vmax, Vector512.Load(s + j));
        float mNew = MathF.Max(m, HorizontalMax(vmax));
        float mUse = mNew == float.NegativeInfinity ? 0f : mNew;
        alpha = MathF.Exp(m - mUse);
        var vm = Vector512.Create(mUse);
        var vsum = Vector512<float>.Zero;
        for (int j = 0; j < n; j += 16)
        {
            var e = FastExp.Exp(Vector512.Load(s + j) - vm);
            Vector512.Store(e, s + j);
            vsum += e;
        }
        l = l * alpha + Vector512.Sum(vsum);
        m = mNew;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector512<float> v)
    {
        var a = Vector256.Max(v.GetLower(), v.GetUpper());
        var b = Vector128.Max(a.GetLower(), a.GetUpper());
        float r = MathF.Max(MathF.Max(b[0], b[1]), MathF.Max(b[2], b[3]));
        return r;
    }

    /// <summary>
    /// s[r][0..64) = Σ_d q[r][d] · kt[d][0..64) for 4 rows: 16 accumulators (4 rows × 4 vectors of 16 keys), one
    /// broadcast per row and four panel loads per d. The panel is contiguous ([D][64]), so it streams from L1/L2.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void QkMicro(float* q, int ldq, float* kt, int d, float* s)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        float* q1 = q + ldq, q2 = q1 + ldq, q3 = q2 + ldq;
        for (int c = 0; c < d; c++, kt += Panel)
        {
            var k0 = Vector512.Load(kt);
            var k1 = Vector512.Load(kt + 16);
            var k2 = Vector512.Load(kt + 32);
            var k3 = Vector512.Load(kt + 48);
            var b = Vector512.Create(q[c]);
            a00 = Vector512.FusedMultiplyAdd(b, k0, a00); a01 = Vector512.FusedMultiplyAdd(b, k1, a01);
            a02 = Vector512.FusedMultiplyAdd(b, k2, a02); a03 = Vector512.FusedMultiplyAdd(b, k3, a03);
            b = Vector512.Create(q1[c]);
            a10 = Vector512.FusedMultiplyAdd(b, k0, a10); a11 = Vector512.FusedMultiplyAdd(b, k1, a11);
            a12 = Vector512.FusedMultiplyAdd(b, k2, a12); a13 = Vector512.FusedMultiplyAdd(b, k3, a13);
            b = Vector512.Create(q2[c]);
            a20 = Vector512.FusedMultiplyAdd(b, k0, a20); a21 = Vector512.FusedMultiplyAdd(b, k1, a21);
            a22 = Vector512.FusedMultiplyAdd(b, k2, a22); a23 = Vector512.FusedMultiplyAdd(b, k3, a23);
            b = Vector512.Create(q3[c]);
            a30 = Vector512.FusedMultiplyAdd(b, k0, a30); a31 = Vector512.FusedMultiplyAdd(b, k1, a31);
            a32 = Vector512.FusedMultiplyAdd(b, k2, a32); a33 = Vector512.FusedMultiplyAdd(b, k3, a33);
        }
        a00.Store(s); a01.Store(s + 16); a02.Store(s + 32); a03.Store(s + 48); s += KeyBlock;
        a10.Store(s); a11.Store(s + 16); a12.Store(s + 32); a13.Store(s + 48); s += KeyBlock;
        a20.Store(s); a21.Store(s + 16); a22.Store(s + 32); a23.Store(s + 48); s += KeyBlock;
        a30.Store(s); a31.Store(s + 16); a32.Store(s + 32); a33.Store(s + 48);
    }

    /// <summary>
    /// o[r][0..64) = alpha[r]·o[r][0..64) + Σ_j p[r][j] · v[j][0..64) for 4 rows (16 accumulators). p rows have
    /// stride KeyBlock, v rows stride ldv (the padded head dim), o rows stride ldv.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void PvMicro64(float* pm, float* v, int ldv, int keys, float* o, float* alpha)
    {
        float* o1 = o + ldv, o2 = o1 + ldv, o3 = o2 + ldv;
        var s0 = Vector512.Create(alpha[0]); var s1 = Vector512.Create(alpha[1]);
        var s2 = Vector512.Create(alpha[2]); var s3 = Vector512.Create(alpha[3]);
        var a00 = Vector512.Load(o) * s0; var a01 = Vector512.Load(o + 16) * s0; var a02 = Vector512.Load(o + 32) * s0; var a03 = Vector512.Load(o + 48) * s0;
        var a10 = Vector512.Load(o1) * s1; var a11 = Vector512.Load(o1 + 16) * s1; var a12 = Vector512.Load(o1 + 32) * s1; var a13 = Vector512.Load(o1 + 48) * s1;
        var a20 = Vector512.Load(o2) * s2; var a21 = Vector512.Load(o2 + 16) * s2; var a22 = Vector512.Load(o2 + 32) * s2; var a23 = Vector512.Load(o2 + 48) * s2;
        var a30 = Vector512.Load(o3) * s3; var a31 = Vector512.Load(o3 + 16) * s3; var a32 = Vector512.Load(o3 + 32) * s3; var a33 = Vector512.Load(o3 + 48) * s3;
        float* p1 = pm + KeyBlock, p2 = p1 + KeyBlock, p3 = p2 + KeyBlock;
        for (int j = 0; j < keys; j++, v += ldv)
        {
            var v0 = Vector512.Load(v);
            var v1 = Vector512.Load(v + 16);
            var v2 = Vector512.Load(v + 32);
            var v3 = Vector512.Load(v + 48);
            var b = Vector512.Create(pm[j]);
            a00 = Vector512.FusedMultiplyAdd(b, v0, a00); a01 = Vector512.FusedMultiplyAdd(b, v1, a01);
            a02 = Vector512.FusedMultiplyAdd(b, v2, a02); a03 = Vector512.FusedMultiplyAdd(b, v3, a03);
            b = Vector512.Create(p1[j]);
            a10 = Vector512.FusedMultiplyAdd(b, v0, a10); a11 = Vector512.FusedMultiplyAdd(b, v1, a11);
            a12 = Vector512.FusedMultiplyAdd(b, v2, a12); a13 = Vector512.FusedMultiplyAdd(b, v3, a13);
            b = Vector512.Create(p2[j]);
            a20 = Vector512.FusedMultiplyAdd(b, v0, a20); a21 = Vector512.FusedMultiplyAdd(b, v1, a21);
            a22 = Vector512.FusedMultiplyAdd(b, v2, a22); a23 = Vector512.FusedMultiplyAdd(b, v3, a23);
            b = Vector512.Create(p3[j]);
            a30 = Vector512.FusedMultiplyAdd(b, v0, a30); a31 = Vector512.FusedMultiplyAdd(b, v1, a31);
            a32 = Vector512.FusedMultiplyAdd(b, v2, a32); a33 = Vector512.FusedMultiplyAdd(b, v3, a33);
        }
        a00.Store(o); a01.Store(o + 16); a02.Store(o + 32); a03.Store(o + 48);
        a10.Store(o1); a11.Store(o1 + 16); a12.Store(o1 + 32); a13.Store(o1 + 48);
        a20.Store(o2); a21.Store(o2 + 16); a22.Store(o2 + 32); a23.Store(o2 + 48);
        a30.Store(o3); a31.Store(o3 + 16); a32.Store(o3 + 32); a33.Store(o3 + 48);
    }

    /// <summary>As <see cref="PvMicro64"/> for a 16-wide column strip (head dims that are not a multiple of 64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void PvMicro16(float* pm, float* v, int ldv, int keys, float* o, float* alpha)
    {
        float* o1 = o + ldv, o2 = o1 + ldv, o3 = o2 + ldv;
        var a0 = Vector512.Load(o) * Vector512.Create(alpha[0]);
        var a1 = Vector512.Load(o1) * Vector512.Create(alpha[1]);
        var a2 = Vector512.Load(o2) * Vector512.Create(alpha[2]);
        var a3 = Vector512.Load(o3) * Vector512.Create(alpha[3]);
        float* p1 = pm + KeyBlock, p2 = p1 + KeyBlock, p3 = p2 + KeyBlock;
        for (int j = 0; j < keys; j++, v += ldv)
        {
            var vv = Vector512.Load(v);
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(pm[j]), vv, a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Create(p1[j]), vv, a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Create(p2[j]), vv, a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Create(p3[j]), vv, a3);
        }
        a0.Store(o); a1.Store(o1); a2.Store(o2); a3.Store(o3);
    }
}
