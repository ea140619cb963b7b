namespace PureFlux.Tests.Support;

/// <summary>
/// Which golden pipeline files run on the ILGPU CPU emulator. Under the parallel test run the emulator's worker threads
/// compete with every other test class, and its pipelines slow down many times over (the main CI pass went past its
/// 1650 s limit with all of them). So the README's test command runs a representative subset there, and the rest run
/// with <c>PUREFLUX_EMULATOR_PIPELINES=extra</c> in a serial pass of their own, which CI runs for the Qwen-Image and
/// FLUX.1 classes on the accelerator with 2-thread warps, 2 warps per group (<c>PUREFLUX_TEST_ILGPU_CPU=2x2</c>):
/// the emulator runs every thread of a group as an OS thread that meets the others at each barrier, and FLUX.1's 64²
/// dev pipeline (528 tokens: 512 T5 + 16 image) took 175 s at ILGPU's default 4x4 and 50–62 s at 2x2 on 2 cores.
/// By hand: <c>PUREFLUX_EMULATOR_PIPELINES=extra PUREFLUX_TEST_BACKENDS=ilgpu-cpu PUREFLUX_TEST_ILGPU_CPU=2x2 dotnet test -c Release --parallel none --filter "FullyQualifiedName~Flux1GoldenTests"</c>.
/// </summary>
public static class EmulatorPipelines
{
    private static string Mode => Environment.GetEnvironmentVariable("PUREFLUX_EMULATOR_PIPELINES") ?? "";

    /// <summary>True when this pass runs only the extra emulator pipelines (every other row skips).</summary>
    public static bool ExtraPass => Mode == "extra";

    /// <summary>Skips a row that belongs to the other pass: in the main run, the emulator pipelines outside
    /// <paramref name="representative"/>; in the extra pass, everything but those.</summary>
    public static void SkipUnlessThisPass(string backend, string file, IReadOnlyCollection<string> representative)
    {
        bool extra = backend == "ilgpu-cpu" && file.StartsWith("pipeline_", StringComparison.Ordinal) && !representative.Contains(file);
        if (extra && !ExtraPass)
            Assert.Skip("skipped: an emulator pipeline outside the representative set; it runs in a serial pass with PUREFLUX_EMULATOR_PIPELINES=extra");
        if (!extra && ExtraPass)
            Assert.Skip("skipped: PUREFLUX_EMULATOR_PIPELINES=extra runs only the extra emulator pipelines");
    }
}
