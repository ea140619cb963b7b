namespace PureFlux.Kernels;

/// <summary>SwiGLU with the gate in the first half: y = silu(x[..., :H]) · x[..., H:].
/// x: F32 [..., 2H]; y: F32 [..., H] (same leading dims).</summary>
public static partial class SwiGlu
{
    private const int Chunk = 1024;

    public static void Forward(Tensor x, Tensor y)
    {
        const string op = nameof(SwiGlu);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1 && x.Shape.Last % 2 == 0, op, $"x has shape {x.Shape}; expected [..., 2H] (even last dimension)");
        var expected = x.Shape.ToArray();
        expected[^1] /= 2;
        Check.Shape(op, "y", y, expected);
        if (y.Count == 0) return;
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor y)
    {
        int h = y.Shape.Last;
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, y.Count / h, 3L * h, (first, count) =>
        {
            Span<float> tmp = stackalloc float[Math.Min(Chunk, h)];
            for (long r = first; r < first + count; r++)
            {
                float* gateRow = px + r * 2 * h, upRow = gateRow + h, outRow = py + r * h;
                for (int j = 0; j < h; j += Chunk)
                {
                    int n = Math.Min(Chunk, h - j);
                    var gate = new ReadOnlySpan<float>(gateRow + j, n);
                    var t = tmp[..n];
                    TensorPrimitives.Sigmoid(gate, t);
                    TensorPrimitives.Multiply(gate, t, t);
                    TensorPrimitives.Multiply(t, new ReadOnlySpan<float>(upRow + j, n), new Span<float>(outRow + j, n));
                }
            }
        });
    }
}
