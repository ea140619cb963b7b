namespace PureFlux.Kernels;

/// <summary>
/// LayerNorm over the last axis with affine parameters (PyTorch nn.LayerNorm):
/// y = (x − mean) / sqrt(var + eps) · weight + bias, biased variance. x, y: F32 [..., D] (y may alias x);
/// weight, bias: F32 [D]. (FLUX's modulated LayerNorm without affine parameters is <see cref="LayerNormModulate"/>.)
/// </summary>
public static partial class LayerNorm
{
    public static void Forward(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        const string op = nameof(LayerNorm);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "weight", weight, DType.F32);
        Check.DType(op, "bias", bias, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1, op, $"x has shape {x.Shape}; expected [..., D]");
        int d = x.Shape.Last;
        Check.Shape(op, "weight", weight, d);
        Check.Shape(op, "bias", bias, d);
        Check.SameShape(op, "x", x, "y", y);
        Check.That(eps >= 0 && float.IsFinite(eps), op, $"eps is {eps}; expected a finite value ≥ 0");
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, weight, bias, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, weight, bias, y, eps); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, weight, bias, y, eps); break;
        }
    }

    /// <summary>Per row: mean, centred sum of squares (two passes: no E[x²] − mean² cancellation), then one fused
    /// write y = (x − mean)·rstd·weight + bias.</summary>
    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pw = (float*)weight.Pointer, pb = (float*)bias.Pointer;
        RowParallel.For(device, rows, d, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
            {
                float* src = px + r * d;
                float mean = RowMath.Sum(src, d) / d;
                float rstd = 1f / MathF.Sqrt(RowMath.CentredSumOfSquares(src, d, mean) / d + eps);
                RowMath.NormalizeModulate(src, mean, rstd, pw, pb, py + r * d, d);
            }
        });
    }
}
