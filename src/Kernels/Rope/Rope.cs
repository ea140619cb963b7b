using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>
/// Rotary position embedding applied with precomputed tables (see <see cref="RopeTables"/>).
/// x, y: F32 [S, H, D] or [B, S, H, D] (y may alias x; the tables are shared by the batch); cos, sin: F32 [S, D] (any shape with S·D elements).
/// </summary>
public static partial class Rope
{
    /// <summary>FLUX.2 (interleaved pairs): y[2j] = x[2j]·cos[2j] − x[2j+1]·sin[2j],
    /// y[2j+1] = x[2j+1]·cos[2j+1] + x[2j]·sin[2j+1].</summary>
    public static void ApplyInterleaved(Tensor x, Tensor cos, Tensor sin, Tensor y) =>
        Apply(nameof(Rope) + "." + nameof(ApplyInterleaved), x, cos, sin, y, interleaved: true);

    /// <summary>Qwen3 (rotate half): y = x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x[D/2:], x[:D/2]).</summary>
    public static void ApplyRotateHalf(Tensor x, Tensor cos, Tensor sin, Tensor y) =>
        Apply(nameof(Rope) + "." + nameof(ApplyRotateHalf), x, cos, sin, y, interleaved: false);

    private static void Apply(string op, Tensor x, Tensor cos, Tensor sin, Tensor y, bool interleaved)
    {
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "cos", cos, DType.F32);
        Check.DType(op, "sin", sin, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        if (x.Rank == 4)
        {
            // [B, S, H, D]: every sample has the same positions, so the one [S, D] table serves each batch row.
            Check.SameShape(op, "x", x, "y", y);
            for (int b = 0; b < x.Shape[0]; b++) Apply(op, x.Slice(b, 1).Reshape(x.Shape[1], x.Shape[2], x.Shape[3]), cos, sin,
                y.Slice(b, 1).Reshape(y.Shape[1], y.Shape[2], y.Shape[3]), interleaved);
            return;
        }
        Check.Rank(op, "x", x, 3);
        int s = x.Shape[0], h = x.Shape[1], d = x.Shape[2];
        Check.That(d % 2 == 0, op, $"x has shape {x.Shape}; expected an even head dim D");
        Check.SameShape(op, "x", x, "y", y);
        Check.Count(op, "cos", cos, (long)s * d);
        Check.Count(op, "sin", sin, (long)s * d);
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, cos, sin, y))
        {
            case CpuDevice cpu: ApplyCpu(cpu, x, cos, sin, y, h, d, interleaved); break;
            case IlgpuDevice gpu: ApplyIlgpu(gpu, x, cos, sin, y, h, d, interleaved); break;
        }
    }

    private static unsafe void ApplyCpu(CpuDevice device, Tensor x, Tensor cos, Tensor sin, Tensor y, int h, int d, bool interleaved)
    {
        float* px = (float*)x.Pointer, py = (float*)y.Pointer, pc = (float*)cos.Pointer, ps = (float*)sin.Pointer;
        long rows = x.Count / d; // one row per (position, head)
        RowParallel.For(device, rows, d, (first, count) =>
        {
            for (long r = first; r < first + count; r++)
            {
                long pos = r / h;
                if (interleaved) InterleavedRow(px + r * d, pc + pos * d, ps + pos * d, py + r * d, d);
                else RotateHalfRow(px + r * d, pc + pos * d, ps + pos * d, py + r * d, d);
            }
        });
    }

    /// <summary>One head row. Each 16-lane step holds whole pairs, so reading a step fully before writing it makes
    /// y = x safe. swap(x) exchanges pair members; the sign vector (−1, +1, ...) gives −x[2j+1] and +x[2j].</summary>
    private static unsafe void InterleavedRow(float* x, float* cos, float* sin, float* y, int d)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var swap = Vector512.Create(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
            var sign = Vector512.Create(-1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f, -1f, 1f);
            for (; j + 16 <= d; j += 16)
            {
                var v = Vector512.Load(x + j);
                var swapped = Vector512.Shuffle(v, swap) * sign;
                Vector512.FusedMultiplyAdd(swapped, Vector512.Load(sin + j), v * Vector512.Load(cos + j)).Store(y + j);
            }
        }
        for (; j < d; j += 2)
        {
            float a = x[j], b = x[j + 1];
            y[j] = a * cos[j] - b * sin[j];
            y[j + 1] = b * cos[j + 1] + a * sin[j + 1];
        }
    }

    /// <summary>One head row; element j of each half is read before either output is written (y = x safe).</summary>
    private static unsafe void RotateHalfRow(float* x, float* cos, float* sin, float* y, int d)
    {
        int half = d / 2, j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 16 <= half; j += 16)
            {
                var a = Vector512.Load(x + j);
                var b = Vector512.Load(x + half + j);
                var lo = a * Vector512.Load(cos + j) - b * Vector512.Load(sin + j);
                var hi = b * Vector512.Load(cos + half + j) + a * Vector512.Load(sin + half + j);
                lo.Store(y + j);
                hi.Store(y + half + j);
            }
        }
        for (; j < half; j++)
        {
            float a = x[j], b = x[half + j];
            y[j] = a * cos[j] - b * sin[j];
            y[half + j] = b * cos[half + j] + a * sin[half + j];
        }
    }
}
