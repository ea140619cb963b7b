namespace PureFlux.Kernels;

/// <summary>
/// Scalar-weighted combinations of F32 tensors with torch's float32 rounding: every product is rounded to float32
/// before the sum, and a division is a true division (never a multiply by the reciprocal), so the results match
/// PyTorch CPU's <c>a * x + b * z</c> and <c>x / d</c> bit for bit. The samplers' steps are built from these.
/// </summary>
public static partial class Elementwise
{
    /// <summary>
    /// y = a·x + b·z, rounded as float32(float32(a·x) + float32(b·z)) — no fused multiply-add.
    /// x, z, y: F32, same shape; y may alias x or z (the same element range), x may alias z.
    /// </summary>
    public static void Combine(float a, Tensor x, float b, Tensor z, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Combine);
        CheckF32(op, ("x", x), ("z", z), ("y", y));
        Check.SameShape(op, "x", x, "z", z);
        Check.SameShape(op, "x", x, "y", y);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, z, y))
        {
            case CpuDevice cpu: Chunked(cpu, x.Count, (s, n) => CombineCpu(a, Span(x, s, n), b, Span(z, s, n), Span(y, s, n))); break;
            case IlgpuDevice gpu: CombineIlgpu(gpu, a, x, b, z, y); break;
        }
    }

    /// <summary>y = x / d (true float32 division, like torch's tensor / scalar on the CPU). x, y: F32, same shape; y may alias x.</summary>
    public static void Divide(Tensor x, float d, Tensor y)
    {
        const string op = nameof(Elementwise) + "." + nameof(Divide);
        CheckF32(op, ("x", x), ("y", y));
        Check.SameShape(op, "x", x, "y", y);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: Chunked(cpu, x.Count, (s, n) => TensorPrimitives.Divide(Span(x, s, n), d, Span(y, s, n))); break;
            case IlgpuDevice gpu: DivideIlgpu(gpu, x, d, y); break;
        }
    }

    /// <summary>
    /// In blocks of a stack buffer: t = b·z, then y = a·x + t. TensorPrimitives.MultiplyAdd is the unfused (x·a)+t, and
    /// each block reads its x and z before writing y, so y may alias x or z.
    /// </summary>
    private static void CombineCpu(float a, Span<float> x, float b, Span<float> z, Span<float> y)
    {
        const int block = 1024;
        Span<float> t = stackalloc float[block];
        for (int s = 0; s < x.Length; s += block)
        {
            int n = Math.Min(block, x.Length - s);
            var tb = t[..n];
            TensorPrimitives.Multiply(z.Slice(s, n), b, tb);
            TensorPrimitives.MultiplyAdd(x.Slice(s, n), a, tb, y.Slice(s, n));
        }
    }
}
