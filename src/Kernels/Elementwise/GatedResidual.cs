namespace PureFlux.Kernels;

/// <summary>Gated residual update of FLUX.2 blocks: x += gate · y, in place.
/// x, y: F32 [S, D] (any [..., D]); gate: F32 with D elements (often a view into a modulation vector).</summary>
public static partial class GatedResidual
{
    public static void Forward(Tensor x, Tensor gate, Tensor y)
    {
        const string op = nameof(GatedResidual);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "gate", gate, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1, op, $"x has shape {x.Shape}; expected [S, D]");
        Check.SameShape(op, "x", x, "y", y);
        int d = x.Shape.Last;
        Check.Count(op, "gate", gate, d);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, gate, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, gate, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, gate, y); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor gate, Tensor y)
    {
        int d = x.Shape.Last;
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pg = (float*)gate.Pointer;
        RowParallel.For(device, x.Count / d, d, (first, count) =>
        {
            var g = new ReadOnlySpan<float>(pg, d);
            for (long r = first; r < first + count; r++)
            {
                var row = new Span<float>(px + r * d, d);
                TensorPrimitives.FusedMultiplyAdd(new ReadOnlySpan<float>(py + r * d, d), g, row, row);
            }
        });
    }
}
