using System.Text.Json;
using PureFlux.Model.Engine;
using PureFlux.Model.Experiments;
using PureFlux.Model.Layers;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary><c>pureflux experiment</c>: the alternation, the statistics, the switches, and the command end to end.</summary>
public class ExperimentTests
{
    // ---------------------------------------------------------------- harness and statistics

    [Fact]
    public void Schedule_alternates_arms_within_each_repetition()
    {
        Assert.Equal([(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)], Experiment.Schedule(3, 2));
    }

    [Fact]
    public void Measure_runs_arms_alternately_captures_repetition_zero_and_pairs_the_ratio()
    {
        var plan = new ExperimentPlan(new GenerationJob { Prompts = ["p"], Width = 32, Height = 32, Steps = 2 }, SwitchSet.Empty,
            [new ExperimentVariant("half", SwitchSet.Parse("steps=1")), new ExperimentVariant("same", SwitchSet.Parse("rope-cache=off"))], Repetitions: 3)
        { Warmup = true };
        var calls = new List<string>();
        var warm = new List<string>();
        // Each repetition r runs on a machine that is (r + 1)× slower: a drift the paired ratio must cancel.
        int[] rep = new int[3];
        RunOutcome Fake(ExperimentVariant arm, RunSettings s, bool capture)
        {
            int a = arm.Name switch { "baseline" => 0, "half" => 1, _ => 2 };
            int r = rep[a]++;
            calls.Add($"{arm.Name}/{r}/{capture}");
            double slow = r + 1, total = (arm.Name == "half" ? 5 : 10) * slow;
            Assert.Equal(arm.Name == "half" ? 1 : 2, s.Job.Steps); // the variant's switches reached the job
            Assert.Equal(arm.Name != "same", s.Options.RopeCache);
            float[] latents = [1, 2, 3, arm.Name == "same" ? 3 : 4];
            return new RunOutcome([new StageTime("step 1", total / 2), new StageTime("vae", total / 2)], total, 100 + a, true,
                capture ? [latents] : null, capture ? [0.5f, -0.5f] : null, capture ? [10, 20] : null);
        }
        var (runs, arms) = Experiment.Measure(plan, Fake, (a, _) => warm.Add(a.Name));

        Assert.Equal(["baseline", "half", "same"], warm);
        Assert.Equal(["baseline/0/True", "half/0/True", "same/0/True", "baseline/1/False", "half/1/False", "same/1/False",
            "baseline/2/False", "half/2/False", "same/2/False"], calls);
        Assert.Equal(Enumerable.Range(0, 9), runs.Select(r => r.Order));
        Assert.Null(arms[0].Ratio);
        // Paired ratios are exactly 0.5 and 1 in every repetition despite the 3× drift, so the intervals collapse.
        Assert.Equal(new RatioInterval(0.5, 0.5, 0.5), arms[1].Ratio);
        Assert.Equal(new RatioInterval(1, 1, 1), arms[2].Ratio);
        Assert.Equal(new Spread(20, 10, 30, 3), arms[0].Total);
        Assert.Equal(new Spread(5, 2.5, 7.5, 3), arms[1].Stages.Single(s => s.Stage == "vae").Seconds);
        Assert.Equal(102, arms[2].PeakRssBytes);
        // Quality against the baseline's repetition 0: "same" differs in one latent value by 1 of ‖(1,2,3,4)‖ = √30.
        Assert.Equal(1 / Math.Sqrt(30), arms[2].Quality!.FinalLatents.RelativeRms, 12);
        Assert.Equal(0, arms[1].Quality!.FinalLatents.RelativeRms);
        Assert.True(double.IsPositiveInfinity(arms[1].Quality!.ImagePsnrDb));
    }

    [Fact]
    public void Paired_ratio_bootstrap_interval_of_three_ratios_spans_them()
    {
        // Ratios 1, 2, 3: the bootstrap median takes 1 with probability 7/27 ≈ 0.26 > 0.025 and 3 likewise, so the
        // percentile interval is [1, 3] around the median 2.
        var q = ExperimentStats.PairedRatio([1, 1, 1], [1, 2, 3]);
        Assert.Equal(new RatioInterval(2, 1, 3), q);
    }

    [Fact]
    public void Paired_ratio_bootstrap_interval_has_the_width_of_the_median_standard_error()
    {
        // 201 ratios ~ N(1, 0.1²): the median's standard error is about 1.2533·0.1/√201 = 0.00884, so a 95% interval is
        // about ±0.0173 (width 0.035); the bootstrap's is within a factor 1.5 of that and contains the sample median.
        var rng = new Random(7);
        var b = Enumerable.Repeat(2.0, 201).ToArray();
        var v = b.Select(x => x * (1 + 0.1 * Gaussian(rng))).ToArray();
        var q = ExperimentStats.PairedRatio(b, v, seed: 3);
        Assert.InRange(q.Hi - q.Lo, 0.035 / 1.5, 0.035 * 1.5);
        Assert.InRange(q.Ratio, q.Lo, q.Hi);
        Assert.InRange(q.Ratio, 0.97, 1.03);
        // Seeded: the same call gives the same interval.
        Assert.Equal(q, ExperimentStats.PairedRatio(b, v, seed: 3));
    }

    private static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    [Fact]
    public void Median_and_percentile_follow_numpy()
    {
        Assert.Equal(2.5, ExperimentStats.Median([4, 1, 3, 2]));
        Assert.Equal(3, ExperimentStats.Median([5, 3, 1]));
        // numpy.percentile([1, 2, 3, 4, 10], 97.5) = 9.4 (linear): position 0.975·4 = 3.9 → 4 + 0.9·6
        Assert.Equal(9.4, ExperimentStats.Percentile([1, 2, 3, 4, 10], 0.975), 12);
        Assert.Equal(1.1, ExperimentStats.Percentile([1, 2, 3, 4, 10], 0.025), 12);
        Assert.Throws<ArgumentException>(() => ExperimentStats.PairedRatio([1, 2], [1]));
    }

    // ---------------------------------------------------------------- switches

    [Fact]
    public void Switch_sets_parse_merge_and_apply()
    {
        var s = SwitchSet.Parse("quant=INT8, cfg-batched ,guidance-interval=0.2..0.9");
        Assert.Equal("quant=int8,cfg-batched=on,guidance-interval=0.2..0.9", s.ToString());
        var merged = SwitchSet.Parse("quant=int4,steps=8").With(s);
        Assert.Equal("steps=8,quant=int8,cfg-batched=on,guidance-interval=0.2..0.9", merged.ToString());
        var applied = ExperimentSwitches.Apply(merged, new RunSettings(new GenerationJob(), new ModelOptions()));
        Assert.Equal(PureFlux.Model.Layers.QuantMode.Int8, applied.Options.Quant);
        Assert.Equal(CfgMode.Batched, applied.Job.CfgMode);
        Assert.Equal(8, applied.Job.Steps);
        Assert.Equal((0.2f, 0.9f), applied.Job.GuidanceInterval);
        Assert.False(ExperimentSwitches.Apply(SwitchSet.Parse("rope-cache=off"), applied).Options.RopeCache);
        Assert.Equal(PureFlux.Model.Layers.QuantMode.Fp8E4M3, ExperimentSwitches.Apply(SwitchSet.Parse("quant=fp8-e4m3"), applied).Options.Quant);
        Assert.Equal(PureFlux.Model.Layers.QuantMode.Fp8E5M2, ExperimentSwitches.Apply(SwitchSet.Parse("quant=FP8-E5M2"), applied).Options.Quant);
        Assert.Equal(PureFlux.Model.Scheduler.SamplerKind.UniPC,
            ExperimentSwitches.Apply(SwitchSet.Parse("sampler=unipc"), applied).Job.Sampler);
    }

    [Theory]
    [InlineData("warp=on", "unknown switch 'warp'")]
    [InlineData("quant=int3", "quant=int3: expected none|int8|int4|fp8-e4m3|fp8-e5m2")]
    [InlineData("steps=0", "steps=0: expected an integer 1..1000")]
    [InlineData("quant=int8,quant=int4", "switch 'quant' is given twice")]
    [InlineData("guidance-interval=0.9..0.2", "guidance-interval=0.9..0.2")]
    [InlineData("tome=1", "tome=1: expected a ratio in [0, 1) or off")]
    [InlineData("rope-cache=maybe", "rope-cache=maybe: expected on|off")]
    [InlineData("attention=paged", "attention=paged: expected flash|materialized")]
    [InlineData("gemm=blas", "gemm=blas: expected naive|packed|parallel")]
    public void Bad_switches_are_one_line_errors(string text, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => SwitchSet.Parse(text));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Rope_cache_off_gives_the_same_image_as_on()
    {
        // Rebuilding the tables every call must change the time only, never a value: bit-identical images.
        var job = new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 48, Steps = 2, Seed = 5 };
        float[] Generate(string dir, bool cache)
        {
            using var dev = new CpuDevice();
            using var model = ModelFamilies.Open(dir, dev, new ModelOptions { RopeCache = cache });
            Assert.Contains("rope-cache", model.HonouredSwitches);
            return GenerationEngine.Run(model, job).Decoded;
        }
        Assert.Equal(Generate(TinySnapshot.Dir, true), Generate(TinySnapshot.Dir, false));
        // timestep-freq-cache=off recomputes the same float32 table: identical too.
        var first = TimestepEmbedding.Frequencies(128);
        Assert.Same(first, TimestepEmbedding.Frequencies(128));
        TimestepEmbedding.CacheFrequencies = false;
        try
        {
            var fresh = TimestepEmbedding.Frequencies(128);
            Assert.NotSame(first, fresh);
            Assert.Equal(first, fresh);
        }
        finally { TimestepEmbedding.CacheFrequencies = true; }
        string z = TinyFamilySnapshots.ZImage;
        Assert.Equal(Generate(z, true), Generate(z, false));
        Assert.Equal(Generate(TinyFamilySnapshots.Flux1Dev, true), Generate(TinyFamilySnapshots.Flux1Dev, false));
        Assert.Equal(Generate(TinyFamilySnapshots.QwenImage, true), Generate(TinyFamilySnapshots.QwenImage, false));
    }

    [Fact]
    public void Populate_weights_off_gives_the_same_image_as_on_in_every_family()
    {
        // Mapping the pages in at load changes when they are read, never what: bit-identical images, every family.
        var job = new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 2, Seed = 5 };
        float[] Generate(string dir, bool populate)
        {
            using var dev = new CpuDevice();
            using var model = ModelFamilies.Open(dir, dev, new ModelOptions { PopulateWeights = populate });
            Assert.Contains("populate-weights", model.HonouredSwitches);
            return GenerationEngine.Run(model, job).Decoded;
        }
        Assert.False(ExperimentSwitches.Apply(SwitchSet.Parse("populate-weights=off"), new RunSettings(new GenerationJob(), new ModelOptions())).Options.PopulateWeights);
        Assert.True(new ModelOptions().PopulateWeights);
        Assert.Equal(Generate(TinySnapshot.Dir, true), Generate(TinySnapshot.Dir, false));
        Assert.Equal(Generate(TinyFamilySnapshots.ZImage, true), Generate(TinyFamilySnapshots.ZImage, false));
        Assert.Equal(Generate(TinyFamilySnapshots.Flux1Dev, true), Generate(TinyFamilySnapshots.Flux1Dev, false));
        Assert.Equal(Generate(TinyFamilySnapshots.QwenImage, true), Generate(TinyFamilySnapshots.QwenImage, false));
    }

    // ---------------------------------------------------------------- the command

    [Fact]
    public void Experiment_command_alternates_writes_json_and_appends_a_log_entry()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-exp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string json = Path.Combine(dir, "r.json"), log = Path.Combine(dir, "LOG.md");
            File.WriteAllText(log, "# log\n");
            var (code, stdout, err) = Run("experiment", "--model", TinySnapshot.Dir, "--size", "32", "--steps", "2", "--reps", "2",
                "--variant", "norope:rope-cache=off", "--variant", "steps=1", "--json", json, "--log", log);
            Assert.True(code == 0, err);
            Assert.Contains("norope", stdout);
            var report = ExperimentReport.FromJson(File.ReadAllText(json));
            Assert.Equal(["baseline", "norope", "steps=1", "baseline", "norope", "steps=1"], report.Runs.Select(r => r.Variant));
            Assert.Equal("flux2-klein", report.Family);
            Assert.Equal(3, report.Arms.Length);
            Assert.Equal(0, report.Arms[1].Quality!.FinalLatents.RelativeRms); // rope-cache=off changes no value
            Assert.Empty(report.Arms[2].Quality!.Steps); // 1 step vs 2: per-step errors are not comparable
            Assert.True(report.Arms[2].Quality!.FinalLatents.RelativeRms > 0);
            Assert.All(report.Arms.Skip(1), a => Assert.InRange(a.Ratio!.Ratio, a.Ratio.Lo, a.Ratio.Hi));
            string entry = File.ReadAllText(log);
            Assert.StartsWith("# log\n", entry);
            Assert.Contains("experiment: rope-cache=off; steps=1 vs baseline", entry);
            Assert.Contains("- Command: `pureflux ", entry);
            Assert.Contains("- Verdict:", entry);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Kernel_switches_reach_the_device_change_no_result_beyond_rounding_and_need_the_cpu_device()
    {
        var applied = ExperimentSwitches.Apply(SwitchSet.Parse("attention=materialized,gemm=packed"), new RunSettings(new GenerationJob(), new ModelOptions()));
        Assert.Equal((CpuGemmLevel.Packed, CpuAttentionKernel.Materialized), (applied.Kernels.Gemm, applied.Kernels.Attention));
        using (var cpu = new CpuDevice())
        {
            applied.Kernels.ApplyTo(cpu);
            Assert.Equal((CpuGemmLevel.Packed, CpuAttentionKernel.Materialized), (cpu.GemmLevel, cpu.AttentionKernel));
        }
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-exp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string json = Path.Combine(dir, "k.json");
            var (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--size", "32", "--steps", "2", "--reps", "1",
                "--variant", "mat:attention=materialized", "--variant", "one:gemm=packed", "--variant", "naive:gemm=naive",
                "--variant", "tfreq:timestep-freq-cache=off", "--variant", "fmod:fused-modulate=off", "--variant", "fswi:fused-swiglu=off", "--variant", "fqkv:fused-qkv", "--json", json);
            Assert.True(code == 0, err);
            var report = ExperimentReport.FromJson(File.ReadAllText(json));
            // Same function, another summation order: the final latents agree to fp32 rounding.
            Assert.All(report.Arms.Skip(1), a => Assert.InRange(a.Quality!.FinalLatents.RelativeRms, 0, 1e-4));
            Assert.Equal(0, report.Arms.Single(a => a.Name == "tfreq").Quality!.FinalLatents.RelativeRms); // same table, same values
            Assert.True(TimestepEmbedding.CacheFrequencies); // the harness restores the process-wide default
            var (code2, _, err2) = Run("experiment", "--model", TinySnapshot.Dir, "--device", "ilgpu-cpu", "--variant", "attention=materialized");
            Assert.Equal(2, code2);
            Assert.Contains("switches gemm / attention choose among the cpu device's kernels", err2);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Sync_per_block_changes_no_value_on_an_ilgpu_device_and_is_refused_on_cpu()
    {
        var job = new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 1, Seed = 5 };
        float[] Generate(bool sync)
        {
            using var dev = Devices.Open("ilgpu-cpu");
            using var model = ModelFamilies.Open(TinySnapshot.Dir, dev, new ModelOptions { SyncPerBlock = sync });
            Assert.Contains("sync-per-block", model.HonouredSwitches);
            return GenerationEngine.Run(model, job).Decoded;
        }
        Assert.Equal(Generate(false), Generate(true));
        var (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--variant", "sync-per-block");
        Assert.Equal(2, code);
        Assert.Contains("sync-per-block applies to ILGPU devices", err);
    }

    [Theory]
    [InlineData(QuantMode.None)]
    [InlineData(QuantMode.Int8)]
    [InlineData(QuantMode.Int4)]
    [InlineData(QuantMode.Fp8E4M3)]
    public void Fused_qkv_stacks_the_projections_and_gives_the_same_image(QuantMode quant)
    {
        var job = new GenerationJob { Prompts = ["a red fox"], Width = 32, Height = 32, Steps = 2, Seed = 5 };
        float[] Generate(bool fused)
        {
            using var dev = new CpuDevice(2);
            using var model = ModelFamilies.Open(TinySnapshot.Dir, dev, new ModelOptions { FusedQkv = fused, Quant = quant });
            Assert.Contains("fused-qkv", model.HonouredSwitches);
            return GenerationEngine.Run(model, job).Decoded;
        }
        // Each output column is the same dot product either way (the rows of Q, K, V are stacked, quantized per row).
        Compare.Close(Generate(false), Generate(true), 1e-5f, 1e-5f, $"fused-qkv, quant {quant}");
    }

    [Theory]
    [InlineData("FLUX.1-dev", "fused-swiglu")] // FLUX.1's MLPs are GELU
    [InlineData("FLUX.1-dev", "fused-qkv")]
    public void Family_switches_a_family_does_not_honour_are_refused_by_name(string repo, string name)
    {
        using var cpu = new CpuDevice();
        using var model = ModelFamilies.Open(Path.Combine(Golden.Dir, "flux1", "model", repo), cpu, new ModelOptions());
        var e = Assert.Throws<ArgumentException>(() => ExperimentSwitches.CheckApplicable(SwitchSet.Parse(name), model, "variant 'x'"));
        Assert.Contains($"switch '{name}' does not apply to the", e.Message);
        Assert.DoesNotContain(name, model.HonouredSwitches);
    }

    [Fact]
    public void Experiment_command_refuses_bad_plans_before_any_run()
    {
        var (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--variant", "fast:tome=-0.3");
        Assert.Equal(2, code);
        Assert.Contains("tome=-0.3: expected a ratio in [0, 1) or off", err);

        (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--size", "32");
        Assert.Equal(2, code);
        Assert.Contains("give at least one variant", err);

        (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--variant", "baseline:steps=2");
        Assert.Equal(2, code);
        Assert.Contains("'baseline' is used twice", err);

        // A guidance switch on a guidance-distilled model would measure nothing: refused in the warm-up.
        (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--size", "32", "--steps", "1", "--variant", "cfg-batched");
        Assert.Equal(2, code);
        Assert.Contains("switch 'cfg-batched' needs classifier-free guidance", err);
        Assert.DoesNotContain("run 1/", err);
    }

    [Fact]
    public void Variants_file_gives_baseline_and_variants()
    {
        string file = Path.Combine(Path.GetTempPath(), $"pureflux-variants-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(file, """{"baseline": "guidance=4", "variants": {"batched": "cfg-batched", "skip": "guidance-interval=0.3..1"}}""");
            var (b, v) = PureFlux.Cli.Commands.ExperimentCommand.Variants("", ["int8:quant=int8"], file);
            Assert.Equal("guidance=4", b.ToString());
            Assert.Equal(["batched", "skip", "int8"], v.Select(x => x.Name));
            File.WriteAllText(file, """{"variants": {"x": "warp"}}""");
            var e = Assert.Throws<ArgumentException>(() => PureFlux.Cli.Commands.ExperimentCommand.Variants("", [], file));
            Assert.Contains("variant 'x'", e.Message);
            Assert.Contains("unknown switch 'warp'", e.Message);
        }
        finally { File.Delete(file); }
    }
}
