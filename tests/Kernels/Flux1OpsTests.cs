using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// The operators FLUX.1's text encoders add over klein, against tests/golden/flux1/ops.safetensors (PyTorch /
/// transformers, float32) and float64 host references: QuickGELU, gelu_new, T5's RMS norm, affine LayerNorm, causal
/// attention, unscaled attention with a per-head bias, and the relative-position bias gather.
/// </summary>
public class Flux1OpsTests
{
    // exp / tanh differ by a few ulp between TensorPrimitives, ILGPU and PyTorch; inputs reach |x| ≈ 10.
    private const float ActRtol = 1e-5f, ActAtol = 1e-6f;
    // Norms: one reduction per row (D up to 4096) in a different order than PyTorch's; outputs are O(1)–O(10).
    private const float NormRtol = 1e-5f, NormAtol = 2e-6f;
    // As AttentionTests: convex combinations of v, rounding of D-term dot products (< 1e-6 absolute measured there).
    private const float AttnRtol = 1e-5f, AttnAtol = 5e-6f;

    private static SafetensorsFile Ops => GoldenModel.File("flux1/ops.safetensors");
    private static Tensor Load(Device dev, string name) => Ops.LoadF32(name, dev);
    private static float[] F(string name) => Ops.ReadFloats(name);
    private static int[] Dims(string name) => Ops.Entry(name).Shape.ToArray();

    public static TheoryData<string, AttentionAlgorithm> BackendsAndAlgorithms()
    {
        var data = new TheoryData<string, AttentionAlgorithm>();
        foreach (var id in Backends.Ids)
        {
            data.Add(id, AttentionAlgorithm.Auto);
            data.Add(id, AttentionAlgorithm.Reference);
        }
        return data;
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void QuickGelu_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Load(dev, "act.x");
        using var y = new Guarded(dev, DType.F32, Dims("act.quick_gelu"));
        QuickGelu.Forward(x, y);
        Compare.Close(F("act.quick_gelu"), y.ToFloatArray(), ActRtol, ActAtol, $"quick_gelu on {backend}");
        y.AssertIntact($"quick_gelu on {backend}");
    }

    /// <summary>Odd length (SIMD tails, a partial 1024 chunk), in place, against x·sigmoid(1.702x) in float64; the
    /// plain sigmoid (SiLU) would fail it by up to 0.1.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void QuickGelu_odd_size_in_place_matches_float64(string backend)
    {
        var dev = Backends.Get(backend);
        const int n = 2051;
        var xs = HostData.Random(n, 17, 12f);
        var expected = xs.Select(v => (float)(v / (1 + Math.Exp(-1.702 * v)))).ToArray();
        var silu = xs.Select(v => (float)(v / (1 + Math.Exp(-(double)v)))).ToArray();
        Assert.True(Compare.RelMaxError(expected, silu) > 1e-2, "the test data cannot tell QuickGELU from SiLU");
        using var y = HostData.GuardedWith(dev, xs, n);
        QuickGelu.Forward(y, y);
        Compare.Close(expected, y.ToFloatArray(), ActRtol, ActAtol, $"quick_gelu in place on {backend}");
        y.AssertIntact($"quick_gelu in place on {backend}");
    }

    /// <summary>T5's gelu_new (tanh formula written out in transformers) is the engine's tanh GELU.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Gelu_tanh_matches_gelu_new_and_torch_tanh(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Load(dev, "act.x");
        using var y = new Guarded(dev, DType.F32, Dims("act.gelu_new"));
        Gelu.Forward(x, y, GeluApproximation.Tanh);
        Compare.Close(F("act.gelu_new"), y.ToFloatArray(), ActRtol, ActAtol, $"gelu_new on {backend}");
        Compare.Close(F("act.gelu_tanh_torch"), y.ToFloatArray(), ActRtol, ActAtol, $"gelu tanh (torch) on {backend}");
        y.AssertIntact($"gelu_new on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RmsNorm_matches_t5_layernorm(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var c in new[] { "3x77x32", "1x2x4096" })
        {
            string p = $"t5_layernorm.{c}";
            using var x = Load(dev, p + ".x");
            using var w = Load(dev, p + ".weight");
            using var y = new Guarded(dev, DType.F32, Dims(p + ".out"));
            RmsNorm.Forward(x, w, y, 1e-6f);
            Compare.Close(F(p + ".out"), y.ToFloatArray(), NormRtol, NormAtol, $"{p} on {backend}");
            y.AssertIntact($"{p} on {backend}");
        }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LayerNorm_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var c in new[] { "3x77x32", "1x2x4096" })
        {
            string p = $"layernorm_affine.{c}";
            using var x = Load(dev, $"t5_layernorm.{c}.x"); // the golden's input, shared with the T5 norm case
            using var w = Load(dev, p + ".weight");
            using var b = Load(dev, p + ".bias");
            using var y = new Guarded(dev, DType.F32, Dims(p + ".out"));
            LayerNorm.Forward(x, w, b, y, 1e-5f);
            Compare.Close(F(p + ".out"), y.ToFloatArray(), NormRtol, NormAtol, $"{p} on {backend}");
            y.AssertIntact($"{p} on {backend}");
        }
    }

    /// <summary>Rows of an odd width (SIMD tails) with a large mean (the two-pass variance matters), in place, against
    /// float64; weight and bias differ per channel so a swapped or missing one fails.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void LayerNorm_odd_width_in_place_matches_float64(string backend)
    {
        var dev = Backends.Get(backend);
        const int rows = 7, d = 333;
        const float eps = 1e-5f;
        var xs = HostData.Random(rows * d, 3, 2f, offset: 50f);
        var ws = HostData.Random(d, 4, 1f, offset: 1f);
        var bs = HostData.Random(d, 5, 0.5f);
        var expected = new float[xs.Length];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, var = 0;
            for (int j = 0; j < d; j++) mean += xs[r * d + j];
            mean /= d;
            for (int j = 0; j < d; j++) var += (xs[r * d + j] - mean) * (xs[r * d + j] - mean);
            double rstd = 1 / Math.Sqrt(var / d + eps);
            for (int j = 0; j < d; j++) expected[r * d + j] = (float)((xs[r * d + j] - mean) * rstd * ws[j] + bs[j]);
        }
        using var w = Tensor.FromArray(dev, ws, d);
        using var b = Tensor.FromArray(dev, bs, d);
        using var y = HostData.GuardedWith(dev, xs, rows, d);
        LayerNorm.Forward(y, w, b, y, eps);
        // |x − mean| ≤ 2 around a mean of 50: float32 x itself carries 50·6e-8 = 3e-6 absolute, ×rstd (≈1.7) ×|w| (≤ 2).
        Compare.Close(expected, y.ToFloatArray(), NormRtol, 2e-5f, $"layernorm odd width on {backend}");
        y.AssertIntact($"layernorm odd width on {backend}");
    }

    [Theory, MemberData(nameof(BackendsAndAlgorithms))]
    public void Attention_causal_matches_clip_golden(string backend, AttentionAlgorithm algorithm)
    {
        var dev = Backends.Get(backend);
        using var q = LoadShd(dev, "sdpa_causal.q");
        using var k = LoadShd(dev, "sdpa_causal.k");
        using var v = LoadShd(dev, "sdpa_causal.v");
        var (h, s, d) = Hsd("sdpa_causal.q");
        using var o = new Guarded(dev, DType.F32, s, h, d);
        Attention.Forward(q, k, v, o, new AttentionOptions { Causal = true, Algorithm = algorithm });
        var expected = HostData.HeadsFirstToSequenceFirst(F("sdpa_causal.out"), h, s, d);
        Compare.Close(expected, o.ToFloatArray(), AttnRtol, AttnAtol, $"causal sdpa ({algorithm}) on {backend}");
        o.AssertIntact($"causal sdpa on {backend}");
    }

    /// <summary>T5: logits q·k (scale 1) + a bias per head [1, H, S, S].</summary>
    [Theory, MemberData(nameof(BackendsAndAlgorithms))]
    public void Attention_unscaled_with_per_head_bias_matches_t5_golden(string backend, AttentionAlgorithm algorithm)
    {
        var dev = Backends.Get(backend);
        using var q = LoadShd(dev, "t5_attention.q");
        using var k = LoadShd(dev, "t5_attention.k");
        using var v = LoadShd(dev, "t5_attention.v");
        using var bias = Load(dev, "t5_attention.bias");
        var (h, s, d) = Hsd("t5_attention.q");
        using var o = new Guarded(dev, DType.F32, s, h, d);
        Attention.Forward(q, k, v, o, new AttentionOptions { Scale = 1f, Bias = bias, Algorithm = algorithm });
        var expected = HostData.HeadsFirstToSequenceFirst(F("t5_attention.out"), h, s, d);
        Compare.Close(expected, o.ToFloatArray(), AttnRtol, AttnAtol, $"t5 attention ({algorithm}) on {backend}");
        o.AssertIntact($"t5 attention on {backend}");
    }

    /// <summary>
    /// A bias per query head with grouped-query heads, S_q ≠ S_k (more than one key block and query block on the CPU
    /// path), a key mask and an odd head dim, against float64. Head h must read plane h: the same data with plane 0
    /// for every head gives a clearly different answer.
    /// </summary>
    [Theory, MemberData(nameof(BackendsAndAlgorithms))]
    public void Attention_per_head_bias_matches_float64(string backend, AttentionAlgorithm algorithm)
    {
        var dev = Backends.Get(backend);
        const int sq = 70, sk = 133, hq = 4, hkv = 2, d = 24;
        var qd = HostData.Random(sq * hq * d, 11, 1.5f);
        var kd = HostData.Random(sk * hkv * d, 12, 1.5f);
        var vd = HostData.Random(sk * hkv * d, 13);
        var biasData = HostData.Random(hq * sq * sk, 14, 4f);
        var keep = Enumerable.Range(0, sk).Select(j => (byte)(j % 7 == 3 ? 0 : 1)).ToArray();
        const float scale = 0.5f;
        var expected = Reference(qd, kd, vd, biasData, keep, sq, sk, hq, hkv, d, scale, perHead: true);
        var sharedPlane = Reference(qd, kd, vd, biasData, keep, sq, sk, hq, hkv, d, scale, perHead: false);
        Assert.True(Compare.RelMaxError(expected, sharedPlane) > 1e-2, "the test data cannot tell a per-head bias from a shared one");

        using var q = Tensor.FromArray(dev, qd, sq, hq, d);
        using var k = Tensor.FromArray(dev, kd, sk, hkv, d);
        using var v = Tensor.FromArray(dev, vd, sk, hkv, d);
        using var bias = Tensor.FromArray(dev, biasData, hq, sq, sk);
        using var km = Tensor.FromSpan<byte>(dev, keep, new Shape(sk));
        using var o = new Guarded(dev, DType.F32, sq, hq, d);
        Attention.Forward(q, k, v, o, new AttentionOptions { Scale = scale, Bias = bias, KeyMask = km, Algorithm = algorithm });
        Compare.Close(expected, o.ToFloatArray(), AttnRtol, AttnAtol, $"per-head bias ({algorithm}) on {backend}");
        o.AssertIntact($"per-head bias on {backend}");
    }

    [Fact]
    public void Attention_rejects_a_bias_of_another_size()
    {
        var dev = Backends.Get("cpu");
        using var q = Tensor.Zeros(dev, DType.F32, new Shape(5, 3, 8));
        using var o = Tensor.Zeros(dev, DType.F32, new Shape(5, 3, 8));
        using var bias = Tensor.Zeros(dev, DType.F32, new Shape(2, 5, 5));
        var e = Assert.Throws<ArgumentException>(() => Attention.Forward(q, q, q, o, new AttentionOptions { Bias = bias }));
        Assert.Contains("expected [S_q, S_k] = [5, 5] (shared by the heads) or [H_q, S_q, S_k] = [3, 5, 5] (one per head)", e.Message);
    }

    /// <summary>bias[h, i, j] = table[bucket[j − i + S_q − 1], h] for S_q ≠ S_k, with F32 and BF16 tables (values that
    /// BF16 holds exactly, so both must match bit for bit).</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void RelativePositionBias_gathers_table_columns(string backend)
    {
        var dev = Backends.Get(backend);
        const int buckets = 9, heads = 3, sq = 6, sk = 11;
        var table = Enumerable.Range(0, buckets * heads).Select(i => (float)(i * 0.25 - 3)).ToArray();
        var offsets = Enumerable.Range(0, sq + sk - 1).Select(n => (n * 5 + 2) % buckets).ToArray();
        var expected = new float[heads * sq * sk];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < sq; i++)
                for (int j = 0; j < sk; j++)
                    expected[(h * sq + i) * sk + j] = table[offsets[j - i + sq - 1] * heads + h];

        using var bucketsT = Tensor.FromSpan<int>(dev, offsets, new Shape(offsets.Length));
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            using var t = dtype == DType.F32
                ? Tensor.FromArray(dev, table, buckets, heads)
                : Tensor.FromSpan<ushort>(dev, table.Select(Bf16.FromFloat).ToArray(), new Shape(buckets, heads), DType.BF16);
            using var bias = new Guarded(dev, DType.F32, heads, sq, sk);
            RelativePositionBias.Forward(t, bucketsT, bias);
            Assert.Equal(expected, bias.ToFloatArray());
            bias.AssertIntact($"relative position bias {dtype} on {backend}");
        }
    }

    [Fact]
    public void RelativePositionBias_rejects_a_bucket_outside_the_table()
    {
        var dev = Backends.Get("cpu");
        using var table = Tensor.Zeros(dev, DType.F32, new Shape(4, 2));
        using var buckets = Tensor.FromSpan<int>(dev, [0, 1, 4], new Shape(3));
        using var bias = Tensor.Empty(dev, DType.F32, 2, 2, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => RelativePositionBias.Forward(table, buckets, bias));
        Assert.Contains("bucketOfOffset[2] = 4 is outside table", e.Message);
    }

    // ------------------------------------------------------------------ helpers

    private static (int H, int S, int D) Hsd(string name)
    {
        var dims = Dims(name);
        return (dims[1], dims[2], dims[3]);
    }

    /// <summary>A [1, H, S, D] golden as a [S, H, D] tensor (tokens-major, the layout attention takes).</summary>
    private static Tensor LoadShd(Device dev, string name)
    {
        var (h, s, d) = Hsd(name);
        return Tensor.FromArray(dev, HostData.HeadsFirstToSequenceFirst(F(name), h, s, d), s, h, d);
    }

    /// <summary>Float64 attention on [S, H, D] arrays with an additive bias [H, S_q, S_k] (plane h, or plane 0 for every
    /// head when <paramref name="perHead"/> is false) and a key mask.</summary>
    private static float[] Reference(float[] q, float[] k, float[] v, float[] bias, byte[] keep, int sq, int sk, int hq, int hkv, int d,
        float scale, bool perHead)
    {
        var o = new float[sq * hq * d];
        var logits = new double[sk];
        int group = hq / hkv;
        for (int h = 0; h < hq; h++)
        {
            int kvh = h / group, plane = perHead ? h : 0;
            for (int i = 0; i < sq; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < sk; j++)
                {
                    double s = double.NegativeInfinity;
                    if (keep[j] != 0)
                    {
                        s = 0;
                        for (int c = 0; c < d; c++) s += (double)q[(i * hq + h) * d + c] * k[(j * hkv + kvh) * d + c];
                        s = s * scale + bias[((long)plane * sq + i) * sk + j];
                    }
                    logits[j] = s;
                    max = Math.Max(max, s);
                }
                double sum = 0;
                var acc = new double[d];
                for (int j = 0; j < sk; j++)
                {
                    double e = Math.Exp(logits[j] - max);
                    sum += e;
                    for (int c = 0; c < d; c++) acc[c] += e * v[(j * hkv + kvh) * d + c];
                }
                for (int c = 0; c < d; c++) o[(i * hq + h) * d + c] = (float)(acc[c] / sum);
            }
        }
        return o;
    }
}
