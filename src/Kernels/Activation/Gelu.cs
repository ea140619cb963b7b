using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PureFlux.Kernels;

/// <summary>Which GELU: exact (erf) or PyTorch's tanh approximation.</summary>
public enum GeluApproximation
{
    /// <summary>gelu(x) = x/2 · (1 + erf(x/√2)).</summary>
    None,
    /// <summary>gelu(x) = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))).</summary>
    Tanh,
}

/// <summary>GELU, exact or tanh-approximated. x, y: F32, same element count (any shape); y may alias x.</summary>
public static partial class Gelu
{
    internal const float SqrtTwoOverPi = 0.7978845608028654f;
    internal const float Kappa = 0.044715f;
    internal const float InvSqrt2 = 0.7071067811865476f;
    private const int Chunk = 1024;

    public static void Forward(Tensor x, Tensor y, GeluApproximation approximation)
    {
        const string op = nameof(Gelu);
        Check.DType(op, "x", x, DType.F32);
        Check.DType(op, "y", y, DType.F32);
        Check.Count(op, "y", y, x.Count);
        Check.That(approximation is GeluApproximation.None or GeluApproximation.Tanh, op, $"unknown approximation {approximation}");
        if (x.Count == 0) return;
        using var profile = OpProfile.Start(op, x);
        switch (Check.SameDevice(op, x, y))
        {
            case CpuDevice cpu: ForwardCpu(cpu, x, y, approximation); break;
            case IlgpuDevice gpu: ForwardIlgpu(gpu, x, y, approximation); break;
        }
    }

    private static unsafe void ForwardCpu(CpuDevice device, Tensor x, Tensor y, GeluApproximation approximation)
    {
        float* px = (float*)x.Pointer, py = (float*)y.Pointer;
        long total = x.Count;
        // Rows of Chunk elements are the unit of parallel work.
        long chunks = (total + Chunk - 1) / Chunk;
        RowParallel.For(device, chunks, Chunk, (first, count) =>
        {
            long start = first * Chunk, end = Math.Min(total, (first + count) * Chunk);
            for (long s = start; s < end; s += Chunk)
            {
                int n = (int)Math.Min(Chunk, end - s);
                var src = new ReadOnlySpan<float>(px + s, n);
                var dst = new Span<float>(py + s, n);
                if (approximation == GeluApproximation.Tanh) TanhChunk(src, dst);
                else ExactChunk(src, dst);
            }
        });
    }

    /// <summary>dst = x/2 · (1 + tanh(√(2/π)(x + κx³))); the tanh goes through a stack buffer so dst may alias src.</summary>
    private static void TanhChunk(ReadOnlySpan<float> src, Span<float> dst)
    {
        Span<float> inner = stackalloc float[src.Length];
        // inner = √(2/π) · x · (1 + κx²)
        TensorPrimitives.Multiply(src, src, inner);
        TensorPrimitives.Multiply(inner, Kappa, inner);
        TensorPrimitives.Add(inner, 1f, inner);
        TensorPrimitives.Multiply(inner, src, inner);
        TensorPrimitives.Multiply(inner, SqrtTwoOverPi, inner);
        TensorPrimitives.Tanh(inner, inner);
        // dst = (inner + 1) · x · 0.5
        TensorPrimitives.Add(inner, 1f, inner);
        TensorPrimitives.Multiply(inner, src, inner);
        TensorPrimitives.Multiply(inner, 0.5f, dst);
    }

    /// <summary>dst = x/2 · (1 + erf(x/√2)) = x/2 · (x ≥ 0 ? 2 − erfc(z) : erfc(z)), z = |x|/√2, with
    /// <see cref="Erfc"/>'s form: the exponent is built with Vector512, exp by TensorPrimitives.</summary>
    private static void ExactChunk(ReadOnlySpan<float> src, Span<float> dst)
    {
        int n = src.Length;
        Span<float> tBuf = stackalloc float[n];
        Span<float> eBuf = stackalloc float[n];
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            ref float xs = ref MemoryMarshal.GetReference(src);
            ref float ts = ref MemoryMarshal.GetReference(tBuf);
            ref float es = ref MemoryMarshal.GetReference(eBuf);
            var one = Vector512<float>.One;
            for (; i + 16 <= n; i += 16)
            {
                var z = Vector512.Abs(Vector512.LoadUnsafe(ref xs, (nuint)i)) * InvSqrt2;
                var t = one / (one + z * 0.5f);
                var p = Vector512.Create(Erfc.P9);
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P8));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P7));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P6));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P5));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P4));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P3));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P2));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P1));
                p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(Erfc.P0));
                t.StoreUnsafe(ref ts, (nuint)i);
                (p - z * z).StoreUnsafe(ref es, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float z = MathF.Abs(src[i]) * InvSqrt2;
            float t = 1f / (1f + 0.5f * z);
            tBuf[i] = t;
            eBuf[i] = Erfc.Exponent(z, t);
        }
        TensorPrimitives.Exp(eBuf, eBuf);
        TensorPrimitives.Multiply(eBuf, tBuf, eBuf); // erfc(|x|/√2)
        for (int j = 0; j < n; j++)
        {
            float x = src[j], e = eBuf[j];
            dst[j] = 0.5f * x * (x >= 0f ? 2f - e : e);
        }
    }
}
