using System.Text.Json;
using PureFlux.Model.Config;
using PureFlux.Model.Scheduler;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public class SchedulerTests
{
    private static readonly Lazy<JsonDocument> Doc = new(() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Golden.Dir, "scheduler.json"))));

    private static JsonElement Case(int i) => Doc.Value.RootElement.GetProperty("cases")[i];

    public static TheoryData<int> CaseIndices()
    {
        var d = new TheoryData<int>();
        int n = Doc.Value.RootElement.GetProperty("cases").GetArrayLength();
        for (int i = 0; i < n; i++) d.Add(i);
        return d;
    }

    private static SchedulerConfig KleinConfig =>
        SchedulerConfig.Load(Path.Combine(Golden.Dir, "model", "scheduler", "scheduler_config.json"));

    private static double[] D(JsonElement c, string name) => [.. c.GetProperty(name).EnumerateArray().Select(x => x.GetDouble())];
    private static float[] F(JsonElement c, string name) => [.. D(c, name).Select(x => (float)x)];

    [Fact]
    public void Golden_has_five_cases() => Assert.Equal(5, CaseIndices().Count);

    // Tolerance: none. The file stores float32 values exactly (and mu / the linspace as float64); we repeat
    // diffusers' arithmetic in the same precision and order, so every value must be bit-identical.
    [Theory, MemberData(nameof(CaseIndices))]
    public void Schedule_matches_diffusers_bit_for_bit(int index)
    {
        var c = Case(index);
        int steps = c.GetProperty("num_inference_steps").GetInt32();
        int width = c.GetProperty("width").GetInt32(), height = c.GetProperty("height").GetInt32();

        int seq = FlowMatchEulerScheduler.ImageSeqLen(width, height);
        Assert.Equal(c.GetProperty("image_seq_len").GetInt32(), seq);
        var hw = c.GetProperty("latent_packed_hw");
        Assert.Equal((hw[0].GetInt32(), hw[1].GetInt32()), FlowMatchEulerScheduler.PackedLatentSize(width, height));

        var s = FlowMatchEulerScheduler.ForKlein(KleinConfig, steps, width, height);
        Assert.Equal(c.GetProperty("mu").GetDouble(), s.Mu!.Value);
        Assert.Equal(D(c, "sigmas_linspace_float64"), s.SigmasLinspace);
        Assert.Equal(F(c, "sigmas"), s.Sigmas);
        Assert.Equal(F(c, "timesteps"), s.Timesteps);
        Assert.Equal(F(c, "transformer_timestep_input"), Enumerable.Range(0, steps).Select(s.TransformerTimestep));
        Assert.Equal(F(c, "euler_dt"), Enumerable.Range(0, steps).Select(s.Dt));
        // The transformer multiplies its input by 1000 again (float32) before the sinusoidal embedding.
        Assert.Equal(F(c, "timestep_embedding_input"), Enumerable.Range(0, steps).Select(i => s.TransformerTimestep(i) * 1000f));
    }

    [Fact]
    public void Empirical_mu_uses_only_the_200_step_fit_above_4300_tokens()
    {
        // 128x128 packed tokens = 2048x2048 pixels: mu = a2 * seq + b2, independent of steps.
        double expected = 0.00016927 * 16384 + 0.45666666;
        Assert.Equal(expected, FlowMatchEulerScheduler.ComputeEmpiricalMu(16384, 4));
        Assert.Equal(expected, FlowMatchEulerScheduler.ComputeEmpiricalMu(16384, 50));
        Assert.NotEqual(FlowMatchEulerScheduler.ComputeEmpiricalMu(4096, 4), FlowMatchEulerScheduler.ComputeEmpiricalMu(4096, 50));
    }

    [Fact]
    public void Image_size_rounds_down_to_multiples_of_16()
    {
        Assert.Equal((64, 64), FlowMatchEulerScheduler.PackedLatentSize(1024, 1024));
        Assert.Equal((4, 6), FlowMatchEulerScheduler.PackedLatentSize(100, 70));
        Assert.Throws<ArgumentException>(() => FlowMatchEulerScheduler.PackedLatentSize(8, 64));
    }

    [Fact]
    public void Euler_step_adds_dt_times_prediction_in_float32()
    {
        var s = FlowMatchEulerScheduler.ForKlein(KleinConfig, 4, 256, 256);
        float[] latents = [1f, -2f, 0.5f, 3f, 0.1f];
        float[] pred = [0.3f, 0.7f, -1.1f, 2f, 1e-3f];
        float[] start = (float[])latents.Clone();
        s.Step(1, latents, pred);
        float dt = s.Sigmas[2] - s.Sigmas[1];
        for (int j = 0; j < latents.Length; j++) Assert.Equal(start[j] + dt * pred[j], latents[j]);
        // The last step goes to sigma 0: dt = -sigma[last].
        Assert.Equal(-s.Sigmas[3], s.Dt(3));
        Assert.Throws<ArgumentException>(() => s.Step(0, latents, pred.AsSpan(0, 4)));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.Dt(4));
    }

    // Tolerance: none. The 4-step 64x64 pipeline run: our schedule and Euler step reproduce each step's
    // timestep input and latents_after from that step's transformer input and noise prediction exactly.
    [Fact]
    public void Euler_steps_reproduce_the_pipeline_run()
    {
        using var f = SafetensorsFile.Open(Path.Combine(Golden.Dir, "pipeline_h64_w64.safetensors"));
        var s = FlowMatchEulerScheduler.ForKlein(KleinConfig, 4, 64, 64);
        Assert.Equal(f.ReadFloats("sigmas"), s.Sigmas);
        Assert.Equal(f.ReadFloats("timesteps"), s.Timesteps);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(f.ReadFloats($"step.{i}.transformer_in.timestep"), new[] { s.TransformerTimestep(i) });
            float[] latents = f.ReadFloats($"step.{i}.transformer_in.hidden_states");
            s.Step(i, latents, f.ReadFloats($"step.{i}.noise_pred"));
            Assert.Equal(f.ReadFloats($"step.{i}.latents_after"), latents);
        }
    }

    [Fact]
    public void Create_rejects_bad_arguments()
    {
        Assert.Throws<ArgumentException>(() => FlowMatchEulerScheduler.Create(KleinConfig, 4, null)); // dynamic shifting needs mu
        Assert.Throws<ArgumentException>(() => FlowMatchEulerScheduler.Create(KleinConfig, 0, 1.0));
        Assert.Throws<NotSupportedException>(() => FlowMatchEulerScheduler.Create(KleinConfig with { UseKarrasSigmas = true }, 4, 1.0));
    }

    [Fact]
    public void One_step_with_a_terminal_shift_is_the_finite_schedule_from_pure_noise()
    {
        // shift_terminal stretches by (1 − σ_last) / (1 − terminal), which is 0 when the only σ is 1 (Qwen-Image at one
        // step): the schedule stays [1, 0] instead of diffusers' 0 / 0 NaNs; with two steps the stretch still applies.
        var qwenLike = KleinConfig with { ShiftTerminal = 0.02 };
        var one = FlowMatchEulerScheduler.Create(qwenLike, 1, 0.5);
        Assert.Equal(new[] { 1f, 0f }, one.Sigmas);
        var two = FlowMatchEulerScheduler.Create(qwenLike, 2, 0.5);
        Assert.Equal(0.02f, two.Sigmas[1], 1e-6f);
    }

    [Fact]
    public void Static_shift_without_dynamic_shifting()
    {
        var cfg = KleinConfig with { UseDynamicShifting = false, Shift = 3.0 };
        var s = FlowMatchEulerScheduler.Create(cfg, 2, null);
        // linspace(1, 0.5, 2) = [1, 0.5]; 3s / (1 + 2s) = [1, 0.6]
        Assert.Equal(1f, s.Sigmas[0]);
        Assert.Equal(3f * 0.5f / (1f + 2f * 0.5f), s.Sigmas[1]);
        Assert.Equal(0f, s.Sigmas[2]);
        Assert.Null(s.Mu);
    }
}
