using System.Diagnostics;
using PureFlux.Model.Config;
using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// Issue 10, defect 8: requests are sized before they run (memory estimate against what the machine has, no
/// arithmetic on user sizes that overflows) and small files are read with a cap (no 2 GB read of /dev/zero).
/// </summary>
public sealed class LimitsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-limits-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void AssertOneLine(string err, params string[] contains)
    {
        Assert.StartsWith("error: ", err);
        Assert.Single(err.TrimEnd().Split('\n'));
        Assert.DoesNotContain("Exception", err);
        foreach (var c in contains) Assert.Contains(c, err);
    }

    [Theory]
    [InlineData(65536, 65536)]      // overflowed an int
    [InlineData(100000, 100000)]    // ran 37 s before an internal shape error
    [InlineData(32768, 32768)]      // ran out of memory
    [InlineData(2147483632, 16)]    // the largest multiple of 16 an int holds
    public void Oversized_requests_are_refused_up_front_with_the_estimate_and_the_memory_available(int width, int height)
    {
        var sw = Stopwatch.StartNew();
        var (code, o, e) = Run("generate", "--model", TinySnapshot.Dir, "-p", "a cat", "--width", $"{width}", "--height", $"{height}",
            "--device", "cpu", "--no-prompt-cache", "--out", Path.Combine(_dir, "x.png"));
        Assert.Equal(1, code);
        AssertOneLine(e.Split('\n', 2)[1], $"--width {width} --height {height}", "needs about", "available", "MemAvailable");
        Assert.DoesNotContain("wrote", o);
        Assert.False(File.Exists(Path.Combine(_dir, "x.png")));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"took {sw.Elapsed}: the refusal must come before any compute");
    }

    [Fact]
    public void Estimate_covers_what_a_run_really_takes_from_the_pool()
    {
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        using var dev = new CpuDevice();
        using var model = new Flux2KleinModel(snapshot, dev);
        var job = new GenerationJob { Prompts = ["a red fox", "a blue bird"], ImagesPerPrompt = 2, Width = 128, Height = 96, Steps = 1 };
        var estimate = model.EstimateMemory(job, cfg: false);
        GenerationEngine.Run(model, job);
        long measured = dev.Pool.Snapshot().PeakReservedBytes;
        double activations = estimate.Stages.Max(s => s.ActivationBytes);
        Assert.True(activations >= measured, $"estimate {activations} bytes < pool peak {measured}");
        Assert.True(activations <= 8.0 * measured, $"estimate {activations} bytes is far above the pool peak {measured}");
        Assert.Equal(["text encoding", "denoising", "decoding"], estimate.Stages.Select(s => s.Name));
        Assert.All(estimate.Stages, s => Assert.True(s.WeightBytes > 0));
    }

    [Fact]
    public void Estimate_grows_with_size_and_batch_and_never_overflows()
    {
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        using var dev = new CpuDevice();
        using var model = new Flux2KleinModel(snapshot, dev);
        double Peak(int w, int h, int b = 1) =>
            model.EstimateMemory(new GenerationJob { Prompts = ["x"], Width = w, Height = h, ImagesPerPrompt = b }, cfg: false).Peak(true).DeviceBytes;
        Assert.True(Peak(512, 512) > Peak(256, 256));
        Assert.True(Peak(256, 256, 4) > Peak(256, 256));
        double huge = Peak(2147483632, 2147483632, 64);
        Assert.True(double.IsFinite(huge) && huge > 1e20);
        var e = Assert.Throws<ResourceLimitException>(() =>
            model.EstimateMemory(new GenerationJob { Prompts = ["x"], Width = 2147483632, Height = 2147483632 }, false).EnsureFits(dev));
        Assert.StartsWith("--width 2147483632 --height 2147483632: needs about ", e.Message);
    }

    [Fact]
    public void Layout_refuses_sizes_whose_latents_cannot_be_addressed()
    {
        using var snapshot = ModelSnapshot.Open(TinySnapshot.Dir);
        using var dev = new CpuDevice();
        using var model = new Flux2KleinModel(snapshot, dev);
        Assert.Equal(4096, model.Layout(1024, 1024).Tokens);
        var e = Assert.Throws<ArgumentException>(() => model.Layout(2147483632, 2147483632));
        Assert.Contains("more than one buffer can hold", e.Message);
    }

    [Fact]
    public void Batch_count_is_bounded_without_overflow()
    {
        var many = Enumerable.Repeat("p", 100).ToArray();
        var e = Assert.Throws<ArgumentException>(() => new GenerationJob { Prompts = many, ImagesPerPrompt = 64 }.Validate());
        Assert.Contains($"at most {GenerationJob.MaxImages} per run", e.Message);
    }

    [Fact]
    public void MemAvailable_is_read_from_meminfo()
    {
        string f = Path.Combine(_dir, "meminfo");
        File.WriteAllText(f, "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12345678 kB\n");
        Assert.Equal(12345678L * 1024, MemoryBudget.MemAvailable(f));
        Assert.Null(MemoryBudget.MemAvailable(Path.Combine(_dir, "none")));
        var (bytes, source) = MemoryBudget.Available(new CpuDevice(1));
        Assert.True(bytes > 0);
        Assert.False(string.IsNullOrEmpty(source));
    }

    [Fact]
    public void Tokenizer_from_dev_zero_is_refused_without_reading_it()
    {
        var sw = Stopwatch.StartNew();
        var (code, _, e) = Run("tokenize", "--tokenizer", "/dev/zero", "hello");
        Assert.Equal(1, code);
        AssertOneLine(e, "/dev/zero: is a character device, not a regular file");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
        var ex = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(_dir));
        Assert.Contains("is a directory", ex.Message);
    }

    [Fact]
    public async Task Oversized_or_special_config_and_tokenizer_files_are_refused()
    {
        string big = Path.Combine(_dir, "big.json");
        using (var fs = File.Create(big)) fs.SetLength(Qwen3Tokenizer.MaxFileBytes + 1); // sparse: nothing is written
        var t = Assert.Throws<TokenizerLoadException>(() => Qwen3Tokenizer.FromFile(big));
        Assert.Equal($"{big}: {Qwen3Tokenizer.MaxFileBytes + 1} bytes is larger than the {Qwen3Tokenizer.MaxFileBytes}-byte limit for a tokenizer file; is it the right file?", t.Message);
        var c = Assert.Throws<ModelConfigException>(() => VaeConfig.Load(big));
        Assert.Contains("larger than the", c.Message);
        c = Assert.Throws<ModelConfigException>(() => VaeConfig.Load("/dev/zero"));
        Assert.Equal("/dev/zero: is a character device, not a regular file; expected a config file", c.Message);

        string fifo = Path.Combine(_dir, "fifo.json");
        using (var p = Process.Start("mkfifo", fifo)) await p.WaitForExitAsync(TestContext.Current.CancellationToken);
        var task = Task.Run(() => Assert.Throws<ModelConfigException>(() => VaeConfig.Load(fifo)).Message, TestContext.Current.CancellationToken);
        var first = await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        Assert.True(first == task, "reading a FIFO with no writer must not block");
        Assert.Contains("is a named pipe (FIFO), not a regular file", await task);

        // A symlink to a regular file (as in a Hugging Face cache snapshot) is read through.
        string target = Path.Combine(_dir, "real.json"), link = Path.Combine(_dir, "link.json");
        File.WriteAllText(target, """{ "latent_channels": 16, "block_out_channels": [32, 64] , "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"] }""");
        File.CreateSymbolicLink(link, target);
        Assert.Equal(16, VaeConfig.Load(link).LatentChannels);
    }
}
