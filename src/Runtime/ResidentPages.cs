using System.Runtime.InteropServices;

namespace PureFlux.Runtime;

/// <summary>
/// Drops pages of a read-only file mapping from the process's resident set (Linux <c>madvise(MADV_DONTNEED)</c>).
/// For a shared file mapping this discards nothing: the data stays in the page cache and a later read faults it back
/// in. Only whole pages inside the range are dropped, so a neighbouring tensor sharing the edge pages is untouched.
/// A no-op on other systems or when the call fails (it only ever affects memory accounting, never results).
/// </summary>
public static partial class ResidentPages
{
    private const int MadvWillNeed = 3, MadvDontNeed = 4;

    /// <summary>Asks the kernel to start reading a mapped range in (madvise WILLNEED: asynchronous readahead; a no-op off Linux).</summary>
    public static void Prefetch(nint start, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes <= 0) return;
        long page = Environment.SystemPageSize;
        long first = (long)start / page * page; // WILLNEED may round outward: reading a neighbour's page early is harmless
        try { _ = Madvise((nint)first, (nuint)((long)start + bytes - first), MadvWillNeed); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    public static void Drop(nint start, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes <= 0) return;
        long page = Environment.SystemPageSize;
        long first = ((long)start + page - 1) / page * page;
        long end = ((long)start + bytes) / page * page;
        if (end <= first) return;
        try { _ = Madvise((nint)first, (nuint)(end - first), MadvDontNeed); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint addr, nuint length, int advice);
}
