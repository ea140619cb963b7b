namespace PureFlux.Kernels;

/// <summary>
/// GroupNorm (nn.GroupNorm), batch 1: x [C, H, W] (or [1, C, H, W]) F32, weight [C], bias [C] F32, y like x
/// (may alias x). Channels split into <c>groups</c> consecutive groups; each is normalised by its mean and
/// biased variance over (C/groups, H, W): y = (x − mean)/sqrt(var + eps)·weight[c] + bias[c], then, when
/// <c>silu</c> is set, y = silu(y) (the VAE always follows GroupNorm by SiLU; fusing saves a pass over memory).
/// <para>Statistics are two-pass per channel (sum, then squared deviations from the channel mean, in double
/// on the CPU) and combined per group with Chan et al.'s parallel formula, so large-mean activations lose
/// no precision to E[x²] − E[x]².</para>
/// </summary>
public static partial class GroupNorm
{
    public static void Forward(Tensor x, Tensor weight, Tensor bias, Tensor y, int groups, float eps, bool silu = false)
    {
        const string op = nameof(GroupNorm);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "weight", weight, DType.F32);
        Check.DType(op, "bias", bias, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        ImageShape.Expect(op, "y", y, c, h, w);
        ImageShape.Vector(op, "weight", weight, c);
        ImageShape.Vector(op, "bias", bias, c);
        Check.That(groups >= 1 && c % groups == 0, op, $"groups is {groups}; expected a divisor of the {c} channels of x {x.Shape}");
        Check.That(eps >= 0f, op, $"eps is {eps}; expected >= 0");
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, weight, bias, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, weight, bias, y, c, h * w, groups, eps, silu); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, weight, bias, y, c, h * w, groups, eps, silu); break;
        }
    }

    private static void ForwardCpu(CpuDevice device, Tensor x, Tensor weight, Tensor bias, Tensor y, int c, int hw, int groups, float eps, bool silu)
    {
        var channelMean = new double[c];
        var channelM2 = new double[c];
        bool parallel = device.Threads > 1 && (long)c * hw >= 1 << 15;

        void Stats(int ch)
        {
            var src = x.AsSpan<float>().Slice(ch * hw, hw);
            channelMean[ch] = ChunkedSum(src) / hw;
            channelM2[ch] = SquaredDeviations(src, (float)channelMean[ch]);
        }
        if (parallel) Parallel.For(0, c, device.ParallelOptions, Stats);
        else for (int ch = 0; ch < c; ch++) Stats(ch);

        int cpg = c / groups;
        var scale = new float[c];
        var shift = new float[c];
        var wv = weight.AsSpan<float>();
        var bv = bias.AsSpan<float>();
        for (int g = 0; g < groups; g++)
        {
            double mean = 0;
            for (int j = 0; j < cpg; j++) mean += channelMean[g * cpg + j];
            mean /= cpg;
            // Chan et al.: M2 of the union = Σ M2_c + Σ n_c (mean_c − mean)².
            double m2 = 0;
            for (int j = 0; j < cpg; j++)
            {
                double d = channelMean[g * cpg + j] - mean;
                m2 += channelM2[g * cpg + j] + (double)hw * d * d;
            }
            double rstd = 1.0 / Math.Sqrt(m2 / ((double)cpg * hw) + eps);
            for (int j = 0; j < cpg; j++)
            {
                int ch = g * cpg + j;
                scale[ch] = (float)(wv[ch] * rstd);
                shift[ch] = (float)(bv[ch] - mean * wv[ch] * rstd);
            }
        }

        void Apply(int ch)
        {
            var src = x.AsSpan<float>().Slice(ch * hw, hw);
            var dst = y.AsSpan<float>().Slice(ch * hw, hw);
            // Chunks that stay in L1 between the affine step and the SiLU.
            const int chunk = 2048;
            for (int i = 0; i < hw; i += chunk)
            {
                int n = Math.Min(chunk, hw - i);
                var d = dst.Slice(i, n);
                TensorPrimitives.Multiply(src.Slice(i, n), scale[ch], d);
                TensorPrimitives.Add(d, shift[ch], d);
                if (silu) Silu.SiluSpan(d, d);
            }
        }
        if (parallel) Parallel.For(0, c, device.ParallelOptions, Apply);
        else for (int ch = 0; ch < c; ch++) Apply(ch);
    }

    /// <summary>Σ src in double, from float sums of short chunks (vectorised, and accurate for long spans).</summary>
    private static double ChunkedSum(ReadOnlySpan<float> src)
    {
        double sum = 0;
        for (int i = 0; i < src.Length; i += 1024)
            sum += TensorPrimitives.Sum(src.Slice(i, Math.Min(1024, src.Length - i)));
        return sum;
    }

    /// <summary>Σ (src − mean)² in double, by chunks.</summary>
    private static double SquaredDeviations(ReadOnlySpan<float> src, float mean)
    {
        Span<float> tmp = stackalloc float[1024];
        double sum = 0;
        for (int i = 0; i < src.Length; i += tmp.Length)
        {
            int n = Math.Min(tmp.Length, src.Length - i);
            TensorPrimitives.Subtract(src.Slice(i, n), mean, tmp[..n]);
            sum += TensorPrimitives.SumOfSquares(tmp[..n]);
        }
        return sum;
    }
}
