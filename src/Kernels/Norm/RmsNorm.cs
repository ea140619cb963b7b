namespace PureFlux.Kernels;

/// <summary>
/// RMSNorm over the last axis: y = x · rsqrt(mean(x²) + eps) · weight.
/// x, y: F32 [..., D] (same shape; y may alias x). weight: F32 or BF16 [D]. Per-head QK-norm is x [S, H, D] with
/// weight [D]. With <c>scale</c> (F32 [D], a view into a modulation vector) the row is then multiplied by (1 + scale):
/// y = ((x · rsqrt(mean(x²) + eps)) · weight) · (1 + scale), PyTorch's order for Z-Image's modulated norms; one
/// kernel, or two with <see cref="Device.FuseModulate"/> off (the experiment switch <c>fused-modulate=off</c>).
/// </summary>
public static partial class RmsNorm
{
    public static void Forward(Tensor x, Tensor weight, Tensor y, float eps, Tensor? scale = null)
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
        if (scale is not null)
        {
            Check.DType(op, "scale", scale, DType.F32);
            Check.Count(op, "scale", scale, d);
        }
        if (x.Count == 0) return;
        var device = scale is null ? Check.SameDevice(op, x, weight, y) : Check.SameDevice(op, x, weight, y, scale);
        if (scale is not null && !device.FuseModulate)
        {
            // fused-modulate=off: the norm, then y += scale · y (= (1 + scale) · y) as a second pass.
            Forward(x, weight, y, eps);
            GatedResidual.Forward(y, scale, y);
            return;
        }
        using var profile = OpProfile.Start(op, x);
        switch (device)
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, weight, y, eps, scale); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, weight, y, eps, scale); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor weight, Tensor y, float eps, Tensor? scale)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        // BF16 weights are widened once per call (D floats), so the row loop is the same for both dtypes.
        float[] w = weight.ToFloatArray();
        float[]? a = scale?.ToFloatArray();
        if (a is not null)
            for (int j = 0; j < d; j++) a[j] = 1f + a[j];
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, rows, d, (first, count) =>
        {
            fixed (float* pw = w, pa = a)
            {
                for (long r = first; r < first + count; r++)
                {
                    float* src = px + r * d;
                    float inv = 1f / MathF.Sqrt(RowMath.SumOfSquares(src, d) / d + eps);
                    RowMath.ScaleMultiply(src, inv, pw, py + r * d, d);
                    if (pa is not null)
                    {
                        var row = new Span<float>(py + r * d, d);
                        TensorPrimitives.Multiply(row, new ReadOnlySpan<float>(pa, d), row);
                    }
                }
            }
        });
    }
}
