namespace PureFlux.Tests.Runtime;

public class MemoryPoolTests
{
    [Theory]
    [InlineData(0, 256)]
    [InlineData(1, 256)]
    [InlineData(256, 256)]
    [InlineData(257, 384)]
    [InlineData(384, 384)]
    [InlineData(385, 512)]
    [InlineData(512, 512)]
    [InlineData(513, 768)]
    [InlineData(769, 1024)]
    [InlineData(1 << 20, 1 << 20)]
    [InlineData((1 << 20) + 1, 3 << 19)]
    [InlineData(3L << 29, 3L << 29)]
    [InlineData((3L << 29) + 1, 1L << 31)]
    [InlineData(10_000_000_000, 12_884_901_888)]
    public void Size_classes_are_powers_of_two_and_one_and_a_half_times(long bytes, long expected)
    {
        Assert.Equal(expected, MemoryPool.SizeClass(bytes));
    }

    [Fact]
    public void Size_class_holds_the_request_and_wastes_at_most_a_third_of_it()
    {
        for (long b = 256; b < 1L << 34; b = b * 9 / 7 + 1)
        {
            long c = MemoryPool.SizeClass(b);
            Assert.True(c >= b && (c - b) * 3 <= c, $"class {c} for {b} bytes");
            Assert.Equal(c, MemoryPool.SizeClass(c)); // a class is its own class
        }
    }

    [Fact]
    public void Rent_and_return_update_counters_and_reuse_the_same_class()
    {
        using var dev = new CpuDevice(1);
        var pool = dev.Pool;
        Assert.Equal(default, pool.Snapshot());

        var a = pool.Rent(1000); // class 1024
        Assert.Equal(1024, a.Bytes);
        Assert.Equal(new PoolStats(1024, 1024, 1024, 1024, 1, 0), pool.Snapshot());
        var b = pool.Rent(100); // class 256
        Assert.Equal(new PoolStats(1280, 1280, 1280, 1280, 2, 0), pool.Snapshot());

        pool.Return(a);
        Assert.Equal(new PoolStats(256, 1280, 1280, 1280, 2, 0), pool.Snapshot());
        var c = pool.Rent(800); // also class 1024: served from the cache, the same buffer
        Assert.Same(a, c);
        Assert.Equal(new PoolStats(1280, 1280, 1280, 1280, 2, 1), pool.Snapshot());

        var d = pool.Rent(1500); // class 1536: nothing cached, fresh
        Assert.NotSame(a, d);
        Assert.Equal(new PoolStats(2816, 2816, 2816, 2816, 3, 1), pool.Snapshot());

        pool.Return(b); pool.Return(c); pool.Return(d);
        Assert.Equal(new PoolStats(0, 2816, 2816, 2816, 3, 1), pool.Snapshot());

        pool.Trim(); // frees the cache, keeps the history
        Assert.Equal(new PoolStats(0, 2816, 0, 2816, 3, 1), pool.Snapshot());
        Assert.True(a.IsDisposed && b.IsDisposed && d.IsDisposed);
        var e = pool.Rent(1000);
        Assert.NotSame(a, e);
        Assert.Equal(4, pool.Allocations);
        pool.Return(e);
    }

    [Fact]
    public void Tensors_rent_from_and_return_to_their_device_pool()
    {
        using var dev = new CpuDevice(1);
        var t = Tensor.Empty(dev, DType.F32, 10, 30); // 1200 bytes -> class 1536
        Assert.Equal(1536, dev.Pool.LiveBytes);
        using (var view = t.Reshape(300)) { } // views return nothing
        Assert.Equal(1536, dev.Pool.LiveBytes);
        t.Dispose();
        t.Dispose();
        Assert.Equal(0, dev.Pool.LiveBytes);
        using var u = Tensor.Zeros(dev, DType.BF16, Shape.Of(600)); // 1200 bytes again: reused
        Assert.Equal(1, dev.Pool.ReuseHits);
        Assert.All(u.ToArray<ushort>(), v => Assert.Equal(0, v));
    }

    [Fact]
    public void Double_or_foreign_return_is_rejected()
    {
        using var dev = new CpuDevice(1);
        using var other = new CpuDevice(1);
        var a = dev.Pool.Rent(64);
        dev.Pool.Return(a);
        var e = Assert.Throws<ArgumentException>(() => dev.Pool.Return(a));
        Assert.Contains("not rented from this pool", e.Message);
        var b = other.Pool.Rent(64);
        Assert.Throws<ArgumentException>(() => dev.Pool.Return(b));
        other.Pool.Return(b);
        Assert.Equal(0, dev.Pool.LiveBytes);
        Assert.Equal(0, other.Pool.LiveBytes);
    }

    /// <summary>
    /// The denoising loop's contract: once one step has run, further steps with the same shapes are served
    /// entirely from the cache (no new device allocations, no growth of reserved memory).
    /// </summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Steady_state_loop_allocates_nothing_after_warm_up(string backend)
    {
        using var dev = backend == "cpu" ? new CpuDevice(1) : Devices.Open(backend);
        void Step()
        {
            // Shapes of a (shrunken) transformer block: activations, qkv, attention scores, a temporary per head.
            using var x = Tensor.Empty(dev, DType.F32, 64, 96);
            using var qkv = Tensor.Empty(dev, DType.F32, 64, 3 * 96);
            for (int h = 0; h < 3; h++)
            {
                using var scores = Tensor.Empty(dev, DType.F32, 64, 64);
                using var tmp = Tensor.Empty(dev, DType.BF16, 64, 32);
            }
            var mlp = Tensor.Empty(dev, DType.F32, 64, 4 * 96);
            using var y = Tensor.Empty(dev, DType.F32, 64, 96);
            mlp.Dispose(); // out-of-order release
            using var odd = Tensor.Empty(dev, DType.I4, 7, 13);
        }

        Step(); // warm-up
        var warm = dev.Pool.Snapshot();
        Assert.Equal(0, warm.LiveBytes);
        const int N = 20;
        for (int i = 0; i < N; i++) Step();
        var after = dev.Pool.Snapshot();
        Assert.Equal(warm.Allocations, after.Allocations);
        Assert.Equal(warm.ReservedBytes, after.ReservedBytes);
        Assert.Equal(warm.PeakLiveBytes, after.PeakLiveBytes);
        Assert.Equal(0, after.LiveBytes);
        long rentsPerStep = warm.Allocations + warm.ReuseHits;
        Assert.Equal(warm.ReuseHits + N * rentsPerStep, after.ReuseHits);
    }
}
