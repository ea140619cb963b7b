using System.Diagnostics;

namespace PureFlux.Tests;

/// <summary>
/// Runs each notebook in notebooks/ in quick mode as a child process (<c>dotnet run -c Release notebooks/X.cs -- --quick
/// --out DIR</c>), so they keep compiling and running as the code changes. The first run restores ScottPlot from
/// NuGet and builds the notebook (~20 s each); quick mode itself takes a few seconds.
/// </summary>
public class NotebookTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(150);

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (Directory.Exists(Path.Combine(d.FullName, "notebooks")) && File.Exists(Path.Combine(d.FullName, "PureFlux.sln")))
                return d.FullName;
        throw new DirectoryNotFoundException($"no repository root (with notebooks/ and PureFlux.sln) above {AppContext.BaseDirectory}");
    }

    [Theory]
    [InlineData("gemm_ladder")]
    [InlineData("e2e_stages")]
    [InlineData("sampler_quality")]
    [InlineData("experiment_plot")]
    [InlineData("tome_curve")]
    public async Task Notebook_runs_in_quick_mode_and_writes_png_and_markdown(string name)
    {
        // Backend-restricted passes (CI's OpenCL pass runs inside a PoCL root without NuGet access) re-run only
        // the device tests; the notebooks run once, in the main pass.
        var only = Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS");
        if (!string.IsNullOrWhiteSpace(only)) Assert.Skip($"skipped: notebooks run in the main pass, not with PUREFLUX_TEST_BACKENDS={only}");
        string root = RepoRoot();
        string outDir = Path.Combine(Path.GetTempPath(), $"pureflux-notebook-{name}-{Guid.NewGuid():N}");
        try
        {
            var psi = new ProcessStartInfo("dotnet")
            {
                WorkingDirectory = root,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "run", "-c", "Release", $"notebooks/{name}.cs", "--", "--quick", "--out", outDir }) psi.ArgumentList.Add(a);
            // The test host may run under an MSBuild that set these for its children; the notebook build must find its own.
            foreach (var v in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildLoadMicrosoftTargetsReadOnly" })
                psi.Environment.Remove(v);
            using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
            var stdout = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            var stderr = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            timeout.CancelAfter(Limit);
            try
            {
                await p.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail($"notebooks/{name}.cs did not finish in {Limit.TotalSeconds} s");
            }
            string output = await stdout + await stderr;
            Assert.True(p.ExitCode == 0, $"notebooks/{name}.cs exited {p.ExitCode}:\n{output}");

            string png = Path.Combine(outDir, name + ".png"), md = Path.Combine(outDir, name + ".md");
            Assert.True(File.Exists(png), $"no {png}:\n{output}");
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(png)[..4]);
            Assert.True(new FileInfo(png).Length > 5_000, "the PNG is suspiciously small for a plot");
            string text = File.ReadAllText(md);
            Assert.Contains("| ", text); // a markdown table
            Assert.Contains($"]({name}.png)", text);
            Assert.DoesNotContain("NaN", text);
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }
}
