namespace PureFlux.Tests.Runtime;

/// <summary>Resident-set measurements: run alone, so no other test's allocations move the counter.</summary>
[CollectionDefinition(nameof(NativeHeapTests), DisableParallelization = true)]
public sealed class NativeHeapCollection;

/// <summary>
/// The glibc setting <see cref="NativeHeap"/> applies: a freed multi-megabyte block leaves the resident set at once.
/// Without it glibc raises its mmap threshold at the first such free, and later blocks of that size come from its
/// heap and stay resident after free (trimmed only past twice the threshold).
/// </summary>
[Collection(nameof(NativeHeapTests))]
public class NativeHeapTests
{
    [Fact]
    public unsafe void A_freed_large_block_leaves_the_resident_set()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("glibc malloc only");
        using (new CpuDevice(1)) { } // applies the setting (once per process)
        Assert.False(NativeHeap.Configure()); // already done: a second call changes nothing
        const int Bytes = 8 << 20;
        // The free that makes an unconfigured glibc move its threshold to 8 MiB.
        System.Runtime.InteropServices.NativeMemory.Free(System.Runtime.InteropServices.NativeMemory.Alloc(Bytes));
        long released = 0;
        for (int i = 0; i < 3; i++)
        {
            byte* p = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc(Bytes);
            new Span<byte>(p, Bytes).Fill((byte)(i + 1));
            long touched = Anon();
            System.Runtime.InteropServices.NativeMemory.Free(p);
            released = Math.Max(released, touched - Anon());
        }
        Assert.True(released >= 6L << 20, $"freeing a touched 8 MiB block released {released >> 10} KiB of anonymous RSS (expected about 8 MiB)");
    }

    private static long Anon()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) return long.Parse(line[8..].Trim().Split(' ')[0]) << 10;
        return 0;
    }
}
