using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>
/// SwiGLU, y = silu(gate) · up, from one projection holding both halves (FLUX.2) or from two (Z-Image's w1 / w3, Qwen3's
/// gate / up). One kernel; with <see cref="Device.FuseSwiGlu"/> off (the experiment switch <c>fused-swiglu=off</c>) SiLU
/// and the product run as two, as an unfused PyTorch graph does.
/// </summary>
public static partial class SwiGlu
{
    /// <summary>Gate in the first half: y = silu(x[..., :H]) · x[..., H:]. x: F32 [..., 2H]; y: F32 [..., H] (same
    /// leading dims). Unfused, the halves are first copied out as contiguous rows (PyTorch's chunk makes strided views;
    /// our element-wise kernels take contiguous rows), then SiLU, then the product.</summary>
    public static void Forward(Tensor x, Tensor y)
    {
        const string op = nameof(SwiGlu);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.That(x.Rank >= 1 && x.Shape.Last % 2 == 0, op, $"x has shape {x.Shape}; expected [..., 2H] (even last dimension)");
        var expected = x.Shape.ToArray();
        expected[^1] /= 2;
        Check.Shape(op, "y", y, expected);
        if (y.Count == 0) return;
        var device = Check.SameDevice(op, x, y);
        if (!device.FuseSwiGlu)
        {
            int h = y.Shape.Last;
            int rows = checked((int)(y.Count / h));
            var x2 = x.Reshape(rows, 2 * h);
            var y2 = y.Reshape(rows, h);
            using var up = Tensor.Empty(device, DType.F32, new Shape(rows, h));
            Elementwise.CopyColumns(x2, 0, y2);
            Elementwise.CopyColumns(x2, h, up);
            Silu.Forward(y2, y2);
            Elementwise.Multiply(y2, up, y2);
            return;
        }
        using var profile = OpProfile.Start(op, x);
        switch (device)
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
    }

    /// <summary>y = silu(gate) · up. gate, up, y: F32, same shape; y may alias gate (not up: unfused, SiLU writes y
    /// before the product reads up).</summary>
    public static void Forward(Tensor gate, Tensor up, Tensor y)
    {
        const string op = nameof(SwiGlu);
        Check.DType(op, "gate", gate, DType.F32);
        Check.DType(op, "up", up, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.SameShape(op, "gate", gate, "up", up);
        Check.SameShape(op, "gate", gate, "y", y);
        Check.That(!(ReferenceEquals(y.Buffer, up.Buffer) && y.ByteOffset == up.ByteOffset), op, "y aliases up; it may alias gate only");
        if (y.Count == 0) return;
        var device = Check.SameDevice(op, gate, up, y);
        if (!device.FuseSwiGlu)
        {
            Silu.Forward(gate, y);
            Elementwise.Multiply(y, up, y);
            return;
        }
        using var profile = OpProfile.Start(op, gate);
        switch (device)
        {
            case CpuDevice cpu: ForwardCpu(cpu, gate, up, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, gate, up, y); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor gate, Tensor up, Tensor y)
    {
        int h = y.Shape.Last;
        float* pg = (float*)gate.Pointer, pu = (float*)up.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, y.Count / h, 3L * h, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
                Row(pg + r * h, pu + r * h, py + r * h, h);
        });
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor y)
    {
        int h = y.Shape.Last;
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        RowParallel.For(device, y.Count / h, 3L * h, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
                Row(px + r * 2 * h, px + r * 2 * h + h, py + r * h, h);
        });
    }

    /// <summary>out = gate / (1 + e^(−gate)) · up, fused in one pass (Vector512.Exp; scalar tail).</summary>
    private static unsafe void Row(float* gate, float* up, float* dst, int h)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var one = Vector512<float>.One;
            for (; j + 16 <= h; j += 16)
            {
                var g = Vector512.Load(gate + j);
                (g * Vector512.Load(up + j) / (one + Vector512.Exp(-g))).Store(dst + j);
            }
        }
        for (; j < h; j++)
        {
            float g = gate[j];
            dst[j] = g * up[j] / (1f + MathF.Exp(-g));
        }
    }
}
