using PureFlux.Model.Bench;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Runtime;

/// <summary>OpProfile is process-wide: these tests run alone so no other test's ops land in (or switch off) their records.</summary>
[CollectionDefinition(nameof(OpProfileTests), DisableParallelization = true)]
public sealed class OpProfileCollection;

[Collection(nameof(OpProfileTests))]
public class OpProfileTests
{
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Records_calls_time_and_flops_per_op_and_shape_only_while_enabled(string backend)
    {
        var dev = Backends.Get(backend);
        using var x = Tensor.FromArray(dev, Enumerable.Range(0, 3 * 5).Select(i => i * 0.1f).ToArray(), 3, 5);
        using var w = Tensor.FromArray(dev, Enumerable.Range(0, 7 * 5).Select(i => 1f - i * 0.05f).ToArray(), 7, 5);
        using var y = Tensor.Empty(dev, DType.F32, 3, 7);
        bool was = OpProfile.Enabled;
        try
        {
            OpProfile.Enabled = false;
            OpProfile.Reset();
            Gemm.Linear(x, w, null, y);
            Assert.Empty(OpProfile.Snapshot());

            OpProfile.Enabled = true;
            Gemm.Linear(x, w, null, y);
            Gemm.Linear(x, w, null, y);
            Silu.Forward(y, y);
            OpProfile.Enabled = false;
            Gemm.Linear(x, w, null, y); // not counted

            var ops = OpProfile.Snapshot();
            var gemm = Assert.Single(ops, o => o.Op == "Gemm.Linear");
            Assert.Equal("3x5x7", gemm.Shape);
            Assert.Equal(2, gemm.Calls);
            Assert.Equal(2 * 2.0 * 3 * 5 * 7 / 1e9, gemm.GFlop, 12);
            Assert.True(gemm.Seconds > 0);
            var silu = Assert.Single(ops, o => o.Op == "Silu");
            Assert.Equal("[3, 7]", silu.Shape);
            Assert.Equal(1, silu.Calls);
            Assert.Equal(0, silu.GFlopPerSecond);
            Assert.Equal(2, ops.Count);
        }
        finally
        {
            OpProfile.Enabled = was;
            OpProfile.Reset();
        }
    }

    [Fact]
    public void Bench_e2e_profile_prints_and_saves_the_operators()
    {
        string json = Path.Combine(Path.GetTempPath(), $"pureflux-profile-test-{Guid.NewGuid():N}.json");
        try
        {
            var (code, text, e) = CliRunner.Run("bench", "e2e", "--quant", "int8", "--size", "16", "--steps", "1", "--peak-gflops", "50",
                "--warmup", "false", "--profile", "--json", json);
            Assert.True(code == 0, $"exit {code}: {e}");
            Assert.Contains("operators (most time first", text);
            Assert.Contains("QuantizedGemm.Linear int8", text);
            Assert.Contains("outside profiled ops", text);
            var mode = Assert.Single(E2eBenchReport.FromJson(File.ReadAllText(json)).Modes);
            Assert.Contains(mode.Ops, op => op.Op == "QuantizedGemm.Linear int8" && op.Calls > 0 && op.GFlop > 0);
            Assert.Contains(mode.Ops, op => op.Op == "Attention");
            Assert.Contains(mode.Ops, op => op.Op == "Conv2d");
            Assert.False(OpProfile.Enabled, "profiling is switched off again after the run");
        }
        finally
        {
            File.Delete(json);
        }
    }
}
