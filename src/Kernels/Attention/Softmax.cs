using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>
/// Softmax over the last axis: y[..., j] = exp(x[..., j] − max) / Σ exp(x[..., k] − max).
/// x, y: F32, same shape [..., N] (any leading dims); y may alias x. Rows of −∞ only give NaN (as PyTorch).
/// </summary>
public static partial class Softmax
{
    public static void Forward(Tensor x, Tensor y)
    {
        const string op = nameof(Softmax);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.SameShape(op, "x", x, "y", y);
        Check.That(x.Rank >= 1, op, $"x has shape {x.Shape}; expected rank ≥ 1");
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
    }

    private static void ForwardCpu(CpuDevice device, Tensor x, Tensor y)
    {
        int n = x.Shape.Last;
        long rows = x.Shape.Rows;
        nint px = x.Pointer, py = y.Pointer;
        if (device.Threads == 1 || x.Count < 1 << 15)
        {
            for (long r = 0; r < rows; r++) Row(px, py, r, n);
            return;
        }
        Parallel.For(0, device.Threads, device.ParallelOptions, t =>
        {
            var (start, len) = Partition.Range(rows, t, device.Threads);
            for (long r = start; r < start + len; r++) Row(px, py, r, n);
        });
    }

    private static unsafe void Row(nint px, nint py, long r, int n)
    {
        var src = new ReadOnlySpan<float>((float*)px + r * n, n);
        var dst = new Span<float>((float*)py + r * n, n);
        SoftmaxRow(src, dst);
    }

    /// <summary>dst = softmax(src) (dst may alias src).</summary>
    internal static void SoftmaxRow(ReadOnlySpan<float> src, Span<float> dst)
    {
        float max = TensorPrimitives.Max(src);
        TensorPrimitives.Subtract(src, max, dst);
        TensorPrimitives.Exp(dst, dst);
        float sum = TensorPrimitives.Sum(dst);
        TensorPrimitives.Multiply(dst, 1f / sum, dst);
    }
}
