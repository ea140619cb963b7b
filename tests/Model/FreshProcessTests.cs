using PureFlux.Model.Experiments;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary><c>pureflux experiment --fresh-process</c>: a child process per run, the same results as in process, one-line failures.</summary>
public class FreshProcessTests
{
    internal static readonly string Baseline = "";
    private static readonly string Variant = "quant=int8";

    [Fact]
    public void Fresh_process_runs_each_run_in_a_child_and_matches_the_in_process_quality()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-fresh-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string[] common = ["--size", "64", "--steps", "2", "--reps", "2", "--warmup", "false", "--baseline", Baseline, "--variant", Variant];
            var (code, stdout, err) = Run(["experiment", "--preset", "tiny", "--fresh-process", "--json", Path.Combine(dir, "fresh.json"), .. common]);
            Assert.True(code == 0, err);
            Assert.Contains("a fresh process per run", stdout);
            Assert.Contains("    step 2/2, ", err); // the children's steps reach the parent's display
            var fresh = ExperimentReport.FromJson(File.ReadAllText(Path.Combine(dir, "fresh.json")));
            Assert.Equal("alternated (A B … per repetition), a fresh process per run", fresh.Order);
            Assert.Equal(["baseline", Variant, "baseline", Variant], fresh.Runs.Select(r => r.Variant));
            Assert.All(fresh.Runs, r => Assert.True(r.PeakRssPerRun && r.PeakRssBytes > 0 && r.TotalSeconds > r.Stages.Sum(s => s.Seconds)));
            Assert.Equal("cpu", fresh.Device);
            Assert.Empty(Directory.GetDirectories(Path.GetTempPath(), $"pureflux-fresh-{Environment.ProcessId}-*")); // the runs' files are gone

            // The same snapshot (tiny, seed 0) in this process: the same quality columns.
            (code, _, err) = Run(["experiment", "--model", TinySnapshot.Dir, "--json", Path.Combine(dir, "in.json"), .. common]);
            Assert.True(code == 0, err);
            var inProcess = ExperimentReport.FromJson(File.ReadAllText(Path.Combine(dir, "in.json")));
            var (a, b) = (fresh.Arms[1].Quality!, inProcess.Arms[1].Quality!);
            Assert.Equal(b.FinalLatents.RelativeRms, a.FinalLatents.RelativeRms, 1e-6);
            Assert.Equal(b.Steps.Length, a.Steps.Length);
            Assert.Equal(2, a.Steps.Length);
            for (int i = 0; i < a.Steps.Length; i++) Assert.Equal(b.Steps[i].RelativeRms, a.Steps[i].RelativeRms, 1e-6);
            Assert.Equal(b.ImageMaxAbs, a.ImageMaxAbs, 1e-6);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_failing_child_is_one_line_naming_the_arm_and_run()
    {
        // The hidden command itself: a missing or malformed spec.
        var (code, _, err) = Run("experiment-run", "--spec", "/nonexistent/spec.json", "--out", "/tmp/x.outcome");
        Assert.Equal(2, code);
        Assert.Equal("error: --spec /nonexistent/spec.json: no such file", err.TrimEnd());
        string spec = Path.Combine(Path.GetTempPath(), $"pureflux-bad-spec-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(spec, """{"model": "/x", "device": "cpu"}""");
            (code, _, err) = Run("experiment-run", "--spec", spec, "--out", spec + ".outcome");
            Assert.Equal(2, code);
            Assert.StartsWith($"error: --spec {spec}: not a valid run spec (", err);
            Assert.Single(err.TrimEnd().Split('\n'));
        }
        finally { File.Delete(spec); }

        // Through the parent: the variant's warm-up child refuses a guidance switch on a guidance-distilled model.
        (code, _, err) = Run("experiment", "--model", TinySnapshot.Dir, "--size", "32", "--steps", "1", "--fresh-process",
            "--baseline", Baseline, "--variant", "cfg-batched");
        Assert.Equal(2, code);
        string last = err.TrimEnd().Split('\n')[^1];
        Assert.StartsWith("error: experiment --fresh-process: the warm-up of 'cfg-batched' failed in its child process: variant 'cfg-batched': switch 'cfg-batched' needs classifier-free guidance", last);
        Assert.DoesNotContain("   at ", err);
        Assert.Equal(1, err.Split('\n').Count(l => l.StartsWith("error: ", StringComparison.Ordinal)));
    }
}
