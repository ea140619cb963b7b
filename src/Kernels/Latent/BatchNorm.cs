namespace PureFlux.Kernels;

/// <summary>
/// BatchNorm with running statistics and no affine (klein's latent normalisation), batch 1:
/// x [C, h, w] (or [1, C, h, w]) F32, mean [C], var [C] F32 (bn.running_mean / running_var), y like x (may alias x).
/// <see cref="Normalize"/>: y = (x − mean[c]) / sqrt(var[c] + eps) (encode side);
/// <see cref="Denormalize"/>: y = x · sqrt(var[c] + eps) + mean[c] (before the VAE decoder). eps is 1e-4 in the VAE.
/// </summary>
public static partial class BatchNorm
{
    public static void Normalize(Tensor x, Tensor mean, Tensor variance, Tensor y, float eps) =>
        Run("BatchNorm.Normalize", x, mean, variance, y, eps, denormalize: false);

    public static void Denormalize(Tensor x, Tensor mean, Tensor variance, Tensor y, float eps) =>
        Run("BatchNorm.Denormalize", x, mean, variance, y, eps, denormalize: true);

    private static void Run(string op, Tensor x, Tensor mean, Tensor variance, Tensor y, float eps, bool denormalize)
    {
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "mean", mean, DType.F32);
        Check.DType(op, "var", variance, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        ImageShape.Expect(op, "y", y, c, h, w);
        ImageShape.Vector(op, "mean", mean, c);
        ImageShape.Vector(op, "var", variance, c);
        Check.That(eps >= 0f, op, $"eps is {eps}; expected >= 0");
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, mean, variance, y))
        {
            case CpuDevice cpu: RunCpu(cpu, x, mean, variance, y, eps, denormalize, c, h * w); break;
            case IlgpuDevice gpu: RunIlgpu(gpu, x, mean, variance, y, eps, denormalize, h * w); break;
        }
    }

    private static void RunCpu(CpuDevice device, Tensor x, Tensor mean, Tensor variance, Tensor y, float eps, bool denormalize, int c, int hw)
    {
        void Channel(int ch)
        {
            var src = x.AsSpan<float>().Slice(ch * hw, hw);
            var dst = y.AsSpan<float>().Slice(ch * hw, hw);
            float m = mean.AsSpan<float>()[ch];
            // Same operation order as PyTorch (sqrt in fp32, then one subtract/divide or multiply/add).
            float std = MathF.Sqrt(variance.AsSpan<float>()[ch] + eps);
            if (denormalize)
            {
                TensorPrimitives.Multiply(src, std, dst);
                TensorPrimitives.Add(dst, m, dst);
            }
            else
            {
                TensorPrimitives.Subtract(src, m, dst);
                TensorPrimitives.Divide(dst, std, dst);
            }
        }
        if (device.Threads == 1 || (long)c * hw < 1 << 15)
            for (int ch = 0; ch < c; ch++) Channel(ch);
        else
            Parallel.For(0, c, device.ParallelOptions, Channel);
    }
}
