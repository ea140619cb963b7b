using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// The experiment switches <c>fused-modulate</c> and <c>fused-swiglu</c> (<see cref="Device.FuseModulate"/>,
/// <see cref="Device.FuseSwiGlu"/>): the unfused paths run other kernels and give the fused results within fp32
/// rounding, on every backend, in place too; the unfused modulation kernel matches a float64 reference. Each test
/// opens a device of its own, since the switches are device state and the shared test devices serve other classes.
/// </summary>
public class FusionSwitchTests
{
    private static Device Open(string backend)
    {
        Backends.Get(backend); // skips with the reason where the backend is absent or not selected
        return backend == "cpu" ? new CpuDevice(2) : Devices.Open(backend);
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Unfused_modulated_norms_give_the_fused_results(string backend)
    {
        using var dev = Open(backend);
        const int rows = 29, d = 96;
        var x = HostData.Random(rows * d, 1, 3f, 0.5f);
        var w = HostData.Random(d, 2, 1f, 1f);
        var shift = HostData.Random(d, 3, 0.5f);
        var scale = HostData.Random(d, 4, 0.5f);
        float[] Run(bool fused, bool rms, bool inPlace)
        {
            dev.FuseModulate = fused;
            using var xt = Tensor.FromSpan<float>(dev, x, new Shape(rows, d));
            using var wt = Tensor.FromSpan<float>(dev, w, new Shape(d));
            using var sh = Tensor.FromSpan<float>(dev, shift, new Shape(1, d));
            using var sc = Tensor.FromSpan<float>(dev, scale, new Shape(1, d));
            using var y = inPlace ? null : Tensor.Empty(dev, DType.F32, new Shape(rows, d));
            if (rms) RmsNorm.Forward(xt, wt, y ?? xt, 1e-6f, sc);
            else LayerNormModulate.Forward(xt, sh, sc, y ?? xt, 1e-6f);
            return (y ?? xt).ToFloatArray();
        }
        try
        {
            foreach (bool rms in new[] { false, true })
            {
                var fused = Run(true, rms, false);
                string what = rms ? "rmsnorm·(1+scale)" : "layernorm-modulate";
                Compare.Close(fused, Run(false, rms, false), 1e-6f, 1e-6f, $"unfused {what} on {backend}");
                Compare.Close(fused, Run(false, rms, true), 1e-6f, 1e-6f, $"unfused in-place {what} on {backend}");
            }
        }
        finally { dev.FuseModulate = true; }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Modulate_matches_a_float64_reference(string backend)
    {
        using var dev = Open(backend);
        const int rows = 13, d = 70;
        var x = HostData.Random(rows * d, 5, 2f);
        var shift = HostData.Random(d, 6);
        var scale = HostData.Random(d, 7, 0.5f);
        using var xt = Tensor.FromSpan<float>(dev, x, new Shape(rows, d));
        using var sh = Tensor.FromSpan<float>(dev, shift, new Shape(d));
        using var sc = Tensor.FromSpan<float>(dev, scale, new Shape(d));
        using var y = new Guarded(dev, DType.F32, rows, d);
        LayerNormModulate.Modulate(xt, sh, sc, y);
        var expected = new float[rows * d];
        for (int i = 0; i < expected.Length; i++) expected[i] = (float)(x[i] * (1.0 + scale[i % d]) + shift[i % d]);
        Compare.Close(expected, y.ToFloatArray(), 1e-6f, 1e-6f, $"modulate on {backend}");
        y.AssertIntact($"modulate on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void SwiGlu_forms_and_the_unfused_path_agree(string backend)
    {
        using var dev = Open(backend);
        const int rows = 11, h = 53;
        var xd = HostData.Random(rows * 2 * h, 8, 4f);
        var gate = new float[rows * h];
        var up = new float[rows * h];
        var expected = new float[rows * h];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < h; j++)
            {
                float g = xd[r * 2 * h + j], u = xd[r * 2 * h + h + j];
                (gate[r * h + j], up[r * h + j]) = (g, u);
                expected[r * h + j] = (float)(g / (1 + Math.Exp(-g)) * u);
            }
        try
        {
            foreach (bool fused in new[] { true, false })
            {
                dev.FuseSwiGlu = fused;
                string what = $"{(fused ? "fused" : "unfused")} swiglu on {backend}";
                using var x = Tensor.FromSpan<float>(dev, xd, new Shape(rows, 2 * h));
                using var y = new Guarded(dev, DType.F32, rows, h);
                SwiGlu.Forward(x, y);
                Compare.Close(expected, y.ToFloatArray(), 1e-5f, 1e-6f, what + ", halves of one projection");
                y.AssertIntact(what);
                using var g = Tensor.FromSpan<float>(dev, gate, new Shape(rows, h));
                using var u = Tensor.FromSpan<float>(dev, up, new Shape(rows, h));
                using var y2 = Tensor.Empty(dev, DType.F32, new Shape(rows, h));
                SwiGlu.Forward(g, u, y2);
                Compare.Close(expected, y2.ToFloatArray(), 1e-5f, 1e-6f, what + ", two projections");
                SwiGlu.Forward(g, u, g);
                Compare.Close(expected, g.ToFloatArray(), 1e-5f, 1e-6f, what + ", in place over the gate");
                var e = Assert.Throws<ArgumentException>(() => SwiGlu.Forward(g, u, u));
                Assert.Contains("y aliases up", e.Message);
            }
        }
        finally { dev.FuseSwiGlu = true; }
    }
}
