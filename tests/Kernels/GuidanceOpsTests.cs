using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// GuidanceOps against host references. Extrapolation, row scaling and the per-row factors are one float32
/// rounding per step and are compared bit for bit with a float32 scalar evaluation (C# never contracts a·b + c
/// into an FMA) and also with float64. The reductions (row norms, row std) are compared with float64 at
/// 1e-6 relative, including rows long enough (300 001) that a plain running float32 sum would drift.
/// </summary>
public class GuidanceOpsTests
{
    private const double ReductionRtol = 1e-6;

    private static (float[] C, float[] U) Pair(int n, int seed) =>
        (HostData.Random(n, seed, 2f, 0.3f), HostData.Random(n, seed + 1, 1.5f, -0.2f));

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Cfg_and_CfgFromCond_are_bit_exact_unfused_float32(string backend)
    {
        var dev = Backends.Get(backend);
        const float g = 4.37f;
        foreach (var (r, c) in new[] { (3, 37), (300, 301) }) // odd (SIMD tails); > 64K (threaded CPU chunks)
        {
            var (cv, uv) = Pair(r * c, 40 + r);
            var fromU = new float[cv.Length];
            var fromC = new float[cv.Length];
            int fusedDiffers = 0;
            for (int i = 0; i < cv.Length; i++)
            {
                float d = cv[i] - uv[i];
                float p = g * d;
                fromU[i] = uv[i] + p;
                fromC[i] = cv[i] + p;
                if (MathF.FusedMultiplyAdd(g, d, uv[i]) != fromU[i]) fusedDiffers++;
            }
            // The data can tell an FMA implementation from ours, so bit-exactness is a real constraint.
            Assert.True(fusedDiffers > 0, "test data does not distinguish fused from unfused evaluation");

            using var tc = Tensor.FromArray(dev, cv, r, c);
            using var tu = Tensor.FromArray(dev, uv, r, c);
            using (var y = new Guarded(dev, DType.F32, r, c))
            {
                GuidanceOps.Cfg(tc, tu, g, y);
                var got = y.ToFloatArray();
                AssertBitEqual(fromU, got, $"cfg {r}x{c} on {backend}");
                Compare.Close(Reference64(cv, uv, g, fromCond: false), got, 1e-6f, 1e-6f, $"cfg vs float64 on {backend}");
                y.AssertIntact($"cfg on {backend}");
            }
            using (var y = new Guarded(dev, DType.F32, r, c))
            {
                GuidanceOps.CfgFromCond(tc, tu, g, y);
                var got = y.ToFloatArray();
                AssertBitEqual(fromC, got, $"cfg-from-cond {r}x{c} on {backend}");
                Compare.Close(Reference64(cv, uv, g, fromCond: true), got, 1e-6f, 1e-6f, $"cfg-from-cond vs float64 on {backend}");
                y.AssertIntact($"cfg-from-cond on {backend}");
            }
            // y aliasing cond, then y aliasing uncond.
            using (var y = HostData.GuardedWith(dev, cv, r, c))
            {
                GuidanceOps.Cfg(y, tu, g, y);
                AssertBitEqual(fromU, y.ToFloatArray(), $"cfg into cond on {backend}");
            }
            using (var y = HostData.GuardedWith(dev, uv, r, c))
            {
                GuidanceOps.CfgFromCond(tc, y, g, y);
                AssertBitEqual(fromC, y.ToFloatArray(), $"cfg-from-cond into uncond on {backend}");
            }
        }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RowNorms_and_RowStd_match_float64(string backend)
    {
        var dev = Backends.Get(backend);
        // Per-token rows, odd rows, and two long per-sample rows with a large mean (a naive one-pass variance
        // or a running float32 sum over 300K elements misses 1e-6).
        foreach (var (r, c, scale, offset) in new[] { (14, 5, 1f, 0f), (5, 37, 2f, 0.5f), (2, 300_001, 1f, 3f), (3, 1000, 0.01f, -7f) })
        {
            var x = HostData.Random(r * c, 50 + c, scale, offset);
            for (int i = c; i < x.Length; i++) x[i] *= 1f + (i / c); // each row has different statistics
            using var tx = Tensor.FromArray(dev, x, r, c);
            var (norm64, std64) = RowStats64(x, r, c);
            if (c > 100_000)
            {
                // The long rows discriminate: a running float32 sum of squares misses the tolerance on them.
                double worst = 0;
                for (int i = 0; i < r; i++)
                {
                    float naive = 0f;
                    for (int j = 0; j < c; j++) naive += x[i * c + j] * x[i * c + j];
                    worst = Math.Max(worst, Math.Abs(Math.Sqrt(naive) - norm64[i]) / norm64[i]);
                }
                Assert.True(worst > ReductionRtol, $"a naive float32 norm is within {ReductionRtol} ({worst:g3}); the long rows test nothing");
            }

            using (var n = new Guarded(dev, DType.F32, r))
            {
                GuidanceOps.RowNorms(tx, n);
                AssertRelative(norm64, n.ToFloatArray(), ReductionRtol, $"row norms {r}x{c} on {backend}");
                n.AssertIntact($"row norms on {backend}");
            }
            using (var s = new Guarded(dev, DType.F32, r))
            {
                GuidanceOps.RowStd(tx, s);
                AssertRelative(std64, s.ToFloatArray(), ReductionRtol, $"row std {r}x{c} on {backend}");
                s.AssertIntact($"row std on {backend}");
            }
        }

        // A 3-D tensor reduces over its last axis: [2, 3, 4] → 6 rows.
        var x3 = HostData.Random(24, 60);
        using var t3 = Tensor.FromArray(dev, x3, 2, 3, 4);
        using var n3 = Tensor.Empty(dev, DType.F32, 2, 3);
        GuidanceOps.RowNorms(t3, n3);
        AssertRelative(RowStats64(x3, 6, 4).Norm, n3.ToFloatArray(), ReductionRtol, $"row norms of [2,3,4] on {backend}");

        // One element per row: Bessel's correction divides by zero, as torch.std does (NaN).
        using var single = Tensor.FromArray(dev, [1f, 2f], 2, 1);
        using var s1 = Tensor.Empty(dev, DType.F32, 2);
        GuidanceOps.RowStd(single, s1);
        Assert.All(s1.ToFloatArray(), v => Assert.True(float.IsNaN(v), $"std of one element is {v} on {backend}; expected NaN"));
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void ScaleRows_BlendRatio_ClipRatio_are_exact(string backend)
    {
        var dev = Backends.Get(backend);
        const int r = 6, c = 37;
        var x = HostData.Random(r * c, 70);
        float[] s = [0.5f, -2f, 1.25f, 3.1f, 0f, 0.77f];
        var expected = new float[x.Length];
        for (int i = 0; i < x.Length; i++) expected[i] = x[i] * s[i / c];
        using var ts = Tensor.FromArray(dev, s, r);
        using (var y = HostData.GuardedWith(dev, x, r, c))
        {
            GuidanceOps.ScaleRows(y, ts, y); // in place
            AssertBitEqual(expected, y.ToFloatArray(), $"scale rows on {backend}");
            y.AssertIntact($"scale rows on {backend}");
        }

        float[] num = [1f, 2.5f, 0.3f, 7f, 1e-3f, 4f];
        float[] den = [3f, 0.7f, 0.3f, 2f, 5f, 9f];
        using var tn = Tensor.FromArray(dev, num, r);
        using var td = Tensor.FromArray(dev, den, r);
        foreach (float mix in new[] { 1f, 0.7f, 0f })
        {
            using var y = new Guarded(dev, DType.F32, r);
            GuidanceOps.BlendRatio(tn, td, mix, y);
            var want = new float[r];
            for (int i = 0; i < r; i++)
            {
                float ratio = num[i] / den[i];
                float blended = mix * ratio;
                want[i] = blended + (1f - mix);
            }
            AssertBitEqual(want, y.ToFloatArray(), $"blend ratio mix {mix} on {backend}");
            if (mix == 1f) AssertBitEqual(num.Zip(den, (a, b) => a / b).ToArray(), y.ToFloatArray(), $"plain ratio on {backend}");
            y.AssertIntact($"blend ratio on {backend}");
        }

        // ClipRatio(reference, norm, limit): clipped (norm > limit·ref), equal (not clipped), below, norm 0.
        float[] reference = [1f, 2f, 3f, 0f, 1f, 4f];
        float[] norm = [5f, 3f, 1f, 0f, 1.5f, 6f];
        const float limit = 1.5f;
        using var tr = Tensor.FromArray(dev, reference, r);
        using var tnorm = Tensor.FromArray(dev, norm, r);
        using (var y = new Guarded(dev, DType.F32, r))
        {
            GuidanceOps.ClipRatio(tr, tnorm, limit, y);
            float[] want = [1.5f / 5f, 1f, 1f, 1f, 1f, 1f];
            AssertBitEqual(want, y.ToFloatArray(), $"clip ratio on {backend}");
            y.AssertIntact($"clip ratio on {backend}");
        }
    }

    [Fact]
    public void GuidanceOps_reject_bad_arguments()
    {
        var dev = Backends.Get("cpu");
        using var a = Tensor.Zeros(dev, DType.F32, new Shape(4, 8));
        using var b = Tensor.Zeros(dev, DType.F32, new Shape(4, 9));
        using var v4 = Tensor.Zeros(dev, DType.F32, new Shape(4));
        using var v5 = Tensor.Zeros(dev, DType.F32, new Shape(5));
        using var bf = Tensor.Zeros(dev, DType.BF16, new Shape(4, 8));
        Assert.Contains("GuidanceOps.Cfg", Assert.Throws<ArgumentException>(() => GuidanceOps.Cfg(a, b, 2f, a)).Message);
        Assert.Throws<ArgumentException>(() => GuidanceOps.CfgFromCond(a, a, 2f, b));
        Assert.Throws<ArgumentException>(() => GuidanceOps.Cfg(bf, bf, 2f, bf));
        Assert.Contains("norms", Assert.Throws<ArgumentException>(() => GuidanceOps.RowNorms(a, v5)).Message);
        Assert.Throws<ArgumentException>(() => GuidanceOps.RowStd(a, v5));
        Assert.Contains("s", Assert.Throws<ArgumentException>(() => GuidanceOps.ScaleRows(a, v5, a)).Message);
        Assert.Throws<ArgumentException>(() => GuidanceOps.ScaleRows(a, v4, b));
        Assert.Throws<ArgumentException>(() => GuidanceOps.BlendRatio(v4, v5, 1f, v4));
        Assert.Throws<ArgumentException>(() => GuidanceOps.BlendRatio(v4, v4, float.NaN, v4));
        Assert.Throws<ArgumentException>(() => GuidanceOps.ClipRatio(v4, v4, -1f, v4));
        GuidanceOps.RowNorms(a, v4);
        GuidanceOps.ScaleRows(a, v4, a);
    }

    /// <summary>ptxas may contract the plain PTX mul.f32 + add.f32 that ILGPU emits into an FMA; the extrapolation
    /// kernel must use the .rn forms (which it may not fuse) so CUDA is bit-exact too. Checked on the PTX ILGPU
    /// generates, no GPU needed. (The portable plain-float branch is still in the PTX, behind a branch on the
    /// constant predicate CudaAsm.IsSupported = true, so the test looks for the .rn forms, not for their absence.)</summary>
    [Fact]
    public void Extrapolate_kernel_PTX_uses_unfusable_rounding()
    {
        var ptx = PtxAssembler.CompileToPtx(KernelMethod.Get("GuidanceOps.ExtrapolateKernel"), "sm_80");
        Assert.Contains("mul.rn.f32", ptx);
        Assert.Contains("add.rn.f32", ptx);
        Assert.Contains("sub.rn.f32", ptx);
        Assert.DoesNotContain("fma", ptx);
    }

    private static float[] Reference64(float[] c, float[] u, float g, bool fromCond)
    {
        var y = new float[c.Length];
        for (int i = 0; i < c.Length; i++) y[i] = (float)((fromCond ? c[i] : (double)u[i]) + g * ((double)c[i] - u[i]));
        return y;
    }

    private static (double[] Norm, double[] Std) RowStats64(float[] x, int r, int c)
    {
        var norm = new double[r];
        var std = new double[r];
        for (int i = 0; i < r; i++)
        {
            double sum = 0, sq = 0;
            for (int j = 0; j < c; j++) { sum += x[i * c + j]; sq += (double)x[i * c + j] * x[i * c + j]; }
            double mean = sum / c, centred = 0;
            for (int j = 0; j < c; j++) centred += (x[i * c + j] - mean) * (x[i * c + j] - mean);
            norm[i] = Math.Sqrt(sq);
            std[i] = Math.Sqrt(centred / (c - 1));
        }
        return (norm, std);
    }

    internal static void AssertBitEqual(float[] expected, float[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{what}: element {i} is {actual[i]:R}, expected exactly {expected[i]:R}");
    }

    private static void AssertRelative(double[] expected, float[] actual, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
        {
            double rel = Math.Abs(actual[i] - expected[i]) / Math.Abs(expected[i]);
            Assert.True(rel <= rtol, $"{what}: row {i} is {actual[i]:R}, expected {expected[i]:R} (relative error {rel:g3} > {rtol:g2})");
        }
    }
}
