using PureFlux.Model.Config;
using PureFlux.Model.Scheduler;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>Sampler behaviour outside the golden step sequences: names, the factory's settings and checks, Heun's
/// call pattern, call ordering, Reset and Dispose.</summary>
public class SamplerTests
{
    private static SchedulerConfig KleinConfig =>
        SchedulerConfig.Load(Path.Combine(Golden.Dir, "model", "scheduler", "scheduler_config.json"));

    [Theory]
    [InlineData("euler", SamplerKind.Euler)]
    [InlineData("dpm++2m", SamplerKind.DpmPP2M)]
    [InlineData("unipc", SamplerKind.UniPC)]
    [InlineData("heun", SamplerKind.Heun)]
    [InlineData(" DPM++2M ", SamplerKind.DpmPP2M)]
    public void Parse_accepts_the_four_names(string name, SamplerKind kind)
    {
        Assert.Equal(kind, Samplers.Parse(name));
        Assert.Equal(name.Trim().ToLowerInvariant(), Samplers.NameOf(kind));
    }

    [Theory]
    [InlineData("dpm")]
    [InlineData("euler_a")]
    [InlineData("dpmpp2m")]
    [InlineData("")]
    public void Parse_rejects_other_names_listing_the_choices_on_one_line(string name)
    {
        var e = Assert.Throws<ArgumentException>(() => Samplers.Parse(name));
        Assert.Contains($"\"{name}\"", e.Message);
        Assert.Contains("euler, dpm++2m, unipc, heun", e.Message);
        Assert.DoesNotContain('\n', e.Message.Split(" (Parameter")[0]);
    }

    [Fact]
    public void Sampler_names_match_the_parser()
    {
        foreach (var kind in Enum.GetValues<SamplerKind>())
        {
            using var s = Samplers.ForKlein(KleinConfig, kind, 4, 256, 256);
            Assert.Equal(Samplers.NameOf(kind), s.Name);
            Assert.Equal(kind, Samplers.Parse(s.Name));
        }
    }

    // The klein settings per kind are exactly the golden cases the pipeline behaviour was recorded with.
    [Theory]
    [InlineData(SamplerKind.Euler, "euler_klein")]
    [InlineData(SamplerKind.DpmPP2M, "dpmpp2m_flow_dynamic")]
    [InlineData(SamplerKind.UniPC, "unipc_flow_dynamic")]
    [InlineData(SamplerKind.Heun, "heun_shift3")]
    public void Klein_settings_are_the_golden_pipeline_configs(SamplerKind kind, string goldenCase)
    {
        Assert.Equal(SamplerGoldenTests.SettingsOf(goldenCase).Settings, SamplerSettings.ForKlein(KleinConfig, kind));
        Assert.Equal(SamplerSettings.ForKlein(KleinConfig, kind), SamplerSettings.ForKlein(KleinConfig, Samplers.NameOf(kind)));
    }

    // 1024×1024 = 4096 tokens, the image_seq_len the golden runs used for mu.
    [Theory]
    [InlineData(SamplerKind.Euler, "euler_klein")]
    [InlineData(SamplerKind.DpmPP2M, "dpmpp2m_flow_dynamic")]
    [InlineData(SamplerKind.UniPC, "unipc_flow_dynamic")]
    [InlineData(SamplerKind.Heun, "heun_shift3")]
    public void ForKlein_computes_mu_like_the_pipeline(SamplerKind kind, string goldenCase)
    {
        using var golden = Samplers.Create(SamplerGoldenTests.SettingsOf(goldenCase).Settings, 9,
            goldenCase == "heun_shift3" ? null : FlowMatchEulerScheduler.ComputeEmpiricalMu(4096, 9));
        using var s = Samplers.ForKlein(KleinConfig, kind, 9, 1024, 1024);
        Assert.Equal(golden.Timesteps, s.Timesteps);
        Assert.Equal(golden.Sigmas, s.Sigmas);
        using var other = Samplers.ForKlein(KleinConfig, kind, 9, 256, 256);
        if (kind != SamplerKind.Heun) Assert.NotEqual(s.Sigmas, other.Sigmas); // mu depends on the size
    }

    [Fact]
    public void Euler_klein_sampler_equals_FlowMatchEulerScheduler()
    {
        var cfg = KleinConfig;
        var reference = FlowMatchEulerScheduler.ForKlein(cfg, 4, 64, 64);
        using var s = Samplers.Create(SamplerSettings.FromSchedulerConfig(cfg), 4, reference.Mu);
        Assert.Equal(reference.Sigmas, s.Sigmas);
        Assert.Equal(reference.Timesteps.Select(t => (double)t), s.Timesteps);
        var dev = Backends.Get("cpu");
        var latents = HostRandom(96, 1);
        using var x = Tensor.FromArray(dev, latents, 96);
        for (int k = 0; k < 4; k++)
        {
            Assert.Equal(reference.TransformerTimestep(k), s.ModelTimestep(k));
            var v = HostRandom(96, 10 + k);
            using var tv = Tensor.FromArray(dev, v, 96);
            reference.Step(k, latents, v);
            s.Step(k, tv, x);
            Assert.Equal(latents, x.ToFloatArray());
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public void Heun_calls_are_2N_minus_1_with_repeated_timesteps(int n)
    {
        var settings = new SamplerSettings { Kind = SamplerKind.Heun, Shift = 3.0 };
        using var heun = Samplers.Create(settings, n, null);
        using var euler = Samplers.Create(settings with { Kind = SamplerKind.Euler, EulerSigmas = EulerSigmasMode.Plain }, n, null);
        Assert.Equal(2, heun.Order);
        Assert.Equal(n, heun.Steps);
        Assert.Equal(2 * n - 1, heun.Calls);
        Assert.Equal(2 * n, heun.Sigmas.Length);
        Assert.Equal(0f, heun.Sigmas[^1]);
        // [t0, t1, t1, …, t_{N−1}, t_{N−1}]: Euler's plain schedule with every value after the first twice.
        var expected = new List<double> { euler.Timesteps[0] };
        for (int j = 1; j < n; j++) { expected.Add(euler.Timesteps[j]); expected.Add(euler.Timesteps[j]); }
        Assert.Equal(expected, heun.Timesteps);
        for (int k = 0; k < heun.Calls; k++)
        {
            Assert.Equal(k / 2, heun.StepOf(k));
            Assert.Equal(heun.Sigmas[k], heun.Sigma(k));
        }
        Assert.Equal(n - 1, heun.StepOf(heun.Calls - 1));
        if (n > 1) Assert.Equal(1, heun.StepOf(2));
    }

    [Fact]
    public void Step_enforces_call_order_and_arguments()
    {
        var dev = Backends.Get("cpu");
        using var s = Samplers.ForKlein(KleinConfig, SamplerKind.UniPC, 4, 256, 256);
        using var x = Tensor.FromArray(dev, HostRandom(32, 2), 4, 8);
        using var v = Tensor.FromArray(dev, HostRandom(32, 3), 4, 8);
        using var wrongShape = Tensor.FromArray(dev, HostRandom(32, 4), 8, 4);
        Assert.Throws<InvalidOperationException>(() => s.Step(1, v, x));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Step(4, v, x));
        Assert.Throws<ArgumentException>(() => s.Step(0, wrongShape, x));
        Assert.Throws<ArgumentException>(() => s.Step(0, x, x));
        s.Step(0, v, x);
        Assert.Throws<InvalidOperationException>(() => s.Step(0, v, x));
        using var wrongShape2 = Tensor.FromArray(dev, HostRandom(32, 5), 8, 4);
        Assert.Throws<ArgumentException>(() => s.Step(1, wrongShape, wrongShape2)); // shape changes mid-run
        Assert.Equal(1, ((SamplerBase)s).NextCall);
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Sigma(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.StepOf(-1));
        s.Dispose();
        Assert.Throws<ObjectDisposedException>(() => s.Step(1, v, x));
    }

    [Fact]
    public void Create_rejects_what_diffusers_rejects_or_we_do_not_support()
    {
        var dpm = SamplerSettings.ForKlein(KleinConfig, SamplerKind.DpmPP2M);
        var unipc = SamplerSettings.ForKlein(KleinConfig, SamplerKind.UniPC);
        // DPM asserts use_dynamic_shifting when mu is passed (so the klein pipeline cannot use a static DPM).
        Assert.Throws<ArgumentException>(() => Samplers.Create(dpm with { UseDynamicShifting = false }, 4, 1.0));
        Assert.Throws<ArgumentException>(() => Samplers.Create(dpm with { TimeShiftType = "linear" }, 4, 1.0));
        Assert.Throws<ArgumentException>(() => Samplers.Create(unipc, 4, null));  // dynamic shifting needs mu
        Assert.Throws<ArgumentException>(() => Samplers.Create(SamplerSettings.FromSchedulerConfig(KleinConfig), 4, null));
        Assert.Throws<NotSupportedException>(() => Samplers.Create(dpm with { SolverOrder = 3 }, 4, 1.0));
        Assert.Throws<NotSupportedException>(() => Samplers.Create(unipc with { FinalSigmasType = "sigma_min" }, 4, 1.0));
        Assert.Throws<NotSupportedException>(() => Samplers.Create(new SamplerSettings { Kind = SamplerKind.Heun, UseDynamicShifting = true }, 4, 1.0));
        Assert.Throws<ArgumentException>(() => Samplers.Create(dpm, 0, 1.0));
        Assert.Throws<ArgumentException>(() => Samplers.Create(dpm with { Shift = 0 }, 4, null));
        // Static DPM without mu is fine (diffusers: set_timesteps(N)); dynamic DPM without mu keeps flow_shift.
        using var a = Samplers.Create(dpm with { UseDynamicShifting = false }, 4, null);
        using var b = Samplers.Create(dpm, 4, null);
        Assert.Equal(a.Sigmas, b.Sigmas);
    }

    /// <summary>Reset forgets the multistep state: a run cut short, then Reset, then a full run gives the same bits as a
    /// fresh sampler (and the golden sequence). A missing reset of the history would take the second-order path at
    /// call 0 or keep Heun's saved derivative.</summary>
    [Theory]
    [InlineData("dpmpp2m_flow_shift3", 9, "cpu")]
    [InlineData("unipc_flow_shift3", 9, "cpu")]
    [InlineData("unipc_flow_dynamic", 20, "ilgpu-cpu")]
    [InlineData("heun_shift3", 4, "cpu")]
    [InlineData("euler_shift3_plain", 4, "ilgpu-cpu")]
    public void Reset_reproduces_the_same_run(string goldenCase, int n, string backend)
    {
        var dev = Backends.Get(backend);
        var (settings, call) = SamplerGoldenTests.SettingsOf(goldenCase);
        double? mu = call == "plain" ? null : FlowMatchEulerScheduler.ComputeEmpiricalMu(4096, n);
        using var fresh = Samplers.Create(settings, n, mu);
        float[] first = RunAll(fresh, dev, fresh.Calls, 20);

        using var s = Samplers.Create(settings, n, mu);
        RunAll(s, dev, 3, 21);          // a partial run with other inputs leaves history behind
        s.Reset();
        Assert.Equal(0, ((SamplerBase)s).NextCall);
        Assert.Equal(first, RunAll(s, dev, s.Calls, 20));
        s.Reset();
        var w = SamplerGoldenTests.RunAndCompare(s, goldenCase, n, dev);
        Assert.True(w.Samples <= 1e-6);
    }

    // N = 1: one first-order step straight to σ = 0, which returns the data prediction x − σ₀·v (DPM, UniPC).
    [Theory]
    [InlineData(SamplerKind.DpmPP2M)]
    [InlineData(SamplerKind.UniPC)]
    [InlineData(SamplerKind.Heun)]
    [InlineData(SamplerKind.Euler)]
    public void One_step_lands_on_the_data_prediction(SamplerKind kind)
    {
        var dev = Backends.Get("cpu");
        using var s = Samplers.ForKlein(KleinConfig, kind, 1, 512, 512);
        Assert.Equal(1, s.Calls);
        var x = HostRandom(64, 5);
        var v = HostRandom(64, 6);
        using var tx = Tensor.FromArray(dev, x, 64);
        using var tv = Tensor.FromArray(dev, v, 64);
        s.Step(0, tv, tx);
        float sigma = s.Sigma(0);
        var expected = x.Zip(v, (a, b) => a - sigma * b).ToArray();
        var got = tx.ToFloatArray();
        Assert.All(got, g => Assert.True(float.IsFinite(g)));
        // Euler/Heun: x + (0 − σ)·v (Heun: the derivative (x − (x − σv))/σ) — equal up to a few ulps.
        Compare.Close(expected, got, 1e-6f, 1e-6f, $"{kind} N=1");
    }

    private static float[] RunAll(ISampler s, Device dev, int calls, int seed)
    {
        using var x = Tensor.FromArray(dev, HostRandom(48, seed), 3, 16);
        for (int k = 0; k < calls; k++)
        {
            using var v = Tensor.FromArray(dev, HostRandom(48, seed * 100 + k), 3, 16);
            s.Step(k, v, x);
        }
        return x.ToFloatArray();
    }

    private static float[] HostRandom(int n, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1))];
    }
}
