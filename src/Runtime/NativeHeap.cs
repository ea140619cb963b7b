using System.Runtime.InteropServices;

namespace PureFlux.Runtime;

/// <summary>
/// glibc's malloc settings for this engine's allocation pattern: operators allocate multi-megabyte scratch (packed
/// attention K/V, convolution weight panels, quantized activations) and free it within the call. glibc serves such
/// blocks with mmap until the first one is freed, then raises its mmap threshold to that size (up to 32 MiB), so later
/// blocks come from the per-thread arenas, whose freed space stays mapped and fragments: the full-size soak's
/// anonymous RSS crept up 6 MiB per image. A fixed threshold (which also turns the adjustment off) returns every block
/// of 256 KiB or more to the system when it is freed, for one mmap and its page faults per block (microseconds next to
/// the operators that use them). A no-op off Linux or without glibc's <c>mallopt</c>.
/// </summary>
public static partial class NativeHeap
{
    private const int MMmapThreshold = -3;
    /// <summary>Blocks of at least this many bytes are mapped and unmapped on their own.</summary>
    public const int MmapThresholdBytes = 256 << 10;
    private static int _configured;

    /// <summary>Applies the settings once per process (called by every device's constructor); true where they took effect.</summary>
    public static bool Configure()
    {
        if (Interlocked.Exchange(ref _configured, 1) != 0 || !OperatingSystem.IsLinux()) return false;
        try { return Mallopt(MMmapThreshold, MmapThresholdBytes) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int param, int value);
}
