using PureFlux.Model.Engine;
using PureFlux.Model.Flux1;
using PureFlux.Model.Image;
using PureFlux.Model.Scheduler;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// Image-to-image (<c>--init-image</c>, <c>--strength</c>) with every sampler on a tiny random FLUX.1 [dev] snapshot:
/// the sampler runs the tail of its schedule from t_start·order as a fresh sampler (diffusers' set_begin_index after
/// set_timesteps), the start latents are σ·noise + (1 − σ)·z at the tail's first σ. Euler's numerics are pinned by the
/// golden img2img pipeline (<see cref="Flux1GoldenTests"/>).
/// </summary>
public class Flux1ImageToImageTests
{
    private static readonly Lazy<string> Snapshot = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-flux1-img2img-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model_index.json"))) Flux1RandomSnapshot.Write(dir, Flux1Preset.TinyDev, 11);
        return dir;
    });

    public static TheoryData<SamplerKind> Kinds() => [SamplerKind.Euler, SamplerKind.DpmPP2M, SamplerKind.UniPC, SamplerKind.Heun];

    private const int Size = 32, LatentSide = Size / 8, Channels = 16;

    private static RgbImage Gradient()
    {
        var rgb = new byte[Size * Size * 3];
        for (int y = 0; y < Size; y++)
            for (int x = 0; x < Size; x++)
            {
                int i = (y * Size + x) * 3;
                (rgb[i], rgb[i + 1], rgb[i + 2]) = ((byte)(x * 255 / Size), (byte)(y * 255 / Size), 200);
            }
        return new RgbImage(rgb, Size, Size);
    }

    /// <summary>Standard normal values (Box–Muller) for a [1, 16, 4, 4] latent.</summary>
    private static float[] Gaussian(int seed)
    {
        var r = new Random(seed);
        var a = new float[Channels * LatentSide * LatentSide];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()));
        return a;
    }

    private sealed record Run(GenerationResult Result, float[] ImageLatents, float[] StartLatents, List<(int Step, float Sigma, float Timestep)> Calls);

    /// <summary>Generates with the given noise [1, 16, 4, 4] (and posterior ε for img2img); records z, the start latents and each call.</summary>
    private static Run Generate(IDiffusionModel model, Device dev, SamplerKind kind, float[] noise, int steps, double? strength, float[]? eps = null)
    {
        using var n = Tensor.FromSpan<float>(dev, noise, new Shape(1, Channels, LatentSide, LatentSide));
        using var e = eps is null ? null : Tensor.FromSpan<float>(dev, eps, new Shape(1, Channels, LatentSide, LatentSide));
        float[] z = [], start = [];
        var calls = new List<(int, float, float)>();
        var result = GenerationEngine.Run(model, new GenerationJob
        {
            Prompts = ["a red fox"], Width = Size, Height = Size, Steps = steps, Sampler = kind, Noise = n,
            InitImage = strength is null ? null : Gradient(), Strength = strength ?? 0.6, InitImagePosteriorNoise = e,
        }, new GenerationHooks
        {
            Trace = (name, t) =>
            {
                if (name == "img2img.image_latents") z = t.ToFloatArray();
                if (name == "latents.initial_packed") start = t.ToFloatArray();
            },
            OnStep = r => calls.Add((r.Step, r.Sigma, r.Timestep)),
        });
        return new Run(result, z, start, calls);
    }

    /// <summary>σ·noise + (1 − σ)·z in float32, each product rounded, then the sum (the engine's scale_noise).</summary>
    private static float[] Noised(float sigma, float[] noise, float[] z) =>
        noise.Select((v, i) => sigma * v + (1f - sigma) * z[i]).ToArray();

    /// <summary>
    /// Strength 1 runs the whole schedule from call 0 with a fresh sampler, so it is text-to-image from the start latents
    /// σ₀·noise + (1 − σ₀)·z. Euler and Heun start at σ₀ = 1 exactly (shifted linspace from 1), so that is the noise itself
    /// and img2img equals text-to-image with the same noise bit for bit. DPM-Solver++ and UniPC use diffusers' flow sigmas,
    /// 1 − linspace(1, 1/T, N + 1) shifted, whose first value is shift(1 − 1/1000) &lt; 1: their strength-1 start keeps
    /// (1 − σ₀)·z of the image, so the test compares them with text-to-image from exactly those latents.
    /// </summary>
    [Theory, MemberData(nameof(Kinds))]
    public void Img2img_at_strength_1_is_text_to_image_from_the_same_start(SamplerKind kind)
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshot.Value, cpu);
        var noise = Gaussian(1);
        var img2img = Generate(model, cpu, kind, noise, steps: 3, strength: 1.0, eps: Gaussian(2));
        using var full = model.CreateSampler(kind, 3, model.Layout(Size, Size));
        float sigma0 = full.Sigma(0);
        if (kind is SamplerKind.Euler or SamplerKind.Heun) Assert.Equal(1f, sigma0);
        else Assert.True(sigma0 is > 0.99f and < 1f, $"{kind}: σ₀ = {sigma0}; diffusers' flow sigmas start below 1");

        var start = Noised(sigma0, noise, img2img.ImageLatents);
        var text2img = Generate(model, cpu, kind, start, steps: 3, strength: null);
        Assert.Equal(text2img.StartLatents, img2img.StartLatents);
        Assert.Equal(full.Calls, img2img.Calls.Count);
        Assert.Equal(text2img.Result.Decoded, img2img.Result.Decoded);
        if (kind is SamplerKind.Euler or SamplerKind.Heun)
            Assert.Equal(text2img.Result.Decoded, Generate(model, cpu, kind, noise, steps: 3, strength: null).Result.Decoded);
    }

    /// <summary>
    /// Strength 0.6 of 5 steps: t_start = int(5 − 3.0) = 2, so steps 2, 3, 4 run — 3 model calls (Heun 2·3 − 1 = 5, from
    /// call 2·2 = 4 of its 9), on exactly the full schedule's timesteps from t_start·order, starting from σ[t_start·order].
    /// </summary>
    [Theory, MemberData(nameof(Kinds))]
    public void Img2img_at_strength_0_6_runs_the_tail_of_the_schedule(SamplerKind kind)
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Snapshot.Value, cpu);
        var noise = Gaussian(3);
        var run = Generate(model, cpu, kind, noise, steps: 5, strength: 0.6, eps: Gaussian(4));
        using var full = model.CreateSampler(kind, 5, model.Layout(Size, Size));
        int first = 2 * full.Order;
        Assert.Equal(kind == SamplerKind.Heun ? 5 : 3, run.Calls.Count);
        Assert.Equal(Enumerable.Range(first, full.Calls - first).Select(full.Timestep), run.Calls.Select(c => c.Timestep));
        Assert.Equal(Enumerable.Range(first, full.Calls - first).Select(full.Sigma), run.Calls.Select(c => c.Sigma));
        Assert.Equal(kind == SamplerKind.Heun ? new[] { 0, 0, 1, 1, 2 } : new[] { 0, 1, 2 }, run.Calls.Select(c => c.Step)); // steps of the tail
        // The start latents are noised at the tail's first σ (not σ₀ of the full schedule).
        var packed = model.PackNoise(model.Layout(Size, Size), Tensor.FromSpan<float>(cpu, Noised(full.Sigma(first), noise, run.ImageLatents), new Shape(1, Channels, LatentSide, LatentSide)));
        using (packed) Assert.Equal(packed.ToFloatArray(), run.StartLatents);
    }

    /// <summary>
    /// The multistep tail starts with no history: its first call is the first-order update from that call's own x0,
    /// as diffusers' schedulers do after set_timesteps + set_begin_index (lower_order_nums 0; UniPC: no last_sample, so no
    /// corrector). Checked against the host formula x' = (σ₁/σ₀)·x − α₁·(e^{−h} − 1)·x0, x0 = x − σ₀·v, h = λ₁ − λ₀,
    /// λ = log(1 − σ) − log σ; the full sampler at the same call (second order, with history) must differ from it.
    /// </summary>
    [Theory]
    [InlineData(SamplerKind.DpmPP2M)]
    [InlineData(SamplerKind.UniPC)]
    public void A_multistep_tail_starts_first_order_with_no_history(SamplerKind kind)
    {
        using var cpu = new CpuDevice();
        var settings = new SamplerSettings { Kind = kind, Shift = 3.0 };
        using var full = Samplers.Create(settings, 6, null);
        const int start = 3, n = 64;
        var rng = new Random(5);
        float[] Rand() => Enumerable.Range(0, n).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var x = Rand();
        var v = Rand();

        using var tail = ImageToImage.Tail(full, start);
        Assert.Equal((3, full.Calls - start), (tail.Steps, tail.Calls));
        using var xt = Tensor.FromSpan<float>(cpu, x, new Shape(n));
        using var vt = Tensor.FromSpan<float>(cpu, v, new Shape(n));
        tail.Step(0, vt, xt);
        var got = xt.ToFloatArray();

        float s0 = full.Sigma(start), s1 = full.Sigma(start + 1), a1 = 1f - s1;
        double h = (Math.Log(1 - s1) - Math.Log(s1)) - (Math.Log(1 - s0) - Math.Log(s0));
        var expected = x.Select((xi, i) => (double)s1 / s0 * xi - a1 * (Math.Exp(-h) - 1) * (xi - s0 * v[i])).Select(d => (float)d).ToArray();
        Compare.Close(expected, got, 2e-6f, 2e-6f, $"{kind} tail call 0 (first order)");

        // The full schedule reaches the same call with history (arbitrary earlier outputs): second order, different.
        using var xf = Tensor.FromSpan<float>(cpu, Rand(), new Shape(n));
        for (int call = 0; call < start; call++)
        {
            using var earlier = Tensor.FromSpan<float>(cpu, Rand(), new Shape(n));
            full.Step(call, earlier, xf);
        }
        xf.CopyFrom<float>(x);
        full.Step(start, vt, xf);
        Assert.True(Compare.RelMaxError(expected, xf.ToFloatArray()) > 1e-3, $"{kind}: the full sampler's call {start} should use its history");
    }
}
