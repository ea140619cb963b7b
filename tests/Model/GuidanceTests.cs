using PureFlux.Model.Guidance;
using PureFlux.Tests.Kernels;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// Each guidance variant against a float64 host reference of the diffusers formula, on [2, 7, 5] data whose two
/// samples have different statistics (sample 1 has a larger scale and offset; for the norm clip, one sample clips
/// and the other does not), so mixing statistics across samples or tokens fails. Plain CFG is bit-exact to the
/// float32 scalar formula.
/// </summary>
public class GuidanceTests
{
    public static TheoryData<string> HostBackends => new("cpu", "ilgpu-cpu");

    private const int B = 2, S = 7, C = 5, N = B * S * C;
    // Post-processing multiplies by a ratio of reductions (≤ 1e-6 relative each) after one float32 CFG rounding.
    private const float Rtol = 1e-5f, Atol = 1e-6f;

    /// <summary>cond and uncond with per-sample statistics: sample 1 is 3× larger and offset by 0.5.</summary>
    private static (float[] C, float[] U) Data(int seed)
    {
        var c = HostData.Random(N, seed);
        var u = HostData.Random(N, seed + 1, 0.8f, 0.1f);
        for (int i = N / 2; i < N; i++) { c[i] = 3f * c[i] + 0.5f; u[i] = 3f * u[i] - 0.25f; }
        return (c, u);
    }

    private static double[] Cfg64(float[] c, float[] u, double g, GuidanceFormula formula)
    {
        var y = new double[N];
        for (int i = 0; i < N; i++) y[i] = (formula == GuidanceFormula.CondPlus ? c[i] : u[i]) + g * ((double)c[i] - u[i]);
        return y;
    }

    private static float[] Run(Device dev, IGuidance guidance, float[] c, float[] u, bool intoCond = false)
    {
        using var tc = Tensor.FromArray(dev, c, B, S, C);
        using var tu = Tensor.FromArray(dev, u, B, S, C);
        if (intoCond)
        {
            guidance.Combine(tc, tu, tc, 0, 1);
            return tc.ToFloatArray();
        }
        using var y = new Guarded(dev, DType.F32, B, S, C);
        guidance.Combine(tc, tu, y, 0, 1);
        y.AssertIntact(guidance.Name);
        return y.ToFloatArray();
    }

    private static float[] ToFloat(double[] a) => Array.ConvertAll(a, v => (float)v);

    [Theory, MemberData(nameof(HostBackends))]
    public void Cfg_is_bit_exact_to_float32_formula_in_both_forms(string backend)
    {
        var dev = Backends.Get(backend);
        var (c, u) = Data(1);
        const float g = 4.5f;
        var uncondPlus = new float[N];
        var condPlus = new float[N];
        for (int i = 0; i < N; i++) { uncondPlus[i] = u[i] + g * (c[i] - u[i]); condPlus[i] = c[i] + g * (c[i] - u[i]); }

        var plain = new ClassifierFreeGuidance(g);
        GuidanceOpsTests.AssertBitEqual(uncondPlus, Run(dev, plain, c, u), $"u+g(c-u) on {backend}");
        GuidanceOpsTests.AssertBitEqual(uncondPlus, Run(dev, plain, c, u, intoCond: true), $"u+g(c-u) into cond on {backend}");
        Compare.Close(ToFloat(Cfg64(c, u, g, GuidanceFormula.UncondPlus)), Run(dev, plain, c, u), 1e-6f, 1e-6f, $"u+g(c-u) vs float64 on {backend}");

        var z = new ClassifierFreeGuidance(g, new GuidanceOptions { Formula = GuidanceFormula.CondPlus });
        GuidanceOpsTests.AssertBitEqual(condPlus, Run(dev, z, c, u), $"c+g(c-u) on {backend}");
        // The two forms really differ (c + g(c−u) = u + (1+g)(c−u)).
        Assert.NotEqual(uncondPlus, condPlus);
    }

    [Theory, MemberData(nameof(HostBackends))]
    public void RescalePhi_matches_diffusers_rescale_noise_cfg_per_sample(string backend)
    {
        var dev = Backends.Get(backend);
        var (c, u) = Data(2);
        const float g = 5f, phi = 0.7f;
        var x = Cfg64(c, u, g, GuidanceFormula.UncondPlus);
        var want = new double[N];
        int per = N / B;
        for (int b = 0; b < B; b++)
        {
            double stdC = Std(c.Skip(b * per).Take(per).Select(v => (double)v).ToArray());
            double stdX = Std(x.Skip(b * per).Take(per).ToArray());
            for (int i = b * per; i < (b + 1) * per; i++)
                want[i] = phi * (x[i] * (stdC / stdX)) + (1 - phi) * x[i];
        }
        var got = Run(dev, new ClassifierFreeGuidance(g, new GuidanceOptions { RescalePhi = phi }), c, u);
        Compare.Close(ToFloat(want), got, Rtol, Atol, $"cfg rescale on {backend}");
        Compare.Close(ToFloat(want), Run(dev, new ClassifierFreeGuidance(g, new GuidanceOptions { RescalePhi = phi }), c, u, intoCond: true),
            Rtol, Atol, $"cfg rescale into cond on {backend}");
        // Discriminating: whole-batch statistics (mixing samples) would be far outside the tolerance.
        var mixed = new double[N];
        double stdAllC = Std(c.Select(v => (double)v).ToArray()), stdAllX = Std(x);
        for (int i = 0; i < N; i++) mixed[i] = phi * (x[i] * (stdAllC / stdAllX)) + (1 - phi) * x[i];
        Assert.True(Compare.RelMaxError(ToFloat(mixed), ToFloat(want)) > 1e-3, "per-sample and whole-batch rescale agree; data too uniform");
        Assert.True(Compare.RelMaxError(ToFloat(x), ToFloat(want)) > 1e-2, "rescale is a no-op on this data");
    }

    [Theory, MemberData(nameof(HostBackends))]
    public void PerTokenNormRescale_matches_qwen_image_true_cfg(string backend)
    {
        var dev = Backends.Get(backend);
        var (c, u) = Data(3);
        const float g = 4f;
        var comb = Cfg64(c, u, g, GuidanceFormula.UncondPlus);
        var want = new double[N];
        for (int t = 0; t < B * S; t++)
        {
            double nc = 0, nx = 0;
            for (int j = 0; j < C; j++) { nc += (double)c[t * C + j] * c[t * C + j]; nx += comb[t * C + j] * comb[t * C + j]; }
            double ratio = Math.Sqrt(nc) / Math.Sqrt(nx);
            for (int j = 0; j < C; j++) want[t * C + j] = comb[t * C + j] * ratio;
        }
        var options = new GuidanceOptions { PerTokenNormRescale = true };
        var got = Run(dev, new ClassifierFreeGuidance(g, options), c, u);
        Compare.Close(ToFloat(want), got, Rtol, Atol, $"per-token norm rescale on {backend}");
        Compare.Close(ToFloat(want), Run(dev, new ClassifierFreeGuidance(g, options), c, u, intoCond: true), Rtol, Atol,
            $"per-token norm rescale into cond on {backend}");
        // Each output token has its cond token's norm.
        for (int t = 0; t < B * S; t++)
        {
            double nc = 0, ny = 0;
            for (int j = 0; j < C; j++) { nc += (double)c[t * C + j] * c[t * C + j]; ny += (double)got[t * C + j] * got[t * C + j]; }
            Assert.True(Math.Abs(Math.Sqrt(ny) / Math.Sqrt(nc) - 1) < 1e-5, $"token {t}: ‖out‖ = {Math.Sqrt(ny)}, ‖c‖ = {Math.Sqrt(nc)}");
        }
        // Discriminating: one norm per sample instead of per token would differ.
        var perSample = new double[N];
        int per = N / B;
        for (int b = 0; b < B; b++)
        {
            double nc = 0, nx = 0;
            for (int i = b * per; i < (b + 1) * per; i++) { nc += (double)c[i] * c[i]; nx += comb[i] * comb[i]; }
            for (int i = b * per; i < (b + 1) * per; i++) perSample[i] = comb[i] * Math.Sqrt(nc) / Math.Sqrt(nx);
        }
        Assert.True(Compare.RelMaxError(ToFloat(perSample), ToFloat(want)) > 1e-3, "per-token and per-sample rescale agree; data too uniform");
    }

    [Theory, MemberData(nameof(HostBackends))]
    public void ZImage_norm_clip_clips_only_the_sample_over_the_limit(string backend)
    {
        var dev = Backends.Get(backend);
        var (c, u) = Data(4);
        int per = N / B;
        // Sample 1: uncond close to cond, so guidance barely changes its norm; sample 0: uncond unrelated.
        var near = HostData.Random(per, 44, 0.02f);
        for (int i = 0; i < per; i++) u[per + i] = c[per + i] + near[i];
        const float g = 3f, clip = 1.2f;
        var pred = Cfg64(c, u, g, GuidanceFormula.CondPlus);
        var want = (double[])pred.Clone();
        var ratios = new double[B];
        for (int b = 0; b < B; b++)
        {
            double nc = 0, np = 0;
            for (int i = b * per; i < (b + 1) * per; i++) { nc += (double)c[i] * c[i]; np += pred[i] * pred[i]; }
            nc = Math.Sqrt(nc);
            np = Math.Sqrt(np);
            ratios[b] = np / nc;
            double max = nc * clip;
            if (np > max)
                for (int i = b * per; i < (b + 1) * per; i++) want[i] = pred[i] * (max / np);
        }
        Assert.True(ratios[0] > clip && ratios[1] < clip, $"test data: ‖pred‖/‖c‖ = {ratios[0]}, {ratios[1]}; expected one above {clip} and one below");

        var z = new ClassifierFreeGuidance(g, new GuidanceOptions { Formula = GuidanceFormula.CondPlus, NormClip = clip });
        var got = Run(dev, z, c, u);
        Compare.Close(ToFloat(want), got, Rtol, Atol, $"z-image norm clip on {backend}");
        Compare.Close(ToFloat(want), Run(dev, z, c, u, intoCond: true), Rtol, Atol, $"z-image norm clip into cond on {backend}");
        // The unclipped sample is bit-exact c + g(c − u) (its factor is exactly 1).
        var exact = new float[per];
        for (int i = 0; i < per; i++) exact[i] = c[per + i] + g * (c[per + i] - u[per + i]);
        GuidanceOpsTests.AssertBitEqual(exact, got[per..], $"unclipped sample on {backend}");
    }

    [Theory, MemberData(nameof(HostBackends))]
    public void NoGuidance_copies_cond(string backend)
    {
        var dev = Backends.Get(backend);
        var (c, u) = Data(5);
        Assert.False(NoGuidance.Instance.NeedsUncond(0.5f, 0, 10));
        GuidanceOpsTests.AssertBitEqual(c, Run(dev, NoGuidance.Instance, c, u), $"no guidance on {backend}");
        GuidanceOpsTests.AssertBitEqual(c, Run(dev, NoGuidance.Instance, c, u, intoCond: true), $"no guidance in place on {backend}");
    }

    [Fact]
    public void Interval_includes_both_edges_and_excludes_beyond()
    {
        const float lo = 0.28f, hi = 0.81f;
        var g = new ClassifierFreeGuidance(4f, new GuidanceOptions { Interval = (lo, hi) });
        Assert.True(g.NeedsUncond(lo, 5, 10));
        Assert.True(g.NeedsUncond(hi, 2, 10));
        Assert.True(g.NeedsUncond(0.5f, 4, 10));
        Assert.False(g.NeedsUncond(MathF.BitDecrement(lo), 6, 10));
        Assert.False(g.NeedsUncond(MathF.BitIncrement(hi), 1, 10));
        Assert.False(g.NeedsUncond(1f, 0, 10));
        Assert.False(g.NeedsUncond(0f, 9, 10));
        var point = new ClassifierFreeGuidance(4f, new GuidanceOptions { Interval = (0.5f, 0.5f) });
        Assert.True(point.NeedsUncond(0.5f, 0, 1));
        Assert.False(point.NeedsUncond(0.51f, 0, 1));
        var whole = new ClassifierFreeGuidance(4f, new GuidanceOptions { Interval = (0f, 1f) });
        Assert.True(whole.NeedsUncond(0f, 0, 1) && whole.NeedsUncond(1f, 0, 1));
    }

    [Fact]
    public void Scale_switches_follow_the_pipelines()
    {
        // u + g(c − u): on for g > 1 (SD, Qwen-Image); c + g(c − u): on for g > 0 (Z-Image).
        Assert.False(new ClassifierFreeGuidance(1f).NeedsUncond(0.5f, 0, 1));
        Assert.False(new ClassifierFreeGuidance(0.5f).NeedsUncond(0.5f, 0, 1));
        Assert.True(new ClassifierFreeGuidance(1.01f).NeedsUncond(0.5f, 0, 1));
        var cond = new GuidanceOptions { Formula = GuidanceFormula.CondPlus };
        Assert.False(new ClassifierFreeGuidance(0f, cond).NeedsUncond(0.5f, 0, 1));
        Assert.True(new ClassifierFreeGuidance(0.5f, cond).NeedsUncond(0.5f, 0, 1));
    }

    [Fact]
    public void ZImage_truncation_turns_guidance_off_where_t_norm_exceeds_it()
    {
        var cond = new GuidanceOptions { Formula = GuidanceFormula.CondPlus };
        // t_norm = (1000 − 1000σ)/1000 in float32; off when t_norm > truncation (strictly).
        var half = new ClassifierFreeGuidance(4f, cond with { Truncation = 0.5f });
        Assert.True(half.NeedsUncond(1f, 0, 4));
        Assert.True(half.NeedsUncond(0.6f, 1, 4));
        Assert.True(half.NeedsUncond(0.5f, 2, 4)); // t_norm = 0.5 exactly: not greater
        Assert.False(half.NeedsUncond(0.4f, 3, 4));
        Assert.False(half.NeedsUncond(MathF.BitDecrement(0.5f), 3, 4));
        Assert.Equal(0.5f, ClassifierFreeGuidance.TruncationNorm(0.5f));
        // Default 1.0 never truncates (t_norm ≤ 1), not even at σ = 0; 0 keeps only σ = 1.
        var one = new ClassifierFreeGuidance(4f, cond with { Truncation = 1f });
        Assert.True(one.NeedsUncond(0f, 0, 1) && one.NeedsUncond(0.001f, 0, 1));
        var zero = new ClassifierFreeGuidance(4f, cond with { Truncation = 0f });
        Assert.True(zero.NeedsUncond(1f, 0, 1));
        Assert.False(zero.NeedsUncond(0.999f, 0, 1));
        // Above 1: never.
        Assert.True(new ClassifierFreeGuidance(4f, cond with { Truncation = 2f }).NeedsUncond(0f, 0, 1));
    }

    public static TheoryData<string, string> InvalidOptions => new()
    {
        { "interval lo>hi", "--guidance-interval" },
        { "interval lo<0", "--guidance-interval" },
        { "interval hi>1", "--guidance-interval" },
        { "interval NaN", "--guidance-interval" },
        { "rescale 1.5", "--guidance-rescale" },
        { "rescale -0.1", "--guidance-rescale" },
        { "norm-clip -1", "--guidance-norm-clip" },
        { "norm-clip inf", "--guidance-norm-clip" },
        { "truncation -0.5", "--guidance-truncation" },
        { "rescale+token-norm", "exclusive" },
        { "token-norm+norm-clip", "exclusive" },
        { "scale NaN", "--guidance" },
    };

    [Theory, MemberData(nameof(InvalidOptions))]
    public void Invalid_options_give_one_line_errors(string which, string mentions)
    {
        var o = GuidanceOptions.Default;
        float scale = 4f;
        switch (which)
        {
            case "interval lo>hi": o = o with { Interval = (0.6f, 0.2f) }; break;
            case "interval lo<0": o = o with { Interval = (-0.1f, 0.5f) }; break;
            case "interval hi>1": o = o with { Interval = (0.2f, 1.5f) }; break;
            case "interval NaN": o = o with { Interval = (float.NaN, 0.5f) }; break;
            case "rescale 1.5": o = o with { RescalePhi = 1.5f }; break;
            case "rescale -0.1": o = o with { RescalePhi = -0.1f }; break;
            case "norm-clip -1": o = o with { NormClip = -1f }; break;
            case "norm-clip inf": o = o with { NormClip = float.PositiveInfinity }; break;
            case "truncation -0.5": o = o with { Truncation = -0.5f }; break;
            case "rescale+token-norm": o = o with { RescalePhi = 0.5f, PerTokenNormRescale = true }; break;
            case "token-norm+norm-clip": o = o with { PerTokenNormRescale = true, NormClip = 1f }; break;
            case "scale NaN": scale = float.NaN; break;
            default: throw new ArgumentException(which);
        }
        var e = Assert.Throws<ArgumentException>(() => new ClassifierFreeGuidance(scale, o));
        Assert.Contains(mentions, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Null(e.InnerException);
    }

    [Fact]
    public void Combine_rejects_mismatched_tensors()
    {
        var dev = Backends.Get("cpu");
        using var a = Tensor.Zeros(dev, DType.F32, new Shape(2, 7, 5));
        using var b = Tensor.Zeros(dev, DType.F32, new Shape(2, 7, 4));
        using var flat = Tensor.Zeros(dev, DType.F32, new Shape(14, 5));
        var g = new ClassifierFreeGuidance(4f);
        Assert.Throws<ArgumentException>(() => g.Combine(a, b, a, 0, 1));
        Assert.Throws<ArgumentException>(() => g.Combine(a, a, b, 0, 1));
        Assert.Contains("rank 3", Assert.Throws<ArgumentException>(() => g.Combine(flat, flat, flat, 0, 1)).Message);
        Assert.Throws<ArgumentException>(() => NoGuidance.Instance.Combine(a, a, b, 0, 1));
    }

    private static double Std(double[] x)
    {
        double mean = x.Average();
        return Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / (x.Length - 1));
    }
}
