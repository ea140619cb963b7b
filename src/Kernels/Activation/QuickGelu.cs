namespace PureFlux.Kernels;

/// <summary>
/// QuickGELU (CLIP's activation): y = x · sigmoid(1.702 x), in PyTorch's order (the product 1.702·x rounded first).
/// x, y: F32, same element count (any shape); y may alias x.
/// </summary>
public static partial class QuickGelu
{
    internal const float Alpha = 1.702f;
    private const int Chunk = 1024;

    public static void Forward(Tensor x, Tensor y)
    {
        const string op = nameof(QuickGelu);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.Count(op, "y", y, x.Count);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor y)
    {
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        long total = x.Count;
        long chunks = (total + Chunk - 1) / Chunk;
        RowParallel.For(device, chunks, Chunk, (first, count) =>
        {
            Span<float> s = stackalloc float[Chunk];
            long end = Math.Min(total, (first + count) * Chunk);
            for (long start = first * Chunk; start < end; start += Chunk)
            {
                int n = (int)Math.Min(Chunk, end - start);
                var src = new ReadOnlySpan<float>(px + start, n);
                // s = sigmoid(1.702·x) goes through the stack buffer, so y may alias x.
                TensorPrimitives.Multiply(src, Alpha, s[..n]);
                TensorPrimitives.Sigmoid(s[..n], s[..n]);
                TensorPrimitives.Multiply(src, s[..n], new Span<float>(py + start, n));
            }
        });
    }
}
