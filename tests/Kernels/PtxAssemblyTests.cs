using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// CUDA code generation without a GPU: every <c>[IlgpuKernel]</c> method is compiled to PTX by ILGPU's PTX backend
/// for sm_80 and sm_90 and assembled by NVIDIA's ptxas (tools/get-ptxas.sh; PUREFLUX_PTXAS overrides). Any ptxas
/// error fails the row. Registers, spills and shared memory per kernel go to the test output and to
/// ptxas-summary.txt in the output folder (PUREFLUX_PTX_OUT, default $TMPDIR/pureflux-ptx).
/// Note: ILGPU writes <c>.target</c> as the lowest architecture that has the capabilities it uses (sm_80 at most in
/// 1.5.3), exactly as it does on a real GPU, where the driver then JIT-compiles that PTX for the device;
/// <c>ptxas -arch=sm_90</c> here does the same step ahead of time.
/// </summary>
public class PtxAssemblyTests(ITestOutputHelper output)
{
    public static readonly string[] Targets = ["sm_80", "sm_90"];

    public static string OutDir => Environment.GetEnvironmentVariable("PUREFLUX_PTX_OUT") is { Length: > 0 } d
        ? d : Path.Combine(Path.GetTempPath(), "pureflux-ptx");

    public static string SummaryPath => Path.Combine(OutDir, "ptxas-summary.txt");

    private static readonly object SummaryLock = new();
    // Rows of one class run one after another; the first row of a test run starts a fresh summary file.
    private static readonly Lazy<bool> SummaryStarted = new(() =>
    {
        Directory.CreateDirectory(OutDir);
        File.WriteAllText(SummaryPath, $"# ptxas -O3 -v per [IlgpuKernel] (ILGPU 1.5.3 PTX backend, PTX ISA 7.8), {DateTime.UtcNow:u}\n");
        return true;
    });

    /// <summary>One row per kernel and target: "Silu.Kernel", "sm_90".</summary>
    public static TheoryData<string, string> KernelsAndTargets
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var k in KernelMethod.All)
                foreach (var sm in Targets)
                    data.Add(k.Id, sm);
            return data;
        }
    }

    [Fact]
    public void Kernel_discovery_finds_the_marked_kernels()
    {
        var all = KernelMethod.All;
        output.WriteLine($"{all.Count} [IlgpuKernel] methods:");
        foreach (var k in all) output.WriteLine($"  {k.Id}{(k.ExplicitlyGrouped ? " (explicitly grouped)" : "")}");
        Assert.Contains(all, k => k.Id == "Silu.Kernel" && !k.ExplicitlyGrouped);
        var bad = all.Where(k => !k.Method.IsStatic || k.Method.IsGenericMethodDefinition).Select(k => k.Id).ToList();
        Assert.True(bad.Count == 0, $"[IlgpuKernel] methods must be static and non-generic: {string.Join(", ", bad)}");
        var ungroupedWithoutIndex = all
            .Where(k => !k.ExplicitlyGrouped)
            .Where(k => k.Method.GetParameters() is not [var first, ..] || !first.ParameterType.FullName!.StartsWith("ILGPU.Index", StringComparison.Ordinal))
            .Select(k => k.Id).ToList();
        Assert.True(ungroupedWithoutIndex.Count == 0,
            $"auto-grouped [IlgpuKernel] methods must take an Index1D/2D/3D first (else mark them explicitlyGrouped: true): {string.Join(", ", ungroupedWithoutIndex)}");
    }

    [Theory, MemberData(nameof(KernelsAndTargets))]
    public void Kernel_assembles_with_ptxas(string kernel, string sm)
    {
        var ptxas = PtxAssembler.FindPtxas();
        if (ptxas is null) Assert.Skip("skipped: ptxas not found (run tools/get-ptxas.sh)");
        var k = KernelMethod.Get(kernel);

        string ptx;
        try { ptx = PtxAssembler.CompileToPtx(k, sm); }
        catch (Exception e) { throw new Xunit.Sdk.XunitException($"{kernel} ({sm}): ILGPU's PTX backend failed: {e}"); }

        _ = SummaryStarted.Value;
        string file = Path.Combine(OutDir, $"{Sanitize(kernel)}.{sm}.ptx");
        File.WriteAllText(file, ptx);
        var (exit, text, reports) = PtxAssembler.Assemble(ptxas, file, sm);
        output.WriteLine($"ptxas -arch={sm} -O3 -v {file}");
        output.WriteLine(text.TrimEnd());

        Assert.True(exit == 0, $"{kernel} ({sm}): ptxas exited {exit}:\n{text}\nPTX: {file}");
        Assert.DoesNotContain("error", text, StringComparison.OrdinalIgnoreCase);
        Assert.True(reports.Count > 0, $"{kernel} ({sm}): no 'Used N registers' line in ptxas -v output:\n{text}");

        lock (SummaryLock)
            foreach (var r in reports)
            {
                string line = $"{kernel,-40} {sm}  {r}";
                output.WriteLine(line);
                File.AppendAllText(SummaryPath, line + "\n");
            }
    }

    /// <summary>
    /// The explicitly grouped path (KernelConfig, shared memory, barriers) and a 2-D auto-grouped one, checked on
    /// probes defined here, so the harness is known to work before such kernels exist in PureFlux.Kernels.
    /// </summary>
    [Theory]
    [InlineData(nameof(ExplicitProbe), true)]
    [InlineData(nameof(Index2DProbe), false)]
    public void Harness_handles_both_grouping_kinds(string probe, bool explicitlyGrouped)
    {
        var ptxas = PtxAssembler.FindPtxas();
        if (ptxas is null) Assert.Skip("skipped: ptxas not found (run tools/get-ptxas.sh)");
        var method = typeof(PtxAssemblyTests).GetMethod(probe, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        var k = new KernelMethod("probe." + probe, method, explicitlyGrouped);
        var ptx = PtxAssembler.CompileToPtx(k, "sm_90");
        string dir = Directory.CreateTempSubdirectory("pureflux-ptx-probe-").FullName;
        try
        {
            string file = Path.Combine(dir, probe + ".ptx");
            File.WriteAllText(file, ptx);
            var (exit, text, reports) = PtxAssembler.Assemble(ptxas, file, "sm_90");
            output.WriteLine(text);
            Assert.True(exit == 0, text);
            var r = Assert.Single(reports);
            if (explicitlyGrouped) Assert.True(r.SharedBytes >= 256 * sizeof(float), $"expected the probe's shared tile in smem: {r}");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static void ExplicitProbe(ILGPU.ArrayView<float> x)
    {
        var tile = ILGPU.SharedMemory.Allocate<float>(256);
        int t = ILGPU.Group.IdxX;
        int i = ILGPU.Grid.GlobalIndex.X;
        tile[t] = i < x.Length ? x[i] : 0f;
        ILGPU.Group.Barrier();
        if (i < x.Length) x[i] = tile[255 - t] * 2f;
    }

    private static void Index2DProbe(ILGPU.Index2D i, ILGPU.Runtime.ArrayView2D<float, ILGPU.Stride2D.DenseX> x) => x[i] = ILGPU.Algorithms.XMath.Sqrt(x[i] + 1f);

    private static string Sanitize(string id) => string.Concat(id.Select(c => char.IsLetterOrDigit(c) || c is '.' or '_' ? c : '_'));
}
