using System.Diagnostics;

namespace PureFlux.Bench;

/// <summary>
/// Tensor-core GEMM (<see cref="GemmMma"/>) against the SIMT ILGPU GEMM (<see cref="Gemm.Linear"/>) on a CUDA
/// device, at FLUX.2 klein 4B shapes: M = 512, 1536, 4608 tokens × (K, N) = (3072, 3072) attention projections,
/// (3072, 27648) fused single-block input projection, (12288, 3072) MLP down projection. BF16 weights, F32 x and y.
/// Prints TFLOP/s (2·M·N·K / time per call, median of timed runs after a warm-up) and the largest difference of
/// the two results relative to the SIMT result's magnitude (the tensor-core path rounds x to BF16, so ≈ 1e-3 is
/// expected; ≫ 1e-2 means a bug). <c>dotnet run -c Release --project bench -- cuda</c>;
/// bench/torch_baseline.py times PyTorch on the same shapes. Then attention (24 heads × 128, S = M): the SIMT
/// <see cref="Attention.Forward"/> against <see cref="FlashAttentionMma"/>, TFLOP/s counting 4·H·S²·D.
/// </summary>
public static class CudaBench
{
    public static readonly int[] Tokens = [512, 1536, 4608];
    public static readonly (int K, int N)[] Projections = [(3072, 3072), (3072, 27648), (12288, 3072)];

    public static int Run(TextWriter output)
    {
        if (!Devices.IsAvailable(DeviceKind.Cuda, out var reason))
        {
            output.WriteLine(reason); // "no CUDA device (why)"
            return 0;
        }
        using var device = (IlgpuDevice)Devices.Open("cuda");
        output.WriteLine($"device: {device.Name}; PUREFLUX_CUDA_MMA={(GemmMma.Enabled ? "1" : "unset")}");
        if (GemmMma.Enabled)
            output.WriteLine("note: Gemm.Linear dispatches to GemmMma when PUREFLUX_CUDA_MMA=1, so the 'simt' column is the mma kernel too; unset it to compare");
        output.WriteLine($"{"M",6} {"K",6} {"N",6} {"simt TFLOP/s",13} {"mma TFLOP/s",12} {"speedup",8} {"max |diff|/max|y|",18}");
        foreach (var (k, n) in Projections)
        {
            var rng = new Random(k + n);
            var wBits = new ushort[(long)n * k];
            for (long i = 0; i < wBits.LongLength; i++) wBits[i] = Bf16.FromFloat((float)(rng.NextDouble() * 0.04 - 0.02));
            using var w = Tensor.FromSpan<ushort>(device, wBits, new Shape(n, k), DType.BF16);
            foreach (int m in Tokens)
            {
                var xs = new float[(long)m * k];
                for (long i = 0; i < xs.LongLength; i++) xs[i] = (float)(rng.NextDouble() * 2 - 1);
                using var x = Tensor.FromArray(device, xs, m, k);
                using var ySimt = Tensor.Empty(device, DType.F32, m, n);
                using var yMma = Tensor.Empty(device, DType.F32, m, n);
                double flops = 2.0 * m * n * k;
                double simt = Time(device, () => Gemm.Linear(x, w, null, ySimt));
                double mma = Time(device, () => GemmMma.Linear(x, w, null, yMma));
                float[] a = ySimt.ToFloatArray(), b = yMma.ToFloatArray();
                double maxDiff = 0, maxAbs = 0;
                for (int i = 0; i < a.Length; i++)
                {
                    maxDiff = Math.Max(maxDiff, Math.Abs(a[i] - b[i]));
                    maxAbs = Math.Max(maxAbs, Math.Abs(a[i]));
                }
                output.WriteLine($"{m,6} {k,6} {n,6} {flops / simt / 1e12,13:F1} {flops / mma / 1e12,12:F1} {simt / mma,8:F2} {maxDiff / maxAbs,18:E2}");
            }
        }
        output.WriteLine();
        output.WriteLine($"attention, non-causal, {AttentionHeads} heads × {FlashAttentionMma.HeadDim}: SIMT Attention.Forward vs FlashAttentionMma");
        output.WriteLine($"{"S",6} {"simt TFLOP/s",13} {"mma TFLOP/s",12} {"speedup",8} {"max |diff|/max|o|",18}");
        foreach (int s in Tokens)
        {
            var rng = new Random(s);
            float[] Rand(long n) { var a = new float[n]; for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }
            int d = FlashAttentionMma.HeadDim;
            using var q = Tensor.FromArray(device, Rand((long)s * AttentionHeads * d), s, AttentionHeads, d);
            using var k = Tensor.FromArray(device, Rand((long)s * AttentionHeads * d), s, AttentionHeads, d);
            using var v = Tensor.FromArray(device, Rand((long)s * AttentionHeads * d), s, AttentionHeads, d);
            using var oSimt = Tensor.Empty(device, DType.F32, s, AttentionHeads, d);
            using var oMma = Tensor.Empty(device, DType.F32, s, AttentionHeads, d);
            double flops = 4.0 * AttentionHeads * s * (double)s * d;
            double simt = Time(device, () => Attention.Forward(q, k, v, oSimt));
            double mma = Time(device, () => FlashAttentionMma.Forward(q, k, v, oMma));
            float[] a = oSimt.ToFloatArray(), b = oMma.ToFloatArray();
            double maxDiff = 0, maxAbs = 0;
            for (int i = 0; i < a.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(a[i] - b[i]));
                maxAbs = Math.Max(maxAbs, Math.Abs(a[i]));
            }
            output.WriteLine($"{s,6} {flops / simt / 1e12,13:F2} {flops / mma / 1e12,12:F2} {simt / mma,8:F2} {maxDiff / maxAbs,18:E2}");
        }
        return 0;
    }

    /// <summary>FLUX.2 klein 4B: 24 heads of 128.</summary>
    public const int AttentionHeads = 24;

    /// <summary>Median seconds per call: one warm-up call (includes the kernel's JIT), then calls for ≥ 0.3 s (3 to 50).</summary>
    public static double Time(Device device, Action call)
    {
        call();
        device.Synchronize();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < 3 || (times.Count < 50 && total.Elapsed.TotalSeconds < 0.3))
        {
            var sw = Stopwatch.StartNew();
            call();
            device.Synchronize();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}
