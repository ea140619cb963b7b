using System.Text.RegularExpressions;
using PureFlux.Model.Bench;
using PureFlux.Model.Config;
using PureFlux.Model.Flux1;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// FLUX.1's FLOP model (<see cref="FlopModel.Flux1Step"/>, <see cref="FlopModel.ClipEncode"/>, <see cref="FlopModel.T5Encode"/>)
/// against hand counts (every number worked out in the comment beside it; a linear x[M, K]·Wᵀ costs 2·M·N·K), and
/// <c>bench e2e</c> on a tiny random FLUX.1 [dev] snapshot with true CFG.
/// </summary>
public class Flux1BenchTests
{
    [Fact]
    public void Flux1_step_flops_match_a_hand_count()
    {
        // D = 1 head × 4 = 4, MLP 4·4 = 16, in/out 8, T5 width 6, pooled 5, guidance embedded; 1 double + 1 single block.
        // 2 text + 3 generated + 1 reference token: S = 6.
        var c = new Flux1TransformerConfig
        {
            NumAttentionHeads = 1, AttentionHeadDim = 4, NumLayers = 1, NumSingleLayers = 1, InChannels = 8,
            JointAttentionDim = 6, PooledProjectionDim = 5, GuidanceEmbeds = true, AxesDimsRope = [0, 2, 2],
        };
        var f = FlopModel.Flux1Step(c, textLen: 2, imageTokens: 3, referenceTokens: 1);
        // M = 1: timestep 2·256·4 = 2048 + 2·4·4 = 32 → 2080; guidance the same 2080; text 2·5·4 = 40 + 32 → 72;
        //        norm_out 2·4·8 = 64; double mod 2·(2·4·24) = 384; single mod 2·4·12 = 96 → 4776
        // context_embedder 2·2·6·4 = 96; x_embedder on 3 + 1 rows 2·4·8·4 = 256; proj_out on the 3 generated rows 2·3·4·8 = 192 → 544
        // double on S = 6: q, k, v, out 4·(2·6·4·4) = 768; ff 2·6·4·16 = 768 + 2·6·16·4 = 768 → 2304
        // single on S = 6: q, k, v 3·(2·6·4·4) = 576; proj_mlp 2·6·4·16 = 768; proj_out (5D = 20 in) 2·6·20·4 = 960 → 2304
        Assert.Equal(4776 + 544 + 2304 + 2304, f.Linear);
        // attention 4·S²·head_dim·heads = 4·36·4·1 = 576 in each of the 2 blocks
        Assert.Equal(1152, f.Attention);
        Assert.Equal(0, f.Conv);
        // schnell (no guidance embedder) saves exactly the 2080 of its MLP.
        Assert.Equal(f.Linear - 2080, FlopModel.Flux1Step(c with { GuidanceEmbeds = false }, 2, 3, 1).Linear);
    }

    [Fact]
    public void Clip_and_t5_flops_match_a_hand_count()
    {
        // CLIP: D 4 (2 heads × 2), MLP 6, 2 layers, 3 tokens.
        var clip = new ClipTextConfig { VocabSize = 10, HiddenSize = 4, IntermediateSize = 6, NumHiddenLayers = 2, NumAttentionHeads = 2 };
        var fc = FlopModel.ClipEncode(clip, seqLen: 3);
        // per layer: q, k, v, out 4·(2·3·4·4) = 384; fc1 2·3·4·6 = 144; fc2 2·3·6·4 = 144 → 672
        Assert.Equal(2 * 672, fc.Linear);
        // attention 4·9·2·2 = 144 per layer
        Assert.Equal(2 * 144, fc.Attention);

        // T5: d_model 4, 3 heads × d_kv 2 (inner 6), d_ff 5, 1 block, 2 tokens.
        var t5 = new T5Config { VocabSize = 10, DModel = 4, DKv = 2, DFf = 5, NumLayers = 1, NumHeads = 3 };
        var ft = FlopModel.T5Encode(t5, seqLen: 2);
        // q, k, v 3·(2·2·4·6) = 288; o 2·2·6·4 = 96; wi_0, wi_1 2·(2·2·4·5) = 160; wo 2·2·5·4 = 80 → 624
        Assert.Equal(624, ft.Linear);
        // attention 4·4·2·3 = 96
        Assert.Equal(96, ft.Attention);
    }

    [Fact]
    public void Bench_e2e_on_a_flux1_snapshot_prints_gflops_per_stage()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-flux1-bench-{Guid.NewGuid():N}");
        string json = dir + ".json";
        try
        {
            Flux1RandomSnapshot.Write(dir, Flux1Preset.TinyDev, 3);
            var (code, o, e) = Run("bench", "e2e", "--model", dir, "--size", "32", "--steps", "2", "--peak-gflops", "100", "--warmup", "false",
                "--negative-prompt", "blurry", "--true-cfg", "2", "--json", json);
            Assert.True(code == 0, $"exit {code}: {e}");
            var r = E2eBenchReport.FromJson(File.ReadAllText(json));
            using var snapshot = Flux1Snapshot.Open(dir);
            // T5 runs the padded 512 tokens; 32×32 px is a 2×2 token grid; CLIP's 77 + T5's work is the text stage.
            Assert.Equal((512, 4), (r.TextTokens, r.ImageTokens));
            Assert.Equal((FlopModel.ClipEncode(snapshot.ClipConfig, 77) + FlopModel.T5Encode(snapshot.T5Config, 512)).GFlop, r.TextEncoderGFlop, 12);
            Assert.Equal(FlopModel.Flux1Step(snapshot.TransformerConfig, 512, 4).GFlop, r.StepGFlop, 12);
            var m = Assert.Single(r.Modes);
            var compute = m.Stages.Where(s => s.Stage != "load transformer").ToArray();
            Assert.Equal(["text encoding", "text encoding", "step 1", "step 2", "vae"], compute.Select(s => s.Stage)); // prompt, negative prompt
            Assert.All(compute, s => Assert.True(s.GFlop > 0 && s.GFlopPerSecond > 0, $"{s.Stage}: {s.GFlop} GFLOP, {s.GFlopPerSecond} GFLOP/s"));
            Assert.All(compute.Where(s => s.Stage.StartsWith("step", StringComparison.Ordinal)), s => Assert.Equal(2 * r.StepGFlop, s.GFlop, 12)); // true CFG: two passes
            // Each compute stage's printed row carries seconds, GFLOP, GFLOP/s and % of peak.
            foreach (var s in new[] { "text encoding", "step 1", "step 2", "vae" })
                Assert.Matches(new Regex($@"\n  {s}\s+\d+\.\d{{3}}\s+[\d.]+\s+\d+\.\d\s+\d+\.\d%"), o);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            File.Delete(json);
        }
    }
}
