
namespace PureFlux.Kernels;

/// <summary>SiLU: y = x · sigmoid(x). x, y: F32, same shape (any); y may alias x.</summary>
public static partial class Silu
{
    public static void Forward(Tensor x, Tensor y)
    {
        const string op = nameof(Silu);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.Count(op, "y", y, x.Count);
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
    }

    private static void ForwardCpu(CpuDevice device, Tensor x, Tensor y)
    {
        var src = x.AsSpan<float>();
        var dst = y.AsSpan<float>();
        // Below ~64K elements threading costs more than it saves.
        if (src.Length < 1 << 16 || device.Threads == 1)
        {
            SiluSpan(src, dst);
            return;
        }
        Parallel.For(0, device.Threads, device.ParallelOptions, t =>
        {
            var (start, len) = Partition.Range(x.Count, t, device.Threads, 16);
            SiluSpan(x.AsSpan<float>().Slice((int)start, (int)len), y.AsSpan<float>().Slice((int)start, (int)len));
        });
    }

    /// <summary>dst = src · sigmoid(src); dst may alias src, so sigmoid goes to a stack chunk first.</summary>
    internal static void SiluSpan(ReadOnlySpan<float> src, Span<float> dst)
    {
        Span<float> tmp = stackalloc float[1024];
        for (int i = 0; i < src.Length; i += tmp.Length)
        {
            int n = Math.Min(tmp.Length, src.Length - i);
            var s = src.Slice(i, n);
            TensorPrimitives.Sigmoid(s, tmp[..n]);
            TensorPrimitives.Multiply(s, tmp[..n], dst.Slice(i, n));
        }
    }
}
