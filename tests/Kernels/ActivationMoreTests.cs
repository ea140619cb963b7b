using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class ActivationMoreTests
{
    // exp / tanh / erfc differ by a few ulp between TensorPrimitives, ILGPU and PyTorch (erfc form: < 1.2e-7
    // relative); inputs reach |x| ≈ 15, so 1e-5 relative plus 1e-6 absolute near zero.
    private const float Rtol = 1e-5f, Atol = 1e-6f;

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Gelu_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "gelu_tanh.x");
        foreach (var (approx, name) in new[] { (GeluApproximation.Tanh, "gelu_tanh.out"), (GeluApproximation.None, "gelu_exact.out") })
        {
            using var y = new Guarded(dev, DType.F32, Golden.Dims(name));
            Gelu.Forward(x, y, approx);
            Compare.Close(Golden.F(name), y.ToFloatArray(), Rtol, Atol, $"{name} on {backend}");
            y.AssertIntact($"{name} on {backend}");
        }
    }

    /// <summary>Odd length (1000 + 37: SIMD tails, a partial 1024 chunk), in place, against a float64 reference
    /// (exact GELU's reference erf from a Taylor / continued-fraction pair in double).</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Gelu_odd_size_in_place_matches_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int n = 1037;
        var xs = HostData.Random(n, 40, 8f);
        foreach (var approx in new[] { GeluApproximation.Tanh, GeluApproximation.None })
        {
            var expected = xs.Select(v => (float)(approx == GeluApproximation.Tanh
                ? 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * (double)v * v)))
                : 0.5 * v * ErfcReference(-v / Math.Sqrt(2)))).ToArray();
            using var y = HostData.GuardedWith(dev, xs, n);
            Gelu.Forward(y, y, approx);
            Compare.Close(expected, y.ToFloatArray(), Rtol, Atol, $"gelu {approx} in place on {backend}");
            y.AssertIntact($"gelu {approx} on {backend}");
        }
    }

    /// <summary>erfc in float64: series for |x| &lt; 2.5, continued fraction beyond (both converge to ~1e-15).</summary>
    private static double ErfcReference(double x)
    {
        if (x < 0) return 2 - ErfcReference(-x);
        if (x < 2.5)
        {
            // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
            double sum = 0, term = x;
            for (int n = 0; n < 200; n++)
            {
                sum += term / (2 * n + 1);
                term *= -x * x / (n + 1);
                if (Math.Abs(term) < 1e-18) break;
            }
            return 1 - 2 / Math.Sqrt(Math.PI) * sum;
        }
        // erfc(x) = e^{-x²}/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), evaluated bottom-up.
        double f = x;
        for (int k = 60; k >= 1; k--) f = x + k / 2.0 / f;
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    /// <summary>The fit itself is good to 1.2e-7 relative; evaluating it in float32 adds a few 1e-7, and rounding
    /// z² to float32 costs z²·6e-8 relative more in the far tail (erfc(8) ≈ 1e-29: 4e-6). Allowed:
    /// 5e-7 + 1.2e-7·x² relative, from x = −6 to 9 (erfc down to 4e-37).</summary>
    [Fact]
    public void Erfc_is_accurate_in_both_tails()
    {
        for (double x = -6; x <= 9; x += 0.001)
        {
            float xf = (float)x;
            double e = ErfcReference(xf);
            double rel = Math.Abs(Erfc.Of(xf) - e) / e;
            Assert.True(rel <= 5e-7 + 1.2e-7 * xf * xf, $"erfc({xf}) = {Erfc.Of(xf)}, expected {e} (relative error {rel:g3})");
        }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void SwiGlu_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "swiglu.flux2.x");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("swiglu.flux2.out"));
        SwiGlu.Forward(x, y);
        Compare.Close(Golden.F("swiglu.flux2.out"), y.ToFloatArray(), Rtol, Atol, $"swiglu on {backend}");
        y.AssertIntact($"swiglu on {backend}");
    }

    /// <summary>H = 1100: not a multiple of 16 (vector loop plus scalar tail); 60 rows (> 64K elements of
    /// work, the threaded CPU path).</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void SwiGlu_wide_rows_match_host(string backend)
    {
        var dev = Backends.Get(backend);
        const int rows = 60, h = 1100;
        var xs = HostData.Random(rows * 2 * h, 41, 6f);
        var expected = new float[rows * h];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < h; j++)
            {
                double g = xs[r * 2 * h + j], u = xs[r * 2 * h + h + j];
                expected[r * h + j] = (float)(g / (1 + Math.Exp(-g)) * u);
            }
        using var x = Tensor.FromArray(dev, xs, rows, 2 * h);
        using var y = new Guarded(dev, DType.F32, rows, h);
        SwiGlu.Forward(x, y);
        Compare.Close(expected, y.ToFloatArray(), Rtol, Atol, $"swiglu 60x1100 on {backend}");
        y.AssertIntact($"swiglu 60x1100 on {backend}");
    }

    [Fact]
    public void SwiGlu_and_Gelu_reject_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(3, 8));
        using var odd = Tensor.Zeros(dev, DType.F32, new Shape(3, 7));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(3, 8));
        using var y4 = Tensor.Zeros(dev, DType.F32, new Shape(3, 4));
        Assert.Contains("y", Assert.Throws<ArgumentException>(() => SwiGlu.Forward(x, y)).Message);
        Assert.Throws<ArgumentException>(() => SwiGlu.Forward(odd, y4));
        SwiGlu.Forward(x, y4);
        Assert.Throws<ArgumentException>(() => Gelu.Forward(x, y4, GeluApproximation.Tanh));
    }
}
