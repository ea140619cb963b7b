using PureFlux.Model.Verification;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>
/// The "sampling" golden set (tests/golden/sampling, from diffusers unmodified): every scheduler sequence and every
/// pipeline run — klein base CFG with Euler / DPM-Solver++ 2M / UniPC, one and two reference images, batched prompts
/// with both noise conventions — rebuilt from the call its manifest records and run through the one generation loop,
/// on cpu and ilgpu-cpu (and opencl/cuda where present). The scheduler sequences are SamplerGoldenTests' (per sampler,
/// with x0 and corrector checks); `pureflux verify tests/golden/sampling` runs both. Tolerances (GoldenVerifier): timesteps and sigmas exact,
/// sampler samples 1e-6 relative, pipelines 1e-3 relative to each tensor's max magnitude.
/// </summary>
public class SamplingGoldenTests
{
    private static string Dir => Path.Combine(Golden.Dir, "sampling");

    public static readonly string[] Files =
    [
        "cfg_h64_w64.safetensors", "cfg_h80_w48.safetensors", "cfg_dpmpp2m_h64_w48.safetensors",
        "cfg_unipc_h64_w48.safetensors", "ref1.safetensors", "ref2_h48_w64.safetensors",
        "batch_2prompts_x2_h32_w48.safetensors", "batch_generators_h48_w32.safetensors",
    ];

    // Rows each file must produce at least (a file that silently compares nothing must fail).
    private static int MinimumRows(string file) => file switch
    {
        "ref1.safetensors" => 26,
        _ => 19,
    };

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var b in Backends.Ids)
            foreach (var f in Files)
                // ILGPU's CPU emulator takes ~28 s a file: there, one CFG + two-reference run and one batch run cover the
                // batch axis, reference tokens and CFG; the samplers' device steps are SamplerGoldenTests' on every backend.
                if (b != "ilgpu-cpu" || f is "ref2_h48_w64.safetensors" or "batch_generators_h48_w32.safetensors")
                    data.Add(b, f);
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Matches_diffusers(string backend, string file)
    {
        var dev = Backends.Get(backend);
        var rows = new GoldenVerifier(Dir, dev).RunSamplingFile(file);
        Assert.True(rows.Count >= MinimumRows(file), $"{file}: only {rows.Count} tensors compared");
        var failed = rows.Where(r => !r.Passed).Select(r => $"{r.Component} {r.Tensor}: rel {r.Relative:g3} > {r.Tolerance:g2}").ToArray();
        Assert.True(failed.Length == 0, $"{file} on {backend}:\n" + string.Join("\n", failed.Take(20)));
    }

    [Fact]
    public void The_manifest_lists_every_file_tested_here()
    {
        var listed = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Dir, "manifest.json")))
            .RootElement.GetProperty("files").EnumerateObject().Select(p => p.Name).ToHashSet();
        foreach (var f in Files) Assert.Contains(f, listed);
    }

    [Fact]
    public void Verify_fails_when_a_listed_file_is_missing()
    {
        string copy = Path.Combine(Path.GetTempPath(), $"pureflux-sampling-{Environment.ProcessId}-{Guid.NewGuid():N}");
        string set = Path.Combine(copy, "sampling");
        Directory.CreateDirectory(set);
        try
        {
            foreach (var f in new[] { "manifest.json", "schedulers.json", "schedulers.safetensors" })
                File.Copy(Path.Combine(Dir, f), Path.Combine(set, f));
            CopyDir(Path.Combine(Golden.Dir, "model"), Path.Combine(copy, "model"));
            var rows = new GoldenVerifier(set, Backends.Get("cpu")).Run();
            Assert.Contains(rows, r => r.Component == "cfg_h64_w64.safetensors" && !r.Passed);
            Assert.Contains(rows, r => r.Component.StartsWith("scheduler ", StringComparison.Ordinal) && r.Passed);
        }
        finally { Directory.Delete(copy, recursive: true); }
    }

    private static void CopyDir(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(d.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, f.Replace(from, to));
    }
}
