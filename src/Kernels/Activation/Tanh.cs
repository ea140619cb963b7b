namespace PureFlux.Kernels;

/// <summary>y = tanh(x). x, y: F32, same element count (any shape); y may alias x. Used on modulation gates
/// (Z-Image's tanh-gated residuals), so it is sized for short vectors: one thread, no chunking.</summary>
public static partial class Tanh
{
    public static void Forward(Tensor x, Tensor y)
    {
        const string op = nameof(Tanh);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.Count(op, "y", y, x.Count);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice: TensorPrimitives.Tanh(x.AsSpan<float>(), y.AsSpan<float>()); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
    }
}
