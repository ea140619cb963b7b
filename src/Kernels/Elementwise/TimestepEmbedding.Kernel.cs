using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace PureFlux.Kernels;

public static partial class TimestepEmbedding
{
    private static void ForwardIlgpu(IlgpuDevice device, Tensor t, Tensor y, float[] freqs)
    {
        // The frequency table (dim/2 floats) is uploaded per call: one step's timestep embedding is 256 values.
        using var f = Tensor.FromSpan<float>(device, freqs, new Shape(freqs.Length), name: "timestep frequencies");
        var k = device.Kernel(static a => a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Kernel));
        k((int)y.Count, t.AsView<float>(), f.AsView<float>(), y.AsView<float>(), freqs.Length);
        // f returns to the pool when this returns; the stream is in order, but the pool may hand the buffer to a
        // host copy first, so wait for the kernel.
        device.Synchronize();
    }

    // 2π split for Cody–Waite reduction: TwoPiHigh (8 significant bits) and TwoPiMid (12 bits) times an integer
    // k < 2^12 are exact in float32, TwoPiLow is the remainder. Exact for |arg| up to ~2.5e4 rad (t ≤ 1000 gives 1000).
    private const float TwoPiHigh = 6.28125f;
    private const float TwoPiMid = 0.00193548202514648437f;
    private const float TwoPiLow = -1.7484556000744883e-7f;
    private const float InvTwoPi = 0.159154943091895336f;

    /// <summary>One thread per output element. The float32 argument t·freq (as PyTorch forms it) is reduced to
    /// [−π, π] before the device cos/sin, whose fast paths lose accuracy for large arguments.</summary>
    [IlgpuKernel]
    private static void Kernel(Index1D i, ArrayView<float> t, ArrayView<float> freqs, ArrayView<float> y, int half)
    {
        int dim = 2 * half;
        int n = i / dim;
        int j = i - n * dim;
        bool isSin = j >= half;
        float arg = t[n] * freqs[isSin ? j - half : j];
        float k = XMath.Round(arg * InvTwoPi);
        float r = ((arg - k * TwoPiHigh) - k * TwoPiMid) - k * TwoPiLow;
        y[i] = isSin ? XMath.Sin(r) : XMath.Cos(r);
    }
}
