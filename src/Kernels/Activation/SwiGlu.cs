using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>SwiGLU with the gate in the first half: y = silu(x[..., :H]) · x[..., H:].
/// x: F32 [..., 2H]; y: F32 [..., H] (same leading dims).</summary>
public static partial class SwiGlu
{
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
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y); break;
        }
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
