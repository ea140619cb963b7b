using PureFlux.Model.Config;
using PureFlux.Model.QwenImage;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>Qwen-Image's stage FLOPs for bench e2e against counts written out by hand for the tiny golden config.</summary>
public class QwenImageFlopTests
{
    private static string ModelDir => Path.Combine(Golden.Dir, "qwenimage", "model");

    [Fact]
    public void Transformer_pass_matches_a_hand_count_for_the_tiny_config()
    {
        // D = 2 heads × 32 = 64, MLP 256, 2 blocks, text width 64; 12 text + 20 image tokens (S = 32).
        var c = QwenImageTransformerConfig.Load(Path.Combine(ModelDir, "transformer", "config.json"));
        var f = QwenImageFlops.TransformerPass(c, 12, 20);
        double once = 2.0 * 256 * 64      // timestep linear_1
                    + 2.0 * 64 * 64       // timestep linear_2
                    + 2.0 * 64 * 128      // norm_out.linear (scale, shift)
                    + 2.0 * 20 * 64 * 64  // img_in
                    + 2.0 * 12 * 64 * 64  // txt_in
                    + 2.0 * 20 * 64 * 64; // proj_out (64 = 2×2 patch × 16 channels)
        double perBlock = 2 * (2.0 * 64 * 384)     // img_mod, txt_mod
                        + 4 * (2.0 * 32 * 64 * 64) // q, k, v, out over both streams' rows
                        + 2 * (2.0 * 32 * 64 * 256); // MLP up and down
        Assert.Equal(once + 2 * perBlock, f.Linear);
        Assert.Equal(2 * (2 * 2.0 * 32 * 32 * 32 * 2), f.Attention); // QKᵀ and P·V per block: 2·S²·D each, 2 heads
        Assert.Equal(0, f.Conv);
    }

    [Fact]
    public void Vae_decode_matches_a_hand_count_for_the_tiny_vae()
    {
        // base 4: channels 16 (latent level) → 16, 16, 8, 4; latent 8×10 → image 64×80.
        var v = QwenImageVaeConfig.Load(Path.Combine(ModelDir, "vae", "config.json"));
        var f = QwenImageFlops.VaeDecode(v, 8, 10);
        static double Conv(int o, int i, int k, int pixels) => 2.0 * o * i * k * k * pixels;
        static double Res(int i, int o, int px) => Conv(o, i, 3, px) + Conv(o, o, 3, px) + (i != o ? Conv(o, i, 1, px) : 0);
        double expected = Conv(16, 16, 1, 80) + Conv(16, 16, 3, 80)                      // post_quant_conv, conv_in
                        + 2 * Res(16, 16, 80) + Conv(48, 16, 1, 80) + Conv(16, 16, 1, 80)   // mid: 2 resnets, attention qkv and proj
                        + 3 * Res(16, 16, 80) + Conv(8, 16, 3, 320)                       // up 0 at 8×10, upsample conv at 16×20
                        + Res(8, 16, 320) + 2 * Res(16, 16, 320) + Conv(8, 16, 3, 1280)   // up 1, upsample to 32×40
                        + 3 * Res(8, 8, 1280) + Conv(4, 8, 3, 5120)                       // up 2, upsample to 64×80
                        + 3 * Res(4, 4, 5120) + Conv(3, 4, 3, 5120);                      // up 3, conv_out
        Assert.Equal(37_888_000, expected); // the sum itself, as computed separately
        Assert.Equal(expected, f.Conv);
        Assert.Equal(4.0 * 80 * 80 * 16, f.Attention); // one head of width 16 over 80 pixels
    }

    [Fact]
    public void Bench_e2e_on_a_qwen_image_snapshot_reports_every_stage_and_counts_both_true_cfg_passes()
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS")))
            Assert.Skip("host-side tests run in the main pass only");
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-qwenimage-flops-{Environment.ProcessId}-{Guid.NewGuid():N}");
        QwenImageRandomSnapshot.Write(dir, QwenImagePreset.Tiny, seed: 2);
        try
        {
            var o = new PureFlux.Model.Bench.E2eBenchOptions(Width: 32, Height: 32, Steps: 2, Prompt: "a red fox") { Warmup = false, PeakGFlops = 10, NegativePrompt = " ", Guidance = 4f };
            var report = PureFlux.Model.Bench.E2eBench.Run(dir, "tiny", o);
            var run = Assert.Single(report.Modes);
            var step = run.Stages.First(s => s.Stage == "step 1");
            Assert.Equal(2 * report.StepGFlop, step.GFlop, 9);
            Assert.True(step.PercentOfPeak > 0);
            Assert.Contains(run.Stages, s => s.Stage == "vae" && s.GFlop == report.VaeGFlop && s.GFlop > 0);
            Assert.Contains(run.Stages, s => s.Stage.StartsWith("text encoding", StringComparison.Ordinal) && s.GFlop == report.TextEncoderGFlop && s.GFlop > 0);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
