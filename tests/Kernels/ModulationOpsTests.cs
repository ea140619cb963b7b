using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>The ops Z-Image's modulation adds: RMSNorm with a (1 + scale) factor and tanh on gate vectors, against float64 references.</summary>
public class ModulationOpsTests
{
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RmsNorm_with_scale_matches_a_float64_reference(string backend)
    {
        var dev = Backends.Get(backend);
        const int rows = 37, d = 160;
        const float eps = 1e-5f;
        var x = HostData.Random(rows * d, 1, 3f);
        var w = HostData.Random(d, 2, 1f, 1f);
        var s = HostData.Random(d, 3, 0.5f);
        using var xt = Tensor.FromSpan<float>(dev, x, new Shape(rows, d));
        using var wt = Tensor.FromSpan<float>(dev, w, new Shape(d));
        using var st = Tensor.FromSpan<float>(dev, s, new Shape(1, d));
        using var y = new Guarded(dev, DType.F32, rows, d);
        RmsNorm.Forward(xt, wt, y, eps, st);
        var expected = new float[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double)x[r * d + j] * x[r * d + j];
            double inv = 1 / Math.Sqrt(ss / d + eps);
            for (int j = 0; j < d; j++) expected[r * d + j] = (float)(x[r * d + j] * inv * w[j] * (1.0 + s[j]));
        }
        Compare.Close(expected, y.ToFloatArray(), 1e-5f, 1e-5f, $"rmsnorm·(1+scale) on {backend}");
        y.AssertIntact($"rmsnorm·(1+scale) on {backend}");

        // In place, as the Z-Image blocks use it on a slice.
        RmsNorm.Forward(xt, wt, xt, eps, st);
        Compare.Close(expected, xt.ToFloatArray(), 1e-5f, 1e-5f, $"in-place rmsnorm·(1+scale) on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Tanh_matches_a_float64_reference(string backend)
    {
        var dev = Backends.Get(backend);
        var x = HostData.Random(1000, 4, 8f);
        x[0] = 0f; x[1] = 30f; x[2] = -30f; x[3] = 1e-6f;
        using var xt = Tensor.FromSpan<float>(dev, x, new Shape(1000));
        using var y = new Guarded(dev, DType.F32, 1000);
        Tanh.Forward(xt, y);
        Compare.Close(x.Select(v => (float)Math.Tanh(v)).ToArray(), y.ToFloatArray(), 2e-6f, 1e-7f, $"tanh on {backend}");
        y.AssertIntact($"tanh on {backend}");
    }

    [Fact]
    public void Bad_arguments_name_the_argument()
    {
        using var cpu = new CpuDevice();
        using var x = Tensor.Empty(cpu, DType.F32, 4, 8);
        using var w = Tensor.Empty(cpu, DType.F32, 8);
        using var s = Tensor.Empty(cpu, DType.F32, 7);
        Assert.Contains("scale", Assert.Throws<ArgumentException>(() => RmsNorm.Forward(x, w, x, 1e-5f, s)).Message);
        using var y = Tensor.Empty(cpu, DType.F32, 5);
        Assert.Contains("y", Assert.Throws<ArgumentException>(() => Tanh.Forward(x, y)).Message);
    }
}
