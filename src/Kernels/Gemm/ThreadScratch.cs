using System.Runtime.InteropServices;

namespace PureFlux.Kernels;

/// <summary>
/// One thread's reusable native scratch block (the GEMMs' packed panels), grown on demand. Held from a
/// <c>[ThreadStatic]</c> field, it is freed by its finalizer once its thread has ended: the raw <c>[ThreadStatic]</c>
/// pointers it replaces leaked their blocks (up to 5 MiB each) every time the thread pool retired a worker and
/// started another — the full-size soak's anonymous RSS grew 35–50 MiB per image from that.
/// </summary>
public sealed unsafe class ThreadScratch
{
    private static long _liveBlocks;
    private void* _block;
    private long _bytes;

    /// <summary>Native blocks allocated and not yet freed, over all threads (for the leak test).</summary>
    public static long LiveBlocks => Interlocked.Read(ref _liveBlocks);

    /// <summary>At least <paramref name="bytes"/> bytes, 64-byte aligned; the contents are not kept when it grows.</summary>
    public void* Get(long bytes)
    {
        if (_bytes < bytes)
        {
            Free();
            _block = NativeMemory.AlignedAlloc((nuint)bytes, 64);
            _bytes = bytes;
            Interlocked.Increment(ref _liveBlocks);
        }
        return _block;
    }

    private void Free()
    {
        if (_block == null) return;
        NativeMemory.AlignedFree(_block);
        _block = null;
        _bytes = 0;
        Interlocked.Decrement(ref _liveBlocks);
    }

    ~ThreadScratch() => Free();
}
