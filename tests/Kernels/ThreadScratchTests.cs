namespace PureFlux.Tests.Kernels;

/// <summary>The scratch-counter is process-wide: this test runs alone so other tests' GEMM threads do not move it.</summary>
[CollectionDefinition(nameof(ThreadScratchTests), DisableParallelization = true)]
public sealed class ThreadScratchCollection;

/// <summary>
/// The CPU GEMMs keep their packing panels in per-thread native blocks. They must be freed when the thread ends: with raw
/// [ThreadStatic] pointers every retired thread-pool worker leaked up to 5 MiB (the full-size soak's anonymous RSS grew
/// 35–50 MiB per image). Each thread here runs one FP32 and one int8 GEMM on a single-threaded device (so the work runs
/// on that thread) and ends; after a collection no block of theirs may remain.
/// </summary>
[Collection(nameof(ThreadScratchTests))]
public class ThreadScratchTests
{
    [Fact]
    public void Gemm_scratch_of_ended_threads_is_freed()
    {
        const int Threads = 24;
        static void Collect()
        {
            for (int i = 0; i < 3; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        }
        Collect();
        long before = ThreadScratch.LiveBlocks;
        for (int t = 0; t < Threads; t++)
        {
            var worker = new Thread(() =>
            {
                using var dev = new CpuDevice(threads: 1);
                using var x = Tensor.FromArray(dev, Enumerable.Range(0, 64 * 96).Select(i => (i % 17) * 0.01f).ToArray(), 64, 96);
                using var w = Tensor.FromArray(dev, Enumerable.Range(0, 80 * 96).Select(i => (i % 13) * 0.02f - 0.1f).ToArray(), 80, 96);
                using var y = Tensor.Empty(dev, DType.F32, 64, 80);
                Gemm.Linear(x, w, null, y);
                using var q = Quantize.Int8(w);
                QuantizedGemm.Linear(x, q, null, y);
            });
            worker.Start();
            worker.Join();
        }
        long afterRuns = ThreadScratch.LiveBlocks;
        Assert.True(afterRuns > before, $"the GEMMs allocated no scratch ({before} → {afterRuns} blocks): the test does not exercise it");
        Collect();
        long after = ThreadScratch.LiveBlocks;
        Assert.True(after <= before, $"{after - before} scratch blocks of {Threads} ended threads were not freed ({before} before, {afterRuns} after the runs, {after} after a collection)");
    }
}
