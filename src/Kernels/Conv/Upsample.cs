using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>
/// Nearest-neighbour 2× upsampling (F.interpolate(scale_factor=2, mode="nearest")), batch 1:
/// x [C, H, W] (or [1, C, H, W]) F32 → y [C, 2H, 2W] (or [1, C, 2H, 2W]); y[c][2i + dy][2j + dx] = x[c][i][j].
/// </summary>
public static partial class Upsample
{
    public static void Nearest2x(Tensor x, Tensor y)
    {
        const string op = "Upsample.Nearest2x";
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        var (c, h, w) = ImageShape.Chw(op, "x", x);
        ImageShape.Expect(op, "y", y, c, 2 * h, 2 * w);
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: Nearest2xCpu(cpu, x, y, c, h, w); break;
            case IlgpuDevice gpu: Nearest2xIlgpu(gpu, x, y, c, h, w); break;
        }
    }

    private static unsafe void Nearest2xCpu(CpuDevice device, Tensor x, Tensor y, int c, int h, int w)
    {
        float* src = (float*)x.Pointer;
        float* dst = (float*)y.Pointer;
        int rows = c * h;
        void Row(int r) // input row r = (channel, i) → output rows 2r and 2r + 1 (same channel: 2H rows per channel)
        {
            float* s = src + (long)r * w;
            float* d0 = dst + (long)r * 4 * w;
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                // 8 inputs → 16 outputs: each lane j of the low half goes to lanes 2j and 2j + 1.
                var pairs = Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
                for (; j + 8 <= w; j += 8)
                {
                    var v = Vector512.Create(Vector256.Load(s + j), Vector256<float>.Zero);
                    Vector512.Shuffle(v, pairs).Store(d0 + 2 * j);
                }
            }
            for (; j < w; j++)
            {
                float v = s[j];
                d0[2 * j] = v;
                d0[2 * j + 1] = v;
            }
            new ReadOnlySpan<float>(d0, 2 * w).CopyTo(new Span<float>(d0 + 2 * w, 2 * w));
        }
        if (device.Threads == 1 || (long)rows * w < 1 << 15)
            for (int r = 0; r < rows; r++) Row(r);
        else
            Parallel.For(0, rows, device.ParallelOptions, Row);
    }
}
