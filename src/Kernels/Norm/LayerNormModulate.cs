namespace PureFlux.Kernels;

/// <summary>
/// FLUX.2 adaptive LayerNorm: y = (1 + scale) · LayerNorm(x) + shift, LayerNorm without affine parameters and with
/// the biased variance. x, y: F32 [S, D] (y may alias x); shift, scale: F32 with D elements ([D], [1, D], [1, 1, D]:
/// usually views into a modulation vector made with Tensor.Slice / Reshape). One kernel, or with
/// <see cref="Device.FuseModulate"/> off (the experiment switch <c>fused-modulate=off</c>) the norm and then
/// <see cref="Modulate"/> as a second pass.
/// </summary>
public static partial class LayerNormModulate
{
    public static void Forward(Tensor x, Tensor shift, Tensor scale, Tensor y, float eps)
    {
        const string op = nameof(LayerNormModulate);
        CheckCommon(op, x, y, eps);
        CheckModulation(op, x, shift, scale);
        if (x.Count == 0) return;
        var device = Check.SameDevice(op, x, shift, scale, y);
        if (!device.FuseModulate)
        {
            // fused-modulate=off: the norm, then the modulation as a second pass over the activations.
            LayerNorm(x, y, eps);
            Modulate(y, shift, scale, y);
            return;
        }
        using var profile = OpProfile.Start(op, x);
        switch (device)
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, shift, scale, y, eps); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, shift, scale, y, eps); break;
        }
    }

    /// <summary>The modulation alone, y = (1 + scale) · x + shift per row (the second kernel of the unfused path).
    /// x, y: F32 [..., D], y may alias x; shift, scale: F32 with D elements.</summary>
    public static void Modulate(Tensor x, Tensor shift, Tensor scale, Tensor y)
    {
        const string op = nameof(LayerNormModulate) + "." + nameof(Modulate);
        CheckCommon(op, x, y, 0f);
        CheckModulation(op, x, shift, scale);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, shift, scale, y))
        {
            case CpuDevice cpu: ModulateCpu(cpu, x, shift, scale, y); break;
            case IlgpuDevice gpu: ModulateIlgpu(gpu, x, shift, scale, y); break;
        }
    }

    private static unsafe void ModulateCpu(CpuDevice device, Tensor x, Tensor shift, Tensor scale, Tensor y)
    {
        int d = x.Shape.Last;
        var (onePlusScale, shiftValues) = HostModulation(shift, scale);
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, x.Count / d, d, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
                TensorPrimitives.FusedMultiplyAdd(new ReadOnlySpan<float>(px + r * d, d), onePlusScale, shiftValues, new Span<float>(py + r * d, d));
        });
    }

    /// <summary>Plain LayerNorm over the last axis (no affine, biased variance): y = (x − mean) / sqrt(var + eps).
    /// x, y: F32 [..., D], y may alias x.</summary>
    public static void LayerNorm(Tensor x, Tensor y, float eps)
    {
        const string op = nameof(LayerNormModulate) + "." + nameof(LayerNorm);
        CheckCommon(op, x, y, eps);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, null, null, y, eps); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, null, null, y, eps); break;
        }
    }

    /// <summary>shift and scale: F32 with D elements, D the last dimension of x.</summary>
    private static void CheckModulation(string op, Tensor x, Tensor shift, Tensor scale)
    {
        int d = x.Shape.Last;
        Check.DType(op, "shift", shift, DType.F32);
        Check.DType(op, "scale", scale, DType.F32);
        Check.Count(op, "shift", shift, d);
        Check.Count(op, "scale", scale, d);
    }

    /// <summary>(1 + scale, shift) as host arrays for the CPU row loops.</summary>
    private static (float[] OnePlusScale, float[] Shift) HostModulation(Tensor shift, Tensor scale)
    {
        var onePlusScale = scale.ToArray<float>();
        TensorPrimitives.Add(onePlusScale, 1f, onePlusScale);
        return (onePlusScale, shift.ToArray<float>());
    }

    private static void CheckCommon(string op, Tensor x, Tensor y, float eps)
    {
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1, op, $"x has shape {x.Shape}; expected [..., D]");
        Check.SameShape(op, "x", x, "y", y);
        Check.That(eps >= 0 && float.IsFinite(eps), op, $"eps is {eps}; expected a finite value ≥ 0");
    }

    /// <summary>
    /// Per row: mean (the one read of x from memory), centred sum of squares (x is in L1 now; two-pass variance has
    /// no cancellation, unlike E[x²] − mean²), then one fused write y = (x − mean)·rstd·(1+scale) + shift.
    /// </summary>
    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor? shift, Tensor? scale, Tensor y, float eps)
    {
        int d = x.Shape.Last;
        long rows = x.Count / d;
        float[]? onePlusScale = null, shiftValues = null;
        if (scale is not null && shift is not null) (onePlusScale, shiftValues) = HostModulation(shift, scale);
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, rows, d, (first, count) =>
        {
            fixed (float* pa = onePlusScale, pb = shiftValues)
            {
                for (long r = first; r < first + count; r++)
                {
                    float* src = px + r * d;
                    float mean = RowMath.Sum(src, d) / d;
                    float rstd = 1f / MathF.Sqrt(RowMath.CentredSumOfSquares(src, d, mean) / d + eps);
                    RowMath.NormalizeModulate(src, mean, rstd, pa, pb, py + r * d, d);
                }
            }
        });
    }
}
