using PureFlux.Model.Bench;
using PureFlux.Model.Config;
using static PureFlux.Tests.Support.CliRunner;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public class BenchTests
{
    [Fact]
    public void Bench_peak_prints_the_fma_and_int8_peaks()
    {
        var (code, o, e) = Run("bench", "peak", "--seconds", "0.06");
        Assert.True(code == 0, e);
        Assert.Matches(@"FMA peak: \d+\.\d GFLOP/s", o);
        Assert.Contains("int8 peak: ", o);
        double? int8 = PeakFlops.MeasureInt8(0.03);
        Assert.Equal(System.Runtime.Intrinsics.X86.AvxVnni.IsSupported, int8.HasValue);
        if (int8 is { } g) Assert.True(g > 1 && double.IsFinite(g), $"int8 peak {g} GOP/s");
    }

    // ---- FlopModel: every expected number below is worked out by hand in the comment next to it. ----

    [Fact]
    public void Flop_model_transformer_step_matches_hand_count()
    {
        // d = 1 head × 4 = 4, F = 3·4 = 12, in/out 8, joint 6, timestep channels 2; 2 text + 3 image tokens (S = 5).
        var c = new Flux2TransformerConfig
        {
            NumAttentionHeads = 1, AttentionHeadDim = 4, MlpRatio = 3, NumLayers = 1, NumSingleLayers = 1,
            InChannels = 8, JointAttentionDim = 6, TimestepGuidanceChannels = 2, AxesDimsRope = [2, 2],
        };
        var f = FlopModel.TransformerStep(c, textLen: 2, imageTokens: 3);
        // M = 1: linear_1 2·2·4 = 16, linear_2 2·4·4 = 32, mod img + txt 2·(2·4·24) = 384, single 2·4·12 = 96, norm_out 2·4·8 = 64 → 592
        // context_embedder 2·2·6·4 = 96, x_embedder 2·3·8·4 = 192, proj_out 2·3·4·8 = 192 → 480
        // double: q,k,v,out 4·(2·5·4·4) = 640, ff in 2·5·4·24 = 960, ff out 2·5·12·4 = 480 → 2080
        // single: fused in 2·5·4·36 = 1440, fused out 2·5·16·4 = 640 → 2080
        Assert.Equal(592 + 480 + 2080 + 2080, f.Linear);
        // attention 4·S²·D·H = 4·25·4·1 = 400 per block, 2 blocks
        Assert.Equal(800, f.Attention);
        Assert.Equal(0, f.Conv);
        Assert.Equal(6032e-9, f.GFlop, 15);
    }

    [Fact]
    public void Flop_model_text_encoder_matches_hand_count()
    {
        // hidden 4, 2 query heads × 3 (q width 6), 1 KV head (kv width 3), MLP 5; 2 tokens; 3 layers run.
        var c = new Qwen3Config
        {
            VocabSize = 10, HiddenSize = 4, IntermediateSize = 5, NumHiddenLayers = 4,
            NumAttentionHeads = 2, NumKeyValueHeads = 1, HeadDim = 3,
        };
        var f = FlopModel.TextEncoder(c, seqLen: 2, layersRun: 3);
        // per layer: q 2·2·4·6 = 96, k + v 2·(2·2·4·3) = 96, o 2·2·6·4 = 96, gate + up 2·(2·2·4·5) = 160, down 2·2·5·4 = 80 → 528
        Assert.Equal(3 * 528, f.Linear);
        // attention 4·S²·D·H = 4·4·3·2 = 96 per layer (all query heads; GQA saves no score work)
        Assert.Equal(3 * 96, f.Attention);
        Assert.Equal(0, f.Conv);
    }

    [Fact]
    public void Flop_model_vae_decode_matches_hand_count()
    {
        // channels [2, 4], 1 latent channel, 1 layer per block (decoder blocks have 2 resnets), latent 2×3 → image 4×6.
        var c = new VaeConfig { BlockOutChannels = [2, 4], LatentChannels = 1, LayersPerBlock = 1, NormNumGroups = 2 };
        var f = FlopModel.VaeDecode(c, 2, 3);
        // post_quant_conv 1×1 1→1 at 2×3: 2·1·1·1·6 = 12; conv_in 3×3 1→4: 2·4·1·9·6 = 432
        // mid: 2 resnets 4→4, each 2 convs of 2·4·4·9·6 = 1728 → 6912
        // up 0 (4 ch): 2 resnets 4→4 at 2×3 → 6912; upsampler conv 4→4 at 4×6: 2·4·4·9·24 = 6912
        // up 1 (2 ch): resnet 4→2 at 4×6: 2·2·4·9·24 = 3456 + 2·2·2·9·24 = 1728 + shortcut 2·2·4·24 = 384 → 5568;
        //              resnet 2→2: 2·1728 = 3456
        // conv_out 2→3 at 4×6: 2·3·2·9·24 = 2592
        Assert.Equal(12 + 432 + 6912 + 6912 + 6912 + 5568 + 3456 + 2592, f.Conv);
        // FLUX.1 / Z-Image VAEs have no post_quant_conv.
        Assert.Equal(f.Conv - 12, FlopModel.VaeDecode(c with { UsePostQuantConv = false }, 2, 3).Conv);
        // mid attention on n = 6 pixels, c = 4: q, k, v, out 4·(2·6·4·4) = 768; scores 4·36·4·1 = 576
        Assert.Equal(768, f.Linear);
        Assert.Equal(576, f.Attention);
    }

    [Fact]
    public void Flop_model_formulas()
    {
        Assert.Equal(2.0 * 3 * 4 * 5, FlopModel.Linear(3, 4, 5));
        Assert.Equal(4.0 * 7 * 7 * 8 * 2, FlopModel.Attention(7, 8, 2));
        Assert.Equal(2.0 * 6 * 5 * 9 * 4 * 3, FlopModel.Conv(6, 5, 3, 4, 3));
    }

    // ---- QualityReport ----

    [Fact]
    public void Compare_gives_max_abs_and_relative_rms()
    {
        var e = QualityReport.Compare([1f, 2f, 3f, 4f], [1f, 2f, 3.5f, 3f]);
        Assert.Equal(1.0, e.MaxAbs, 12);
        // diff² = 0.25 + 1 = 1.25, ref² = 1 + 4 + 9 + 16 = 30
        Assert.Equal(Math.Sqrt(1.25 / 30), e.RelativeRms, 12);
        Assert.Equal(new TensorError(0, 0), QualityReport.Compare([1f, -2f], [1f, -2f]));
        Assert.Equal(new TensorError(0, 0), QualityReport.Compare([0f, 0f], [0f, 0f]));
        Assert.True(double.IsPositiveInfinity(QualityReport.Compare([0f], [1f]).RelativeRms));
        Assert.True(double.IsNaN(QualityReport.Compare([1f], [float.NaN]).RelativeRms));
        Assert.Throws<ArgumentException>(() => QualityReport.Compare([1f, 2f], [1f]));
    }

    [Fact]
    public void Psnr_of_8_bit_images()
    {
        // one error of 2 in 4 values: MSE = 1 → 10·log10(255²) = 48.1308 dB
        Assert.Equal(10 * Math.Log10(255.0 * 255.0), QualityReport.Psnr([0, 10, 20, 30], [0, 10, 20, 32]), 10);
        Assert.Equal(48.1308, QualityReport.Psnr([0, 10, 20, 30], [0, 10, 20, 28]), 4);
        // all 0 vs all 255: MSE = 255² → 0 dB
        Assert.Equal(0.0, QualityReport.Psnr([0, 0], [255, 255]), 12);
        Assert.True(double.IsPositiveInfinity(QualityReport.Psnr([1, 2, 3], [1, 2, 3])));
        Assert.Throws<ArgumentException>(() => QualityReport.Psnr([1, 2], [1]));
        Assert.Throws<ArgumentException>(() => QualityReport.Psnr([], []));
    }

    [Fact]
    public void Quality_result_compares_each_step()
    {
        var q = QualityReport.Of("int8", "none", [[1f, 1f], [2f, 2f]], [[1f, 1f], [2f, 3f]], [0.5f, -0.5f], [0.5f, -0.25f], [10, 20], [10, 20]);
        Assert.Equal(2, q.Steps.Length);
        Assert.Equal(new TensorError(0, 0), q.Steps[0]);
        Assert.Equal(1.0, q.Steps[1].MaxAbs, 12);
        Assert.Equal(Math.Sqrt(1.0 / 8), q.Steps[1].RelativeRms, 12);
        Assert.Equal(0.25, q.ImageMaxAbs, 12);
        Assert.True(double.IsPositiveInfinity(q.ImagePsnrDb));
        Assert.Throws<ArgumentException>(() => QualityReport.Of("int8", "none", [[1f]], [], [0f], [0f], [0], [0]));
    }

    [Fact]
    public void Peak_flops_is_measured()
    {
        double g = PeakFlops.Measure(0.05, threads: 1);
        // Any CPU that runs this suite does more than 0.1 and far less than 10⁵ GFLOP/s per thread.
        Assert.InRange(g, 0.1, 1e5);
    }

    // ---- bench e2e through the CLI, in process ----

    [Fact]
    public void Bench_e2e_tiny_all_modes_writes_tables_and_json()
    {
        string json = Path.Combine(Path.GetTempPath(), $"pureflux-bench-test-{Guid.NewGuid():N}.json");
        try
        {
            var (code, o, e) = Run("bench", "e2e", "--quant", "all", "--size", "32", "--steps", "2",
                "--peak-gflops", "100", "--warmup", "false", "--json", json);
            Assert.True(code == 0, $"exit {code}: {e}");
            foreach (var mode in new[] { "none", "int8", "int4", "fp8-e4m3", "fp8-e5m2" }) Assert.Contains($"quant {mode}:", o);
            Assert.Contains("quality vs none", o);
            Assert.Matches(@"step 2\s+\d+\.\d{3}\s+\d", o);
            Assert.Contains("pool live after the run 0 B (nothing leaked)", o);

            var r = E2eBenchReport.FromJson(File.ReadAllText(json));
            Assert.Equal(["none", "int8", "int4", "fp8-e4m3", "fp8-e5m2"], r.Modes.Select(m => m.Mode));
            Assert.Equal(100, r.PeakGFlops);
            Assert.Equal(4, r.ImageTokens); // 32/16 × 32/16 packed latent tokens
            foreach (var m in r.Modes)
            {
                Assert.Equal(["text encoding", "load transformer", "step 1", "step 2", "vae"], m.Stages.Select(s => s.Stage));
                Assert.All(m.Stages, s => Assert.True(s.Seconds >= 0));
                Assert.Equal(r.StepGFlop, m.Stages.Single(s => s.Stage == "step 2").GFlop);
                Assert.Equal(r.TextEncoderGFlop + 2 * r.StepGFlop + r.VaeGFlop, m.ComputeGFlop, 9);
                Assert.True(m.PoolPeakBytes > 0);
                Assert.Equal(0, m.PoolLiveBytesAfter); // the leak counter: every rented tensor is back once the model is released
                Assert.True(m.PeakRssBytes > 0 || !OperatingSystem.IsLinux());
            }
            Assert.Equal(["int8", "int4", "fp8-e4m3", "fp8-e5m2"], r.Quality.Select(q => q.Mode));
            var int8 = r.Quality[0];
            var int4 = r.Quality[1];
            Assert.Equal(2, int8.Steps.Length);
            // Quantization must change something, but little: int8 (per-channel) keeps latents within ~1% on the
            // random tiny model (0.7% measured at 256²), int4 (groups of 32..128) within ~10% (8% measured).
            Assert.InRange(int8.Steps[^1].RelativeRms, 1e-6, 0.05);
            Assert.InRange(int4.Steps[^1].RelativeRms, 1e-5, 0.3);
            Assert.True(int4.Steps[^1].RelativeRms > int8.Steps[^1].RelativeRms, "int4 should be further from the reference than int8");
            Assert.InRange(int8.ImagePsnrDb, 30, double.PositiveInfinity);
        }
        finally
        {
            File.Delete(json);
        }
    }

    [Fact]
    public void Bench_e2e_quality_flag_adds_the_reference_run()
    {
        var (code, o, e) = Run("bench", "e2e", "--quant", "int8", "--quality", "--size", "16", "--steps", "1",
            "--peak-gflops", "50", "--warmup", "false");
        Assert.True(code == 0, $"exit {code}: {e}");
        Assert.Contains("quant none:", o);
        Assert.Contains("quant int8:", o);
        Assert.DoesNotContain("quant int4:", o);
        Assert.Matches(@"int8\s+1\s+\S+\s+\S+", o);
    }

    [Theory]
    [InlineData("--quant", "int3", "--quant 'int3'")]
    [InlineData("--preset", "klein-4b", "make-model")]
    [InlineData("--size", "30", "multiples of 16")]
    [InlineData("--peak-gflops", "0", "--peak-gflops")]
    public void Bench_e2e_bad_input_is_a_one_line_usage_error(string option, string value, string message)
    {
        string[] args = option == "--peak-gflops" ? ["bench", "e2e", option, value] : ["bench", "e2e", option, value, "--peak-gflops", "10"];
        var (code, o, e) = Run(args);
        Assert.Equal(PureFlux.Cli.Cli.Usage, code);
        Assert.Equal("", o);
        Assert.StartsWith("error: ", e);
        Assert.Contains(message, e);
        Assert.Single(e.TrimEnd().Split('\n'));
    }
}
