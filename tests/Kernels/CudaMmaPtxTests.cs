using System.Text.RegularExpressions;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Kernels;

/// <summary>
/// The tensor-core kernels (inline PTX mma.sync) checked without a GPU: ILGPU's PTX backend compiles them for
/// sm_80 and sm_90, ptxas assembles them, and the result must have the instruction mix they were written for:
/// the expected number of mma.sync, 128-bit shared/global accesses, no spills and a zero-byte stack frame (ILGPU
/// passes inline-asm operands through .local variables; ptxas must promote every one of them to registers, or the
/// mma loop would run through local memory), within the register and shared-memory budget of the launch.
/// Registers / shared memory per kernel go to the test output.
/// </summary>
public partial class CudaMmaPtxTests(ITestOutputHelper output)
{
    /// <summary>(kernel id, expected mma.sync per kernel body, max registers per thread for the launch, shared bytes).</summary>
    public static TheoryData<string, string, int, int, int> Cases()
    {
        var data = new TheoryData<string, string, int, int, int>();
        foreach (var sm in PtxAssemblyTests.Targets)
        {
            // 256 threads per block: 255 registers is the hardware cap; 2 × (A + B) × 128 rows × 64 B = 32 KB.
            data.Add("GemmMma.Bf16Kernel", sm, 32, 255, 32768);
            data.Add("GemmMma.F16Kernel", sm, 32, 255, 32768);
            // 128 threads; S = Q·Kᵀ 4 × 8 × 2 + P·V 4 × 16 mma; K tile 64 × 256 B + Vᵀ tile 128 × 128 B = 32 KB.
            data.Add("FlashAttentionMma.Bf16Kernel", sm, 128, 255, 32768);
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Mma_kernel_assembles_without_spills(string kernel, string sm, int expectedMma, int maxRegisters, int sharedBytes)
    {
        var ptxas = PtxAssembler.FindPtxas();
        if (ptxas is null) Assert.Skip("skipped: ptxas not found (run tools/get-ptxas.sh)");
        string ptx = PtxAssembler.CompileToPtx(KernelMethod.Get(kernel), sm);
        string dir = Path.Combine(PtxAssemblyTests.OutDir, "mma");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, $"{kernel}.{sm}.ptx");
        File.WriteAllText(file, ptx);

        var (exit, text, reports) = PtxAssembler.Assemble(ptxas, file, sm);
        output.WriteLine($"ptxas -arch={sm} -O3 -v {file}");
        output.WriteLine(text.TrimEnd());
        Assert.True(exit == 0, $"{kernel} ({sm}): ptxas exited {exit}:\n{text}");
        var r = Assert.Single(reports);
        output.WriteLine($"{kernel} {sm}: {r}");

        int mma = Count(ptx, "mma.sync.aligned.m16n8k16");
        int ldShared4 = Count(ptx, "ld.shared.v4");
        int stShared4 = Count(ptx, "st.shared.v4");
        int ldGlobal4 = Count(ptx, "ld.global.nc.v4");
        output.WriteLine($"PTX: {mma} mma.sync, {ldShared4} ld.shared.v4, {stShared4} st.shared.v4, {ldGlobal4} ld.global.nc.v4, " +
                         $"{Count(ptx, ".local")} .local");

        Assert.Equal(expectedMma, mma);
        Assert.True(ldShared4 > 0 && stShared4 > 0, $"{kernel}: expected 128-bit shared-memory loads and stores in the PTX");
        Assert.True(ldGlobal4 > 0, $"{kernel}: expected 128-bit global loads in the PTX");
        Assert.Equal(0, r.SpillStoreBytes);
        Assert.Equal(0, r.SpillLoadBytes);
        Assert.Equal(0, r.StackFrameBytes);
        Assert.True(r.Registers <= maxRegisters, $"{kernel} ({sm}): {r.Registers} registers > {maxRegisters}");
        Assert.Equal(sharedBytes, r.SharedBytes);
    }

    private static int Count(string text, string what) => Regex.Matches(text, Regex.Escape(what)).Count;
}
