using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace PureFlux.Kernels;

/// <summary>
/// Tensor-core attention for CUDA, FlashAttention-2 style: o = softmax(scale · q kᵀ) v per head, non-causal, no
/// masks or bias, head dim 128. q [S_q, H_q, 128], k and v [S_k, H_kv, 128], o [S_q, H_q, 128] (F32, or with a
/// leading 1); H_q a multiple of H_kv (grouped-query attention as <see cref="Attention"/>).
/// <para>
/// A block of 4 warps takes 64 query rows of one head; each warp keeps its 16 rows of q as BF16 A fragments in
/// registers for the whole key loop. Keys advance in tiles of 64: k staged as BF16 rows (same 128-bit fragment
/// loads and K permutation as <see cref="GemmMma"/>, rows XOR-swizzled against bank conflicts), v staged transposed
/// (the mma's B operand needs each output column's keys contiguous, and ldmatrix.trans is out of reach from ILGPU).
/// S = q·kᵀ: 8 × 8 mma per warp; online softmax in log2 units with <c>ex2.approx</c>, row max over the four lanes
/// of a quad by shuffles, row sums kept per lane and reduced once at the end, the output rescaled by
/// exp2(m_old − m_new) per tile and divided by the sum at the end. The S accumulators, rounded to BF16, are
/// directly the A fragments of P·v (the C and A layouts line up), 4 × 16 mma per warp.
/// q, k, v (and P) are rounded to BF16 (relative error ≈ 2⁻⁹ per element); accumulation is FP32.
/// </para>
/// Credits: the algorithm is FlashAttention-2 (Dao, 2023); the C→A fragment reuse for P is the usual FA2 register
/// trick. Not run on a GPU yet: checked with ptxas only (see tests/Kernels/CudaMmaPtxTests.cs).
/// </summary>
public static partial class FlashAttentionMma
{
    private const string Op = "FlashAttentionMma.Forward";
    public const int HeadDim = 128;
    private const int BlockRows = 64, BlockThreads = 128;

    /// <summary>Sizes passed to the kernel. Public only because ILGPU's code generation must see it.</summary>
    public struct KernelParams
    {
        public int Sq, Sk, Hq, Hkv, Group;
        public float ScaleLog2;
    }

    /// <summary>PUREFLUX_CUDA_MMA=1 opts <see cref="Attention.Forward"/> into this kernel on CUDA devices where
    /// <see cref="Supports"/> holds (off by default until measured on a GPU).</summary>
    public static bool Enabled => GemmMma.Enabled;

    /// <summary>True when <see cref="Forward"/> can run this problem: CUDA, head dim 128, no masks, bias or causal
    /// option, the Flash algorithm, and 16-byte aligned q/k/v (the kernel's 128-bit loads).</summary>
    public static bool Supports(Tensor q, Tensor k, Tensor v, AttentionOptions options) =>
        q.Device is IlgpuDevice { Kind: DeviceKind.Cuda }
        && q.Shape[q.Rank - 1] == HeadDim
        && !options.Causal && options.KeyMask is null && options.Mask is null && options.Bias is null
        && options.Algorithm != AttentionAlgorithm.Reference
        && q.ByteOffset % 16 == 0 && k.ByteOffset % 16 == 0 && v.ByteOffset % 16 == 0;

    /// <summary>o = softmax(scale · q kᵀ) v; scale defaults to 1/√128. Shapes as in the class summary, all on one CUDA device.</summary>
    public static void Forward(Tensor q, Tensor k, Tensor v, Tensor o, float? scale = null)
    {
        var (sq, hq) = Tokens("q", q);
        var (sk, hkv) = Tokens("k", k);
        var (sv, hv) = Tokens("v", v);
        var (so, ho) = Tokens("o", o);
        Check.That(sv == sk && hv == hkv, Op, $"v has shape {v.Shape}; expected the shape of k {k.Shape}");
        Check.That(so == sq && ho == hq, Op, $"o has shape {o.Shape}; expected the shape of q {q.Shape}");
        Check.That(hq >= 1 && hkv >= 1 && hq % hkv == 0, Op, $"q has {hq} heads, not a positive multiple of k/v's {hkv} heads (q {q.Shape}, k {k.Shape})");
        Check.That(sk >= 1, Op, $"k has shape {k.Shape}; expected at least one key");
        float s = scale ?? 1f / MathF.Sqrt(HeadDim);
        Check.That(float.IsFinite(s), Op, $"scale {s} is not finite");
        Gemm.CheckNoOverlap(Op, "o", o, "k", k);
        Gemm.CheckNoOverlap(Op, "o", o, "v", v);
        var device = Check.SameDevice(Op, q, k, v, o);
        Check.That(device is IlgpuDevice { Kind: DeviceKind.Cuda }, Op,
            $"needs a CUDA device (inline PTX tensor-core kernel), got {device.Id}; use Attention.Forward elsewhere");
        if (sq == 0) return;
        var gpu = (IlgpuDevice)device;
        long qa = Address(q), ka = Address(k), va = Address(v);
        Check.That(qa % 16 == 0 && ka % 16 == 0 && va % 16 == 0, Op, "q, k and v must start 16-byte aligned (128-bit loads)");
        var kp = new KernelParams { Sq = sq, Sk = sk, Hq = hq, Hkv = hkv, Group = hq / hkv, ScaleLog2 = s * 1.44269504f };
        var kernel = gpu.Kernel(static a => a.LoadStreamKernel<long, long, long, ArrayView<float>, KernelParams>(Bf16Kernel));
        kernel(new KernelConfig(new Index2D((sq + BlockRows - 1) / BlockRows, hq), new Index2D(BlockThreads, 1)), qa, ka, va, o.AsView<float>(), kp);
    }

    private static long Address(Tensor t) => t.AsView<float>().LoadEffectiveAddressAsPtr().ToInt64();

    /// <summary>(S, H) of a [S, H, 128] or [1, S, H, 128] F32 tensor.</summary>
    private static (int S, int H) Tokens(string arg, Tensor t)
    {
        Check.DType(Op, arg, t, DType.F32);
        var s = t.Shape;
        if (s.Rank == 3 && s[2] == HeadDim) return (s[0], s[1]);
        if (s.Rank == 4 && s[0] == 1 && s[3] == HeadDim) return (s[1], s[2]);
        throw new ArgumentException($"{Op}: {arg} ({t.Name ?? "unnamed"}) has shape {s}; expected [S, H, {HeadDim}] or [1, S, H, {HeadDim}]");
    }

    /// <summary>2^x, approximate (ex2.approx.ftz: 2 ulp), 0 for −∞.</summary>
    private static float Exp2(float x)
    {
        CudaAsm.Emit("ex2.approx.ftz.f32 %0, %1;", out float r, x);
        return r;
    }

    private static float Max(float a, float b) => a > b ? a : b;
}
