using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

public class LatentTests
{
    // ------------------------------------------------------------------ patchify / unpatchify / pack / unpack

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Patchify_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "patchify.x");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("patchify.out"));
        Latents.Patchify(x, y);
        // Data movement only: exact.
        Compare.Close(Golden.F("patchify.out"), y.ToFloatArray(), 0f, 0f, $"patchify on {backend}");
        y.AssertIntact($"patchify on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Unpatchify_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        // unpatchify.out == patchify.x, computed from patchify.out (manifest notes).
        using var x = Golden.Load(dev, "patchify.out");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("unpatchify.out"));
        Latents.Unpatchify(x, y);
        Compare.Close(Golden.F("unpatchify.out"), y.ToFloatArray(), 0f, 0f, $"unpatchify on {backend}");
        y.AssertIntact($"unpatchify on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Pack_matches_golden_and_unpack_inverts_it(string backend)
    {
        var dev = Backends.Get(backend);
        // pack.out is the pack of patchify.out ([1, 128, 3, 5] → [1, 15, 128]).
        using var x = Golden.Load(dev, "patchify.out");
        using var packed = new Guarded(dev, DType.F32, Golden.Dims("pack.out"));
        Latents.Pack(x, packed);
        Compare.Close(Golden.F("pack.out"), packed.ToFloatArray(), 0f, 0f, $"pack on {backend}");
        packed.AssertIntact($"pack on {backend}");

        using var unpacked = new Guarded(dev, DType.F32, Golden.Dims("patchify.out"));
        Latents.Unpack(packed, unpacked);
        Compare.Close(Golden.F("patchify.out"), unpacked.ToFloatArray(), 0f, 0f, $"unpack on {backend}");
        unpacked.AssertIntact($"unpack on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Latent_layouts_match_host_reference_at_odd_sizes(string backend)
    {
        var dev = Backends.Get(backend);
        const int c = 3, h = 10, w = 14; // patchified: [12, 5, 7]
        var xs = ConvTests.RandomValues(new Random(9), c * h * w);
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var p = new Guarded(dev, DType.F32, 4 * c, h / 2, w / 2);
        Latents.Patchify(x, p);
        var expectedP = new float[xs.Length];
        for (int ch = 0; ch < c; ch++)
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                    for (int i = 0; i < h / 2; i++)
                        for (int j = 0; j < w / 2; j++)
                            expectedP[((ch * 4 + dy * 2 + dx) * (h / 2) + i) * (w / 2) + j] = xs[(ch * h + 2 * i + dy) * w + 2 * j + dx];
        Compare.Close(expectedP, p.ToFloatArray(), 0f, 0f, $"patchify odd on {backend}");
        p.AssertIntact($"patchify odd on {backend}");

        using var tokens = new Guarded(dev, DType.F32, 1, (h / 2) * (w / 2), 4 * c);
        Latents.Pack(p, tokens);
        var expectedT = new float[xs.Length];
        for (int ch = 0; ch < 4 * c; ch++)
            for (int t = 0; t < (h / 2) * (w / 2); t++)
                expectedT[t * 4 * c + ch] = expectedP[ch * (h / 2) * (w / 2) + t];
        Compare.Close(expectedT, tokens.ToFloatArray(), 0f, 0f, $"pack odd on {backend}");
        tokens.AssertIntact($"pack odd on {backend}");

        using var back = new Guarded(dev, DType.F32, 4 * c, h / 2, w / 2);
        Latents.Unpack(tokens, back);
        using var full = new Guarded(dev, DType.F32, 1, c, h, w);
        Latents.Unpatchify(back, full);
        Compare.Close(xs, full.ToFloatArray(), 0f, 0f, $"unpack+unpatchify round trip on {backend}");
        back.AssertIntact($"unpack odd on {backend}");
        full.AssertIntact($"unpatchify odd on {backend}");
    }

    [Fact]
    public void Latents_reject_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var odd = Tensor.Zeros(dev, DType.F32, new Shape(2, 5, 6));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(8, 2, 3));
        Assert.Contains("even", Assert.Throws<ArgumentException>(() => Latents.Patchify(odd, y)).Message);
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(2, 4, 6));
        using var yWrong = Tensor.Zeros(dev, DType.F32, new Shape(8, 3, 2));
        Assert.Contains("expected [8, 2, 3]", Assert.Throws<ArgumentException>(() => Latents.Patchify(x, yWrong)).Message);
        using var c6 = Tensor.Zeros(dev, DType.F32, new Shape(6, 2, 3));
        using var u = Tensor.Zeros(dev, DType.F32, new Shape(1, 4, 6));
        Assert.Contains("multiple of 4", Assert.Throws<ArgumentException>(() => Latents.Unpatchify(c6, u)).Message);
        using var tokens = Tensor.Zeros(dev, DType.F32, new Shape(5, 8));
        Assert.Contains("expected [6, 8]", Assert.Throws<ArgumentException>(() => Latents.Pack(y, tokens)).Message);
        Assert.Contains("expected [6, 8]", Assert.Throws<ArgumentException>(() => Latents.Unpack(tokens, y)).Message);
        using var batch2 = Tensor.Zeros(dev, DType.F32, new Shape(2, 8, 2, 3));
        Assert.Contains("batch 1", Assert.Throws<ArgumentException>(() => Latents.Pack(batch2, tokens)).Message);
    }

    // ------------------------------------------------------------------ BatchNorm (de)normalise

    // One subtract/divide or multiply/add per value in the same order as PyTorch; the only freedom is FMA
    // contraction on GPUs (≤ 1 ulp), so 1e-6 relative + 1e-6 absolute (values are O(1..5)).
    private const float BnRtol = 1e-6f, BnAtol = 1e-6f;

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void BatchNorm_denormalize_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Golden.Load(dev, "bn_denorm.x");
        using var mean = Golden.Load(dev, "bn_denorm.running_mean");
        using var variance = Golden.Load(dev, "bn_denorm.running_var");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("bn_denorm.out"));
        BatchNorm.Denormalize(x, mean, variance, y, 1e-4f);
        Compare.Close(Golden.F("bn_denorm.out"), y.ToFloatArray(), BnRtol, BnAtol, $"bn_denorm on {backend}");
        y.AssertIntact($"bn_denorm on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void BatchNorm_normalize_matches_golden(string backend)
    {
        var dev = Backends.Get(backend);
        // bn_norm.out normalises bn_denorm.x with the same running statistics.
        using var x = Golden.Load(dev, "bn_denorm.x");
        using var mean = Golden.Load(dev, "bn_denorm.running_mean");
        using var variance = Golden.Load(dev, "bn_denorm.running_var");
        using var y = new Guarded(dev, DType.F32, Golden.Dims("bn_norm.out"));
        BatchNorm.Normalize(x, mean, variance, y, 1e-4f);
        Compare.Close(Golden.F("bn_norm.out"), y.ToFloatArray(), BnRtol, BnAtol, $"bn_norm on {backend}");
        y.AssertIntact($"bn_norm on {backend}");
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void BatchNorm_round_trip_in_place(string backend)
    {
        var dev = Backends.Get(backend);
        const int c = 5, h = 3, w = 7;
        var rng = new Random(3);
        var xs = ConvTests.RandomValues(rng, c * h * w);
        var means = ConvTests.RandomValues(rng, c);
        var vars = Array.ConvertAll(ConvTests.RandomValues(rng, c), v => v + 1.5f);
        using var x = Tensor.FromArray(dev, xs, c, h, w);
        using var mean = Tensor.FromArray(dev, means, c);
        using var variance = Tensor.FromArray(dev, vars, c);
        BatchNorm.Normalize(x, mean, variance, x, 1e-4f);
        var normed = x.ToFloatArray();
        for (int i = 0; i < xs.Length; i++)
        {
            double e = (xs[i] - means[i / (h * w)]) / Math.Sqrt(vars[i / (h * w)] + 1e-4);
            Assert.True(Math.Abs(normed[i] - e) <= 1e-6 + 1e-6 * Math.Abs(e), $"normalize {i}: {normed[i]} vs {e} on {backend}");
        }
        BatchNorm.Denormalize(x, mean, variance, x, 1e-4f);
        // Two roundings each way: within a few ulp of the original.
        Compare.Close(xs, x.ToFloatArray(), 1e-6f, 1e-6f, $"bn round trip on {backend}");
    }

    [Fact]
    public void BatchNorm_rejects_bad_shapes()
    {
        var dev = Backends.Get("cpu");
        using var x = Tensor.Zeros(dev, DType.F32, new Shape(4, 2, 2));
        using var m3 = Tensor.Zeros(dev, DType.F32, new Shape(3));
        using var m4 = Tensor.Zeros(dev, DType.F32, new Shape(4));
        using var y = Tensor.Zeros(dev, DType.F32, new Shape(4, 2, 3));
        Assert.Contains("mean", Assert.Throws<ArgumentException>(() => BatchNorm.Normalize(x, m3, m4, x, 1e-4f)).Message);
        Assert.Contains("y", Assert.Throws<ArgumentException>(() => BatchNorm.Denormalize(x, m4, m4, y, 1e-4f)).Message);
    }
}
