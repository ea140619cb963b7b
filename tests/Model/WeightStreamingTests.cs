using PureFlux.Model.Snapshot;

namespace PureFlux.Tests.Model;

/// <summary>WeightSource.DropResident: a block's mapped weights leave the resident set and still read back the same.</summary>
public class WeightStreamingTests
{
    [Fact]
    public void Drop_resident_takes_only_the_prefixed_tensors_pages_out_of_the_resident_set()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("resident-set accounting is read from /proc (Linux)");
        string path = Path.Combine(Path.GetTempPath(), $"pureflux-stream-{Guid.NewGuid():N}.safetensors");
        const int N = 12 << 20; // 48 MiB of F32 per tensor
        var a = new float[N];
        var b = new float[N];
        for (int i = 0; i < N; i++) { a[i] = i % 977; b[i] = -(i % 613); }
        try
        {
            SafetensorsWriter.Write(path, [
                SafetensorsWriteEntry.FromFloats("blocks.0.w", a, new Shape(N)),
                SafetensorsWriteEntry.FromFloats("blocks.1.w", b, new Shape(N)),
            ]);
            a = b = null!;
            using var source = WeightSource.OpenFile(path);
            double Touch(string name)
            {
                double sum = 0;
                var bytes = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(source.Bytes(name));
                for (int i = 0; i < bytes.Length; i += 1024) sum += bytes[i]; // one read per 4 KiB page
                return sum;
            }
            double s0 = Touch("blocks.0.w"), s1 = Touch("blocks.1.w");
            long before = StageTimer.CurrentRssBytes();
            source.DropResident("blocks.0.");
            long after = StageTimer.CurrentRssBytes();
            // 48 MiB of pages left (allow 8 MiB of unrelated movement); blocks.1 stayed: dropping it too frees as much again.
            Assert.InRange(before - after, 40L << 20, 56L << 20);
            source.DropResident("blocks.1.");
            Assert.InRange(after - StageTimer.CurrentRssBytes(), 40L << 20, 56L << 20);
            // The data is intact: the pages fault back in from the page cache (or the file).
            Assert.Equal(s0, Touch("blocks.0.w"));
            Assert.Equal(s1, Touch("blocks.1.w"));
        }
        finally { File.Delete(path); }
    }
}
