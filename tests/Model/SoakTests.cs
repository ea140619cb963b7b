using PureFlux.Model.Engine;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// Many generations in one process must not grow: after each image the memory pool's live bytes are back to where they
/// were (every tensor the loop, the samplers, guidance and the model rent is returned) and the resident set stays flat.
/// CI runs 20 images of the tiny model with CFG, a reference image and a batch of 2 (every path of the loop); the same
/// test with PUREFLUX_SOAK=100 is the longer soak.
/// </summary>
public class SoakTests
{
    [Fact]
    public void Repeated_generation_returns_every_buffer_and_keeps_rss_flat()
    {
        int runs = int.TryParse(Environment.GetEnvironmentVariable("PUREFLUX_SOAK"), out int n) && n > 0 ? n : 20;
        using var dev = Devices.Open("cpu"); // private: other tests' rentals would move the counters
        using var model = ModelFamilies.Open(TinyBaseSnapshot.Dir, dev);
        var reference = new PureFlux.Model.Image.RgbImage(Enumerable.Range(0, 64 * 80 * 3).Select(i => (byte)(i * 13 % 256)).ToArray(), 80, 64);
        var jobs = new[]
        {
            new GenerationJob { Prompts = ["a"], Width = 32, Height = 32, Steps = 2 },
            new GenerationJob { Prompts = ["a", "b"], Width = 32, Height = 48, Steps = 2, CfgMode = CfgMode.Batched, Sampler = PureFlux.Model.Scheduler.SamplerKind.DpmPP2M },
            new GenerationJob { Prompts = ["c"], Steps = 2, ReferenceImages = [reference], GuidanceInterval = (0.9f, 1f) },
        };
        long? live = null, rss0 = 0;
        var rss = new List<long>();
        for (int i = 0; i < runs; i++)
        {
            GenerationEngine.Run(model, jobs[i % jobs.Length]);
            long now = dev.Pool.Snapshot().LiveBytes;
            if (i == jobs.Length - 1) { live = now; rss0 = StageTimer.CurrentRssBytes(); }
            if (live is { } l && i >= jobs.Length) Assert.True(now == l, $"run {i + 1}: pool live bytes {now}, after the first round {l}");
            rss.Add(StageTimer.CurrentRssBytes());
        }
        Assert.Equal(0, dev.Pool.Snapshot().LiveBytes - live!.Value);
        // RSS: after the first round (JIT, pool and page cache warm) allow 64 MiB of drift for the GC's heap sizing.
        if (OperatingSystem.IsLinux())
            Assert.True(rss[^1] - rss0 < 64L << 20, $"RSS grew from {rss0 >> 20} MiB to {rss[^1] >> 20} MiB over {runs} runs");
    }
}
