namespace PureFlux.Kernels;

/// <summary>
/// RMSNorm over the last axis: y = x · rsqrt(mean(x²) + eps) · weight.
/// x, y: F32 [..., D] (same shape; y may alias x). weight: F32 or BF16 [D]. Per-head QK-norm is x [S, H, D] with
/// weight [D].
/// </summary>
public static partial class RmsNorm
{
    public static void Forward(Tensor x, Tensor weight, Tensor y, float eps)
    {
        const string op = nameof(RmsNorm);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "weight", weight, DType.F32, DType.BF16);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1, op, $"x has shape {x.Shape}; expected [..., D]");
        int d = x.Shape.Last;
        Check.Shape(op, "weight", weight, d);
        Check.SameShape(op, "x", x, "y", y);
        Check.That(eps >= 0 && float.IsFinite(eps), op, $"eps is {eps}; expected a finite value ≥ 0");
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, weight, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, weight, y, eps); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, weight, y, eps); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor weight, Tensor y, float eps)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        // BF16 weights are widened once per call (D floats), so the row loop is the same for both dtypes.
        float[] w = weight.ToFloatArray();
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, rows, d, (first, count) =>
        {
            fixed (float* pw = w)
            {
                for (long r = first; r < first + count; r++)
                {
                    float* src = px + r * d;
                    float inv = 1f / MathF.Sqrt(RowMath.SumOfSquares(src, d) / d + eps);
                    RowMath.ScaleMultiply(src, inv, pw, py + r * d, d);
                }
            }
        });
    }
}
