using PureFlux.Model.Verification;
using PureFlux.Model.ZImage;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// Every file of the public Z-Image golden set (tests/golden/zimage) through <see cref="ZImageGoldenSet"/> — the code
/// `pureflux verify` runs — on each backend: scheduler and tokenizer exactly, forwards ≤ 2e-4 and pipelines ≤ 1e-3
/// relative to each tensor's max magnitude, 8-bit images within one level.
/// </summary>
public class ZImageGoldenTests
{
    private static string Dir => Path.Combine(Golden.Dir, "zimage");

    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        var files = new ZImageGoldenSet(Dir, null!, (_, _, _, _, _) => { }).Files().ToArray();
        foreach (var backend in new[] { "cpu", "ilgpu-cpu", "opencl", "cuda" })
            foreach (var f in files)
            {
                if (f is "scheduler.json" or "tokenizer-ids.json" && backend != "cpu") continue; // host-side only
                d.Add(backend, f);
            }
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Golden_file_passes(string backend, string file)
    {
        var dev = Backends.Get(backend);
        var rows = new List<VerifyRow>();
        new ZImageGoldenSet(Dir, dev, (c, n, e, a, tol) =>
        {
            double maxDiff = 0, maxRef = 0;
            Assert.True(e.Length == a.Length, $"{file} on {backend}: {c} {n}: {a.Length} values, golden {e.Length}");
            for (int i = 0; i < e.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs((double)a[i] - e[i]));
                maxRef = Math.Max(maxRef, Math.Abs((double)e[i]));
            }
            if (!e.All(float.IsFinite) || !a.All(float.IsFinite)) maxDiff = double.NaN;
            rows.Add(new VerifyRow(c, n, maxDiff, maxRef == 0 ? maxDiff : maxDiff / maxRef, tol));
        }).Verify(file);
        Assert.NotEmpty(rows);
        var failed = rows.Where(r => !r.Passed).Select(r => $"{r.Component} {r.Tensor}: rel {r.Relative:g3} > {r.Tolerance:g2}").ToArray();
        Assert.True(failed.Length == 0, $"{file} on {backend}: {failed.Length} of {rows.Count} failed: {string.Join("; ", failed.Take(8))}");
    }

    [Fact]
    public void Verify_runs_the_whole_set_and_every_row_passes()
    {
        using var cpu = new CpuDevice();
        var rows = new GoldenVerifier(Dir, cpu).Run();
        Assert.True(rows.Count > 100, $"only {rows.Count} rows");
        var failed = rows.Where(r => !r.Passed).Select(r => $"{r.Component} {r.Tensor}").ToArray();
        Assert.True(failed.Length == 0, string.Join("; ", failed.Take(10)));
    }
}
