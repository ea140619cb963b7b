using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// Elementwise.Combine (y = a·x + b·z) and Divide (y = x / d) must round exactly like torch's float32 CPU ops: the
/// products rounded before the sum (no FMA), a true division (not x·(1/d)). The inputs are chosen so that both
/// shortcuts give different bits on many elements, so a fused or reciprocal implementation fails here.
/// </summary>
public class CombineTests
{
    private const float A = 0.8734617f, B = -1.3370961f, D = 0.3014159f;

    private static float[] Unfused(float a, float[] x, float b, float[] z)
    {
        var y = new float[x.Length];
        for (int i = 0; i < y.Length; i++)
        {
            float p = a * x[i], q = b * z[i];
            y[i] = p + q;
        }
        return y;
    }

    [Fact]
    public void Inputs_tell_fused_and_reciprocal_results_apart()
    {
        var x = HostData.Random(1000, 40);
        var z = HostData.Random(1000, 41);
        var unfused = Unfused(A, x, B, z);
        int fusedDiffers = Enumerable.Range(0, x.Length).Count(i => MathF.FusedMultiplyAdd(A, x[i], B * z[i]) != unfused[i]);
        int reciprocalDiffers = Enumerable.Range(0, x.Length).Count(i => x[i] * (1f / D) != x[i] / D);
        Assert.True(fusedDiffers > 10, $"only {fusedDiffers} of 1000 elements tell an FMA apart");
        Assert.True(reciprocalDiffers > 10, $"only {reciprocalDiffers} of 1000 elements tell x·(1/d) apart from x/d");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Combine_rounds_like_torch(string backend)
    {
        var dev = Backends.Get(backend);
        const int r = 7, c = 45; // odd: SIMD tails
        var x = HostData.Random(r * c, 42, 3f);
        var z = HostData.Random(r * c, 43, 2f);
        using var tx = Tensor.FromArray(dev, x, r, c);
        using var tz = Tensor.FromArray(dev, z, r, c);
        using (var y = new Guarded(dev, DType.F32, r, c))
        {
            Elementwise.Combine(A, tx, B, tz, y);
            Assert.Equal(Unfused(A, x, B, z), y.ToFloatArray());
            y.AssertIntact($"combine on {backend}");
        }
        using (var y = HostData.GuardedWith(dev, x, r, c))
        {
            Elementwise.Combine(A, y, B, tz, y); // y aliases x
            Assert.Equal(Unfused(A, x, B, z), y.ToFloatArray());
            y.AssertIntact($"combine y=x on {backend}");
        }
        using (var y = HostData.GuardedWith(dev, z, r, c))
        {
            Elementwise.Combine(A, tx, B, y, y); // y aliases z
            Assert.Equal(Unfused(A, x, B, z), y.ToFloatArray());
        }
        using (var y = HostData.GuardedWith(dev, x, r, c))
        {
            Elementwise.Combine(A, y, B, y, y); // x = z = y
            Assert.Equal(Unfused(A, x, B, x), y.ToFloatArray());
        }
    }

    /// <summary>300 × 300 + 5 elements: the CPU's multithreaded chunks and its stack-buffer blocks.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Combine_and_Divide_large(string backend)
    {
        var dev = Backends.Get(backend);
        const int n = 300 * 300 + 5;
        var x = HostData.Random(n, 44, 5f);
        var z = HostData.Random(n, 45);
        using var tx = Tensor.FromArray(dev, x, n);
        using var tz = Tensor.FromArray(dev, z, n);
        using var y = new Guarded(dev, DType.F32, n);
        Elementwise.Combine(-0.3183099f, tx, 7.389056f, tz, y);
        Assert.Equal(Unfused(-0.3183099f, x, 7.389056f, z), y.ToFloatArray());
        Elementwise.Divide(tx, D, y);
        Assert.Equal(x.Select(v => v / D).ToArray(), y.ToFloatArray());
        y.AssertIntact($"large on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Divide_is_a_true_division(string backend)
    {
        var dev = Backends.Get(backend);
        const int n = 333;
        var x = HostData.Random(n, 46, 4f);
        using var tx = Tensor.FromArray(dev, x, n);
        using (var y = new Guarded(dev, DType.F32, n))
        {
            Elementwise.Divide(tx, D, y);
            Assert.Equal(x.Select(v => v / D).ToArray(), y.ToFloatArray());
            y.AssertIntact($"divide on {backend}");
        }
        using (var y = HostData.GuardedWith(dev, x, n))
        {
            Elementwise.Divide(y, D, y); // in place
            Assert.Equal(x.Select(v => v / D).ToArray(), y.ToFloatArray());
        }
    }

    /// <summary>
    /// Elementwise.AddScalar (y = x + c; the VAE's shift_factor, and x − s as x + (−s)): one float32 add, exact. Odd
    /// sizes for the SIMD tails, 300 × 300 + 7 for the CPU's multithreaded chunks, in place.
    /// </summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void AddScalar_is_one_exact_add(string backend)
    {
        var dev = Backends.Get(backend);
        const float C = 0.1159f;
        foreach (int n in new[] { 7 * 45, 300 * 300 + 7 })
        {
            var x = HostData.Random(n, 47, 3f);
            using var tx = Tensor.FromArray(dev, x, n);
            using (var y = new Guarded(dev, DType.F32, n))
            {
                Elementwise.AddScalar(tx, C, y);
                Assert.Equal(x.Select(v => v + C).ToArray(), y.ToFloatArray());
                y.AssertIntact($"add scalar on {backend}");
            }
            using (var y = HostData.GuardedWith(dev, x, n))
            {
                Elementwise.AddScalar(y, -C, y); // in place; the subtraction form
                Assert.Equal(x.Select(v => v - C).ToArray(), y.ToFloatArray());
                y.AssertIntact($"add scalar in place on {backend}");
            }
        }
    }

    /// <summary>The CUDA code (ILGPU's PTX backend, no GPU needed) computes with the round-to-nearest forms ptxas may not
    /// fuse or approximate (mul.rn/add.rn, div.rn) and has no fma. (The plain-C# fallback branch is also in the PTX,
    /// behind a constant-true predicate, and is dropped by ptxas.)</summary>
    [Theory]
    [InlineData("Elementwise.CombineKernel", "mul.rn.f32", "add.rn.f32")]
    [InlineData("Elementwise.DivideKernel", "div.rn.f32", null)]
    public void Cuda_code_rounds_each_operation(string kernel, string must, string? must2)
    {
        string ptx = PtxAssembler.CompileToPtx(KernelMethod.Get(kernel), "sm_90");
        Assert.Contains(must, ptx);
        if (must2 is not null) Assert.Contains(must2, ptx);
        foreach (var line in ptx.Split('\n').Select(l => l.Trim()))
            Assert.False(line.StartsWith("fma.", StringComparison.Ordinal), $"{kernel}: {line}");
    }

    [Fact]
    public void Combine_checks_its_arguments()
    {
        var dev = Backends.Get("cpu");
        using var a = Tensor.Zeros(dev, DType.F32, new Shape(4));
        using var b = Tensor.Zeros(dev, DType.F32, new Shape(5));
        using var h = Tensor.Zeros(dev, DType.F16, new Shape(4));
        Assert.ThrowsAny<ArgumentException>(() => Elementwise.Combine(1f, a, 1f, b, a));
        Assert.ThrowsAny<ArgumentException>(() => Elementwise.Combine(1f, a, 1f, h, a));
        Assert.ThrowsAny<ArgumentException>(() => Elementwise.Divide(a, 2f, b));
        Assert.ThrowsAny<ArgumentException>(() => Elementwise.AddScalar(a, 2f, b));
        Assert.ThrowsAny<ArgumentException>(() => Elementwise.AddScalar(h, 2f, h));
    }
}
