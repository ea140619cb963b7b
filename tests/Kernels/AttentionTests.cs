using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class AttentionTests
{
    // fp32 attention vs PyTorch fp32 SDPA (and vs the float64 reference): logits are D-term dot products whose
    // rounding (~1e-7 relative) moves each softmax weight by ~1e-7 relative; outputs are convex combinations of v
    // (|v| ≲ 4), so differences stay below 1e-6 absolute — measured max 4.8e-7 on the goldens and 5.9e-7 on the
    // random cases (CPU flash, CPU reference, ILGPU kernels alike). 5e-6 absolute + 1e-5 relative leaves ~10×
    // headroom for summation order (tiles, FMA, fast exp ≤ 3e-7) and still catches a wrong mask or scale (≥ 1e-2).
    private const float Rtol = 1e-5f, Atol = 5e-6f;
    // Softmax: exp differs by a few ulp between TensorPrimitives, ILGPU and PyTorch; outputs ≤ 1.
    private const float SoftmaxRtol = 1e-5f, SoftmaxAtol = 1e-7f;

    public static TheoryData<string, AttentionAlgorithm> BackendsAndAlgorithms()
    {
        var data = new TheoryData<string, AttentionAlgorithm>();
        foreach (var id in Backends.Ids)
        {
            data.Add(id, AttentionAlgorithm.Auto);
            data.Add(id, AttentionAlgorithm.Reference);
            if (id == "cpu") data.Add(id, AttentionAlgorithm.Materialized); // the experiment switch attention=materialized
        }
        return data;
    }

    public static TheoryData<string, AttentionAlgorithm, string> GoldenCases()
    {
        var data = new TheoryData<string, AttentionAlgorithm, string>();
        string[] cases = ["s77", "s256", "s333", "s77.key_masked", "s256.key_masked", "s333.key_masked", "s77.additive",
            "causal_pad", "gqa", "q48_k333"];
        foreach (var id in Backends.Ids)
            foreach (var c in cases)
            {
                data.Add(id, AttentionAlgorithm.Auto, c);
                // The reference kernels are slow on the ILGPU CPU emulator: cover them on the smaller cases there.
                if (id != "ilgpu-cpu" || !c.StartsWith("s333", StringComparison.Ordinal) && !c.StartsWith("s256", StringComparison.Ordinal))
                    data.Add(id, AttentionAlgorithm.Reference, c);
                if (id == "cpu") data.Add(id, AttentionAlgorithm.Materialized, c);
            }
        return data;
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Softmax_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "softmax.7x333.x");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("softmax.7x333.out"));
        Softmax.Forward(x, y);
        Compare.Close(Golden.F("softmax.7x333.out"), y.ToFloatArray(), SoftmaxRtol, SoftmaxAtol, $"softmax on {backend}");
        y.AssertIntact($"softmax on {backend}");
    }

    [Theory, MemberData(nameof(GoldenCases))]
    public void Sdpa_matches_golden(string backend, AttentionAlgorithm algorithm, string name)
    {
        var dev = Backends.Get(backend);
        // case name → (golden prefix, expected output, options builder)
        string prefix = name switch
        {
            "causal_pad" => "sdpa.causal_pad.s77",
            "gqa" => "sdpa.gqa.s77",
            "q48_k333" => "sdpa.q48_k333",
            _ => "sdpa." + name.Split('.')[0],
        };
        string outName = name.EndsWith(".key_masked", StringComparison.Ordinal) ? "out_key_masked"
            : name.EndsWith(".additive", StringComparison.Ordinal) ? "out_masked_additive" : "out";
        using var q = LoadShd(dev, prefix + ".q");
        using var k = LoadShd(dev, prefix + ".k");
        using var v = LoadShd(dev, prefix + ".v");
        using var keyMask = outName == "out_key_masked" ? Golden.Ops.Load(prefix + ".key_keep", dev) : null;
        using var bias = outName == "out_masked_additive" ? Golden.Load(dev, prefix + ".mask_additive") : null;
        using var mask = name == "causal_pad" ? Golden.Ops.Load(prefix + ".mask", dev) : null;
        var options = new AttentionOptions { KeyMask = keyMask, Bias = bias, Mask = mask, Causal = name == "gqa", Algorithm = algorithm };
        using var o = new Guarded(dev, DType.F32, q.Shape.ToArray());
        Attention.Forward(q, k, v, o, options);
        var dims = Golden.Dims(prefix + "." + outName);
        var expected = BhsdToShd(Golden.F(prefix + "." + outName), dims[1], dims[2], dims[3]);
        string what = $"sdpa {name} ({algorithm}) on {backend}";
        Compare.Close(expected, o.ToFloatArray(), Rtol, Atol, what);
        o.AssertIntact(what);
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Sdpa_accepts_rank4_tokens_major(string backend)
    {
        var dev = Backends.Get(backend);
        using var q3 = LoadShd(dev, "sdpa.s77.q");
        using var k3 = LoadShd(dev, "sdpa.s77.k");
        using var v3 = LoadShd(dev, "sdpa.s77.v");
        using var o = new Guarded(dev, DType.F32, 1, 77, 2, 64);
        Attention.Forward(q3.Reshape(1, 77, 2, 64), k3.Reshape(1, 77, 2, 64), v3.Reshape(1, 77, 2, 64), o);
        Compare.Close(BhsdToShd(Golden.F("sdpa.s77.out"), 2, 77, 64), o.ToFloatArray(), Rtol, Atol, $"sdpa rank 4 on {backend}");
        o.AssertIntact($"sdpa rank 4 on {backend}");
    }

    /// <summary>
    /// Random cases against a float64 host reference: head dims that are not multiples of 16/64 and the big ones
    /// (128 = FLUX/Qwen3, 512 = the VAE mid block), sequence lengths that are not tile multiples, every option at
    /// once, S_q ≠ S_k with the bottom-right causal mask, GQA with 3 q heads per kv head.
    /// </summary>
    [Theory]
    [MemberData(nameof(BackendsAndAlgorithms))]
    public void Sdpa_matches_float64_reference_small(string backend, AttentionAlgorithm algorithm)
    {
        var dev = Backends.Get(backend);
        RandomCase(dev, algorithm, sq: 37, sk: 53, hq: 6, hkv: 2, d: 40, causal: true, keyMask: true, mask: true, bias: true, seed: 1);
        RandomCase(dev, algorithm, sq: 70, sk: 70, hq: 2, hkv: 2, d: 17, causal: false, keyMask: true, mask: false, bias: false, seed: 2);
        RandomCase(dev, algorithm, sq: 5, sk: 130, hq: 1, hkv: 1, d: 64, causal: true, keyMask: false, mask: false, bias: true, seed: 3);
    }

    [Theory]
    [MemberData(nameof(BackendsAndAlgorithms))]
    public void Sdpa_matches_float64_reference_large_head_dims(string backend, AttentionAlgorithm algorithm)
    {
        if (backend == "ilgpu-cpu") Assert.Skip("skipped: too slow on the ILGPU CPU emulator (small cases cover its kernels)");
        var dev = Backends.Get(backend);
        RandomCase(dev, algorithm, sq: 200, sk: 200, hq: 4, hkv: 2, d: 128, causal: false, keyMask: false, mask: false, bias: false, seed: 4);
        RandomCase(dev, algorithm, sq: 150, sk: 150, hq: 4, hkv: 4, d: 128, causal: true, keyMask: true, mask: false, bias: false, seed: 5);
        RandomCase(dev, algorithm, sq: 100, sk: 100, hq: 1, hkv: 1, d: 512, causal: false, keyMask: false, mask: false, bias: false, seed: 6);
        RandomCase(dev, algorithm, sq: 33, sk: 300, hq: 2, hkv: 1, d: 200, causal: false, keyMask: true, mask: false, bias: true, seed: 7);
    }

    [Theory, MemberData(nameof(BackendsAndAlgorithms))]
    public void Sdpa_fully_masked_row_outputs_zeros(string backend, AttentionAlgorithm algorithm)
    {
        var dev = Backends.Get(backend);
        const int s = 9, h = 2, d = 8;
        var rng = new Random(11);
        var maskData = new byte[s * s];
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++)
                maskData[i * s + j] = (byte)(i == 3 ? 0 : 1); // row 3 attends nothing
        using var q = Tensor.FromArray(dev, RandomFloats(rng, s * h * d), s, h, d);
        using var k = Tensor.FromArray(dev, RandomFloats(rng, s * h * d), s, h, d);
        using var v = Tensor.FromArray(dev, RandomFloats(rng, s * h * d), s, h, d);
        using var mask = Tensor.FromSpan<byte>(dev, maskData, new Shape(s, s));
        using var o = new Guarded(dev, DType.F32, s, h, d);
        Attention.Forward(q, k, v, o, new AttentionOptions { Mask = mask, Algorithm = algorithm });
        var result = o.ToFloatArray();
        for (int c = 0; c < h * d; c++) Assert.Equal(0f, result[3 * h * d + c]);
        Assert.Contains(result, x => x != 0f);
        o.AssertIntact($"fully masked row on {backend}");
    }

    [Fact]
    public void Sdpa_rejects_bad_shapes()
    {
        var dev = new CpuDevice(1);
        using var q = Tensor.Zeros(dev, DType.F32, new Shape(8, 4, 16));
        using var k = Tensor.Zeros(dev, DType.F32, new Shape(10, 2, 16));
        using var v = Tensor.Zeros(dev, DType.F32, new Shape(10, 2, 16));
        using var o = Tensor.Zeros(dev, DType.F32, new Shape(8, 4, 16));
        using var kWrongD = Tensor.Zeros(dev, DType.F32, new Shape(10, 2, 8));
        using var k3Heads = Tensor.Zeros(dev, DType.F32, new Shape(10, 3, 16));
        using var vShort = Tensor.Zeros(dev, DType.F32, new Shape(9, 2, 16));
        using var oWrong = Tensor.Zeros(dev, DType.F32, new Shape(8, 4, 15));
        using var rank2 = Tensor.Zeros(dev, DType.F32, new Shape(8, 64));
        using var maskWrong = Tensor.Zeros(dev, DType.U8, new Shape(8, 9));
        using var keyMaskF32 = Tensor.Zeros(dev, DType.F32, new Shape(10));
        using var biasWrong = Tensor.Zeros(dev, DType.F32, new Shape(10, 8));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, kWrongD, v, o));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, k3Heads, k3Heads, o));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, k, vShort, o));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, k, v, oWrong));
        Assert.Throws<ArgumentException>(() => Attention.Forward(rank2, k, v, o));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, k, v, o, new AttentionOptions { Mask = maskWrong }));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, k, v, o, new AttentionOptions { KeyMask = keyMaskF32 }));
        Assert.Throws<ArgumentException>(() => Attention.Forward(q, k, v, o, new AttentionOptions { Bias = biasWrong }));
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(3, 5));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(3, 6));
        Assert.Throws<ArgumentException>(() => Softmax.Forward(x, y));
    }

    [Fact]
    public void FastExp_is_accurate()
    {
        var x = new float[200_001];
        for (int i = 0; i < x.Length; i++) x[i] = -87f + 175f * i / (x.Length - 1);
        var y = new float[x.Length];
        FastExp.Exp(x, y);
        double worst = 0;
        for (int i = 0; i < x.Length; i++)
            worst = Math.Max(worst, Math.Abs(y[i] / Math.Exp(x[i]) - 1));
        Assert.True(worst < 3e-7, $"FastExp max relative error {worst:g3}");
        var special = new float[] { float.NegativeInfinity, -1000f, -88.1f, 0f };
        var ys = new float[special.Length];
        FastExp.Exp(special, ys);
        Assert.Equal([0f, 0f, 0f, 1f], ys);
    }

    // ------------------------------------------------------------------ helpers

    private static void RandomCase(Device dev, AttentionAlgorithm algorithm, int sq, int sk, int hq, int hkv, int d,
        bool causal, bool keyMask, bool mask, bool bias, int seed)
    {
        var rng = new Random(seed);
        var qd = RandomFloats(rng, sq * hq * d, 2f);
        var kd = RandomFloats(rng, sk * hkv * d, 2f);
        var vd = RandomFloats(rng, sk * hkv * d);
        var keyKeep = keyMask ? Enumerable.Range(0, sk).Select(j => (byte)(rng.NextDouble() < 0.8 ? 1 : 0)).ToArray() : null;
        var maskData = mask ? Enumerable.Range(0, sq * sk).Select(_ => (byte)(rng.NextDouble() < 0.7 ? 1 : 0)).ToArray() : null;
        var biasData = bias ? RandomFloats(rng, sq * sk, 3f) : null;
        float scale = 1f / MathF.Sqrt(d);
        var expected = ReferenceF64(qd, kd, vd, sq, sk, hq, hkv, d, scale, causal, keyKeep, maskData, biasData);

        using var q = Tensor.FromArray(dev, qd, sq, hq, d);
        using var k = Tensor.FromArray(dev, kd, sk, hkv, d);
        using var v = Tensor.FromArray(dev, vd, sk, hkv, d);
        using var km = keyKeep is null ? null : Tensor.FromSpan<byte>(dev, keyKeep, new Shape(sk));
        using var m = maskData is null ? null : Tensor.FromSpan<byte>(dev, maskData, new Shape(sq, sk));
        using var b = biasData is null ? null : Tensor.FromArray(dev, biasData, sq, sk);
        using var o = new Guarded(dev, DType.F32, sq, hq, d);
        Attention.Forward(q, k, v, o, new AttentionOptions { Causal = causal, KeyMask = km, Mask = m, Bias = b, Algorithm = algorithm });
        string what = $"random sdpa Sq={sq} Sk={sk} Hq={hq} Hkv={hkv} D={d} ({algorithm}) on {dev.Id}";
        // Float64 reference vs fp32: logits up to |4·4·√D|/√D scale, so relative rounding ~1e-6 of logits ≲ 20.
        Compare.Close(expected, o.ToFloatArray(), Rtol, Atol, what);
        o.AssertIntact(what);
    }

    /// <summary>Float64 attention on [S, H, D] host arrays (bottom-right causal, all-masked rows → 0).</summary>
    private static float[] ReferenceF64(float[] q, float[] k, float[] v, int sq, int sk, int hq, int hkv, int d, float scale,
        bool causal, byte[]? keyKeep, byte[]? mask, float[]? bias)
    {
        var o = new float[sq * hq * d];
        var logits = new double[sk];
        var acc = new double[d];
        int group = hq / hkv;
        for (int h = 0; h < hq; h++)
        {
            int kvh = h / group;
            for (int i = 0; i < sq; i++)
            {
                double max = double.NegativeInfinity;
                for (int j = 0; j < sk; j++)
                {
                    bool ok = (!causal || j <= i + sk - sq) && (keyKeep is null || keyKeep[j] != 0) && (mask is null || mask[i * sk + j] != 0);
                    double s = double.NegativeInfinity;
                    if (ok)
                    {
                        s = 0;
                        for (int c = 0; c < d; c++) s += (double)q[(i * hq + h) * d + c] * k[(j * hkv + kvh) * d + c];
                        s = s * scale + (bias is null ? 0 : bias[i * sk + j]);
                    }
                    logits[j] = s;
                    max = Math.Max(max, s);
                }
                if (double.IsNegativeInfinity(max)) continue;
                Array.Clear(acc);
                double sum = 0;
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

    private static float[] RandomFloats(Random rng, int n, float amplitude = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * amplitude;
        return a;
    }

    /// <summary>A [1, H, S, D] golden as a [S, H, D] tensor (tokens-major, the layout attention takes).</summary>
    private static Tensor LoadShd(Device dev, string name)
    {
        var dims = Golden.Dims(name);
        int h = dims[1], s = dims[2], d = dims[3];
        return Tensor.FromArray(dev, BhsdToShd(Golden.F(name), h, s, d), s, h, d);
    }

    private static float[] BhsdToShd(float[] x, int h, int s, int d)
    {
        var y = new float[x.Length];
        for (int hh = 0; hh < h; hh++)
            for (int ss = 0; ss < s; ss++)
                Array.Copy(x, (hh * s + ss) * d, y, (ss * h + hh) * d, d);
        return y;
    }
}
