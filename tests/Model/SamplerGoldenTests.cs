using System.Text.Json;
using PureFlux.Model.Config;
using PureFlux.Model.Scheduler;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// The samplers against golden/sampling/schedulers.* (diffusers 0.40 on CPU, float32): 8 scheduler cases × N ∈ {4, 9,
/// 20, 28}. Each case's settings are built from the constructor kwargs recorded in schedulers.json, and set_timesteps
/// is called the way the file says (klein: custom sigmas + mu, mu: mu only, plain: N only).
/// </summary>
public class SamplerGoldenTests(ITestOutputHelper output)
{
    public static readonly string[] Cases =
    [
        "euler_klein", "euler_shift3_klein", "euler_shift3_plain", "dpmpp2m_flow_shift3", "dpmpp2m_flow_dynamic",
        "unipc_flow_shift3", "unipc_flow_dynamic", "heun_shift3",
    ];
    public static readonly int[] StepCounts = [4, 9, 20, 28];

    // ≤ 1e-6 of the expected tensor's max |value| (max abs diff / max abs). Our steps repeat torch's float32 roundings
    // op for op, so most of the margin is for 1-ulp differences of float32 log/exp/expm1 and LAPACK's 2×2 solve.
    private const double RelTol = 1e-6;

    private static string Dir => Path.Combine(Golden.Dir, "sampling");
    private static readonly Lazy<JsonDocument> Json = new(() => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Dir, "schedulers.json"))));
    private static readonly Lazy<SafetensorsFile> File_ = new(() => SafetensorsFile.Open(Path.Combine(Dir, "schedulers.safetensors")));
    private static SafetensorsFile G => File_.Value;

    public static TheoryData<string, int> CaseRows()
    {
        var d = new TheoryData<string, int>();
        foreach (var c in Cases) foreach (int n in StepCounts) d.Add(c, n);
        return d;
    }

    public static TheoryData<string, int, string> CaseBackendRows()
    {
        var d = new TheoryData<string, int, string>();
        foreach (var c in Cases) foreach (int n in StepCounts) foreach (var b in Backends.Ids) d.Add(c, n, b);
        return d;
    }

    private static JsonElement Run(string c, int n) => Json.Value.RootElement.GetProperty("runs").GetProperty($"{c}.n{n}");

    /// <summary>SamplerSettings from the case's recorded constructor kwargs; every key is either mapped or checked to be
    /// the value our sampler hard-codes, so a golden case we would silently misread fails here.</summary>
    internal static (SamplerSettings Settings, string Call) SettingsOf(string c)
    {
        var e = Json.Value.RootElement.GetProperty("cases_constructor_kwargs").GetProperty(c);
        string cls = e.GetProperty("class").GetString()!;
        var kw = e.GetProperty("kwargs");
        var s = new SamplerSettings
        {
            Kind = cls switch
            {
                "FlowMatchEulerDiscreteScheduler" => SamplerKind.Euler,
                "DPMSolverMultistepScheduler" => SamplerKind.DpmPP2M,
                "UniPCMultistepScheduler" => SamplerKind.UniPC,
                "FlowMatchHeunDiscreteScheduler" => SamplerKind.Heun,
                _ => throw new InvalidDataException(cls),
            },
        };
        foreach (var p in kw.EnumerateObject())
        {
            var v = p.Value;
            s = p.Name switch
            {
                "num_train_timesteps" => s with { NumTrainTimesteps = v.GetInt32() },
                "shift" or "flow_shift" => s with { Shift = v.GetDouble() },
                "use_dynamic_shifting" => s with { UseDynamicShifting = v.GetBoolean() },
                "time_shift_type" => s with { TimeShiftType = v.GetString()! },
                "shift_terminal" => s with { ShiftTerminal = v.ValueKind == JsonValueKind.Null ? null : v.GetDouble() },
                "solver_order" => s with { SolverOrder = v.GetInt32() },
                "lower_order_final" => s with { LowerOrderFinal = v.GetBoolean() },
                "final_sigmas_type" => s with { FinalSigmasType = v.GetString()! },
                // Values the samplers implement and do not take as settings: must be exactly these.
                _ => Expect(s, p.Name, v.ToString()),
            };
        }
        string call = e.GetProperty("set_timesteps").GetString()!;
        if (s.Kind == SamplerKind.Euler) s = s with { EulerSigmas = call == "plain" ? EulerSigmasMode.Plain : EulerSigmasMode.Klein };
        return (s, call);
    }

    private static SamplerSettings Expect(SamplerSettings s, string key, string value)
    {
        string? fixedValue = key switch
        {
            "base_shift" => "0.5", "max_shift" => "1.15", "base_image_seq_len" => "256", "max_image_seq_len" => "4096",
            "invert_sigmas" or "use_karras_sigmas" or "use_exponential_sigmas" or "use_beta_sigmas" or "stochastic_sampling"
                or "euler_at_final" => "False",
            "prediction_type" => "flow_prediction", "algorithm_type" => "dpmsolver++", "solver_type" => s.Kind == SamplerKind.UniPC ? "bh2" : "midpoint",
            "use_flow_sigmas" or "predict_x0" => "True",
            "disable_corrector" => "[]",
            _ => null,
        };
        Assert.True(fixedValue == value, $"golden kwarg {key} = {value}: not what the {s.Kind} sampler implements ({fixedValue ?? "unknown key"})");
        return s;
    }

    private static ISampler Create(string c, int n)
    {
        var (s, call) = SettingsOf(c);
        double? mu = call == "plain" ? null : Run(c, n).GetProperty("mu").GetDouble();
        return Samplers.Create(s, n, mu);
    }

    [Fact]
    public void Golden_has_the_expected_cases_and_runs()
    {
        var runs = Json.Value.RootElement.GetProperty("runs").EnumerateObject().Select(p => p.Name).ToHashSet();
        Assert.Equal(Cases.Length * StepCounts.Length, runs.Count);
        foreach (var c in Cases) foreach (int n in StepCounts) Assert.Contains($"{c}.n{n}", runs);
    }

    // Tolerance: none. Timesteps (float32 or int64) and sigmas (float32) are bit-identical to diffusers'.
    [Theory, MemberData(nameof(CaseRows))]
    public void Schedule_matches_diffusers_exactly(string c, int n)
    {
        using var s = Create(c, n);
        var run = Run(c, n);
        int calls = run.GetProperty("num_step_calls").GetInt32();
        Assert.Equal(calls, s.Calls);
        Assert.Equal(n, s.Steps);
        Assert.Equal(run.GetProperty("order").GetInt32(), s.Order);
        string prefix = $"{c}.n{n}";
        var tsEntry = G.Entry($"{prefix}.timesteps");
        if (run.GetProperty("timesteps_dtype").GetString() == "int64")
        {
            Assert.Equal(DType.I64, tsEntry.DType);
            long[] expected = G.ReadInt64($"{prefix}.timesteps");
            Assert.Equal(expected, s.Timesteps.Select(t => checked((long)t)).ToArray());
            Assert.All(s.Timesteps, t => Assert.Equal(Math.Floor(t), t));
        }
        else
        {
            Assert.Equal(DType.F32, tsEntry.DType);
            float[] expected = G.ReadFloats($"{prefix}.timesteps");
            Assert.Equal(expected, s.Timesteps.Select(t => (float)t).ToArray());
            Assert.All(s.Timesteps, t => Assert.Equal((double)(float)t, t));
        }
        Assert.Equal(G.ReadFloats($"{prefix}.sigmas"), s.Sigmas);
        Assert.Equal(calls + 1, s.Sigmas.Length);
        for (int k = 0; k < calls; k++)
        {
            Assert.Equal(s.Sigmas[k], s.Sigma(k));
            Assert.Equal((float)s.Timesteps[k] / 1000f, s.ModelTimestep(k));
        }
    }

    // DPM with mu overwrites flow_shift with np.exp(mu); the run records that value: Math.Exp must agree to the bit.
    [Theory, MemberData(nameof(CaseRows))]
    public void Dynamic_flow_shift_is_exp_mu(string c, int n)
    {
        var run = Run(c, n);
        if (!run.GetProperty("config_after_set_timesteps").TryGetProperty("flow_shift", out var fs) || SettingsOf(c).Call != "mu" || SettingsOf(c).Settings.Kind != SamplerKind.DpmPP2M)
            return; // only dpmpp2m_flow_dynamic rows assert (the others have no overwritten flow_shift)
        Assert.Equal(fs.GetDouble(), Math.Exp(run.GetProperty("mu").GetDouble()));
    }

    /// <summary>The step loop on the recorded sample and model outputs; every call's sample, and the x0 prediction /
    /// UniPC corrected sample where stored, within <see cref="RelTol"/>.</summary>
    [Theory, MemberData(nameof(CaseBackendRows))]
    public void Steps_reproduce_diffusers(string c, int n, string backend)
    {
        var dev = Backends.Get(backend);
        using var s = Create(c, n);
        var worst = RunAndCompare(s, c, n, dev);
        output.WriteLine($"{c} N={n} on {backend}: max rel error samples {worst.Samples:g3}, x0 {worst.X0:g3}, corrected {worst.Corrected:g3}; bit-exact calls {worst.ExactCalls}/{s.Calls}");
        // Euler and Heun use only products, sums and true divisions by float32 scalars that are themselves exact: they
        // reproduce diffusers bit for bit (DPM/UniPC scalars go through float32 log/exp/expm1, where libm and torch's
        // vectorised versions may differ by an ulp).
        if (s is EulerSampler or HeunSampler) Assert.Equal(s.Calls, worst.ExactCalls);
    }

    internal record struct Worst(double Samples, double X0, double Corrected, int ExactCalls);

    internal static Worst RunAndCompare(ISampler s, string c, int n, Device dev)
    {
        string prefix = $"{c}.n{n}";
        int size = 12 * 16;
        float[] outputs = G.ReadFloats($"inputs.n{n}.model_outputs");
        Assert.Equal(2 * n * size, outputs.Length);
        float[] samples = G.ReadFloats($"{prefix}.samples");
        Assert.Equal(s.Calls * size, samples.Length);
        float[]? x0 = G.Contains($"{prefix}.x0_pred") ? G.ReadFloats($"{prefix}.x0_pred") : null;
        float[]? corrected = G.Contains($"{prefix}.corrected_sample") ? G.ReadFloats($"{prefix}.corrected_sample") : null;
        Assert.Equal(s is DpmSolverMultistepSampler or UniPCSampler, x0 is not null);
        Assert.Equal(s is UniPCSampler, corrected is not null);

        using var sample = Tensor.FromArray(dev, G.ReadFloats($"inputs.n{n}.sample"), 1, 12, 16);
        using var v = Tensor.Empty(dev, DType.F32, 1, 12, 16);
        var w = new Worst();
        for (int k = 0; k < s.Calls; k++)
        {
            v.CopyFrom<float>(outputs.AsSpan(k * size, size));
            s.Step(k, v, sample);
            float[] got = sample.ToFloatArray();
            var expected = samples.AsSpan(k * size, size);
            w.Samples = Math.Max(w.Samples, Check(expected, got, $"{prefix} samples[{k}]"));
            if (expected.SequenceEqual(got)) w.ExactCalls++;
            if (x0 is not null)
            {
                var den = s switch { DpmSolverMultistepSampler d => d.LastDenoised, UniPCSampler u => u.LastDenoised, _ => null };
                Assert.NotNull(den);
                w.X0 = Math.Max(w.X0, Check(x0.AsSpan(k * size, size), den.ToFloatArray(), $"{prefix} x0_pred[{k}]"));
            }
            if (corrected is not null)
            {
                var u = (UniPCSampler)s;
                if (k == 0) Assert.Null(u.LastCorrected);
                else w.Corrected = Math.Max(w.Corrected, Check(corrected.AsSpan((k - 1) * size, size), u.LastCorrected!.ToFloatArray(), $"{prefix} corrected_sample[{k - 1}]"));
            }
        }
        return w;
    }

    private static double Check(ReadOnlySpan<float> expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.All(actual, a => Assert.True(float.IsFinite(a), $"{what}: non-finite value"));
        double err = Compare.RelMaxError(expected, actual);
        Assert.True(err <= RelTol, $"{what}: max |diff| / max |expected| = {err:g3} > {RelTol:g1}");
        return err;
    }
}
