namespace PureFlux.Kernels;

/// <summary>
/// Dense matrix products with FP32 accumulation.
/// <list type="bullet">
/// <item><see cref="Linear"/>: y[M, N] = x[M, K] · weightᵀ (+ bias), weight [N, K] in F32, F16 or BF16
/// (PyTorch Linear layout); x may be [..., K] (leading axes flattened into M), y then [..., N].</item>
/// <item><see cref="MatMul"/>: c[M, N] = a[M, K] · b[K, N], all F32.</item>
/// </list>
/// CPU: the packed, register-blocked AVX-512 kernel in <see cref="GemmCpu"/> (F16/BF16 widened while packing,
/// threads split N, or M when N is narrow). ILGPU: a 64×64 shared-memory tile kernel (Gemm.Kernel.cs).
/// </summary>
public static partial class Gemm
{
    /// <summary>y = x · weightᵀ (+ bias). x F32 [..., K]; weight [N, K] F32/F16/BF16; bias F32 [N] or null; y F32 [..., N].</summary>
    public static void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        const string op = "Gemm.Linear";
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.DType(op, "y", y, DType.F32);
        Check.Rank(op, "weight", weight, 2);
        Check.That(x.Rank >= 1, op, $"x ({x.Name ?? "unnamed"}) must have rank >= 1, got {x.Shape}");
        int n = weight.Shape[0], k = weight.Shape[1];
        Check.LastDim(op, "x", x, k);
        long rows = x.Shape.Rows;
        Check.That(rows <= int.MaxValue, op, $"x has {rows} rows; at most {int.MaxValue} supported");
        int m = (int)rows;
        Check.LastDim(op, "y", y, n);
        Check.Count(op, "y", y, (long)m * n);
        if (bias is not null)
        {
            Check.DType(op, "bias", bias, DType.F32);
            Check.Shape(op, "bias", bias, n);
        }
        CheckNoOverlap(op, "y", y, "x", x);
        CheckNoOverlap(op, "y", y, "weight", weight);
        using var profile = OpProfile.Start(weight.DType switch { DType.BF16 => "Gemm.Linear bf16", DType.F16 => "Gemm.Linear f16", _ => op }, x.Device,
            2.0 * m * n * k, (m, k, n), static s => $"{s.m}x{s.k}x{s.n}");
        switch (Check.SameDevice(op, x, weight, bias, y))
        {
            case CpuDevice cpu: LinearCpu(cpu, x, weight, bias, y, m, n, k); break;
            case IlgpuDevice { Kind: DeviceKind.Cuda } when GemmMma.Enabled && GemmMma.Supports(weight): GemmMma.Linear(x, weight, bias, y); break; // opt-in tensor cores: PUREFLUX_CUDA_MMA=1
            case IlgpuDevice gpu: LinearIlgpu(gpu, x, weight, bias, y, m, n, k); break;
        }
    }

    /// <summary>c = a · b. a F32 [M, K], b F32 [K, N], c F32 [M, N].</summary>
    public static void MatMul(Tensor a, Tensor b, Tensor c)
    {
        const string op = "Gemm.MatMul";
        Check.DType(op, "a", a, DType.F32);
        Check.DType(op, "b", b, DType.F32);
        Check.DType(op, "c", c, DType.F32);
        Check.Rank(op, "a", a, 2);
        Check.Rank(op, "b", b, 2);
        int m = a.Shape[0], k = a.Shape[1], n = b.Shape[1];
        Check.That(b.Shape[0] == k, op, $"b ({b.Name ?? "unnamed"}) has shape {b.Shape}; expected [{k}, N] to match a {a.Shape}");
        Check.Shape(op, "c", c, m, n);
        CheckNoOverlap(op, "c", c, "a", a);
        CheckNoOverlap(op, "c", c, "b", b);
        using var profile = OpProfile.Start(op, a.Device, 2.0 * m * n * k, (m, k, n), static s => $"{s.m}x{s.k}x{s.n}");
        switch (Check.SameDevice(op, a, b, c))
        {
            case CpuDevice cpu: MatMulCpu(cpu, a, b, c, m, n, k); break;
            case IlgpuDevice gpu: MatMulIlgpu(gpu, a, b, c, m, n, k); break;
        }
    }

    /// <summary>Ladder step 0 of either backend (one thread per output on ILGPU, three loops on the CPU); same
    /// contract as <see cref="Linear"/> for 2-D F32 x. Kept for benchmarks and as a reference.</summary>
    public static void LinearNaive(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        const string op = "Gemm.LinearNaive";
        Check.Rank(op, "x", x, 2);
        Check.DType(op, "weight", weight, DType.F32, DType.F16, DType.BF16);
        Check.Rank(op, "weight", weight, 2);
        int m = x.Shape[0], n = weight.Shape[0], k = weight.Shape[1];
        Check.DType(op, "x", x, DType.F32);
        Check.Shape(op, "x", x, m, k);
        Check.DType(op, "y", y, DType.F32);
        Check.Shape(op, "y", y, m, n);
        if (bias is not null)
        {
            Check.DType(op, "bias", bias, DType.F32);
            Check.Shape(op, "bias", bias, n);
        }
        switch (Check.SameDevice(op, x, weight, bias, y))
        {
            case CpuDevice:
                Check.DType(op, "weight", weight, DType.F32);
                GemmLadder.Naive(x.AsSpan<float>(), weight.AsSpan<float>(), y.AsSpan<float>(), m, n, k);
                if (bias is not null)
                {
                    var b = bias.AsSpan<float>();
                    var dst = y.AsSpan<float>();
                    for (int i = 0; i < m; i++) TensorPrimitives.Add(dst.Slice(i * n, n), b, dst.Slice(i * n, n));
                }
                break;
            case IlgpuDevice gpu: LaunchNaive(gpu, x, weight, bias, y, m, n, k); break;
        }
    }

    /// <summary>The output is written while the inputs are still being read (packed block by block), so it must not share memory with them.</summary>
    internal static void CheckNoOverlap(string op, string outArg, Tensor output, string inArg, Tensor input) =>
        Check.That(output.Buffer != input.Buffer
                || output.ByteOffset >= input.ByteOffset + input.ByteCount
                || input.ByteOffset >= output.ByteOffset + output.ByteCount,
            op, $"{outArg} must not overlap {inArg} (in-place GEMM is not supported)");

    private static unsafe void LinearCpu(CpuDevice device, Tensor x, Tensor weight, Tensor? bias, Tensor y, int m, int n, int k)
    {
        if (device.GemmLevel == CpuGemmLevel.Naive)
        {
            NaiveCpu(x, weight, bias, y, m, n, k);
            return;
        }
        var b = new BOperand((void*)weight.Pointer, weight.DType, BLayout.NK, k);
        int threads = device.GemmLevel == CpuGemmLevel.Packed ? 1 : device.Threads;
        GemmCpu.Run((float*)x.Pointer, k, b, bias is null ? null : (float*)bias.Pointer, (float*)y.Pointer, n, m, n, k, threads);
    }

    /// <summary>Ladder step 0 for any weight type: three loops over rows, columns and K, the weight widened element by
    /// element (x [M, K] F32, weight [N, K] F32/F16/BF16, y [M, N]).</summary>
    private static unsafe void NaiveCpu(Tensor x, Tensor weight, Tensor? bias, Tensor y, int m, int n, int k)
    {
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pb = bias is null ? null : (float*)bias.Pointer;
        var type = weight.DType;
        nint pw = weight.Pointer;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float acc = 0f;
                long row = (long)j * k;
                for (int p = 0; p < k; p++)
                {
                    float w = type switch
                    {
                        DType.F32 => ((float*)pw)[row + p],
                        DType.BF16 => BitConverter.Int32BitsToSingle(((ushort*)pw)[row + p] << 16),
                        _ => (float)((Half*)pw)[row + p],
                    };
                    acc += px[(long)i * k + p] * w;
                }
                py[(long)i * n + j] = acc + (pb == null ? 0f : pb[j]);
            }
    }

    private static unsafe void MatMulCpu(CpuDevice device, Tensor a, Tensor b, Tensor c, int m, int n, int k)
    {
        var bop = new BOperand((void*)b.Pointer, DType.F32, BLayout.KN, n);
        GemmCpu.Run((float*)a.Pointer, k, bop, null, (float*)c.Pointer, n, m, n, k, device.Threads);
    }
}
