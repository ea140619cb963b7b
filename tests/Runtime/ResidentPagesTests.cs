using System.Globalization;
using System.IO.MemoryMappedFiles;

namespace PureFlux.Tests.Runtime;

public sealed class ResidentPagesTests
{
    /// <summary>Resident KiB of the mapping that starts at <paramref name="start"/>, from /proc/self/smaps.</summary>
    private static long ResidentKiB(nint start)
    {
        string want = ((long)start).ToString("x", CultureInfo.InvariantCulture) + "-";
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            string first = line.Split(' ')[0];
            if (first.Contains('-') && first.All(c => c == '-' || char.IsAsciiHexDigit(c))) // a mapping's header line
                inside = line.StartsWith(want, StringComparison.Ordinal);
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
                return long.Parse(line[4..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        throw new InvalidOperationException($"no mapping at 0x{want}");
    }

    [Fact]
    public unsafe void Populate_maps_a_read_only_file_range_in_and_drop_takes_it_out()
    {
        if (!OperatingSystem.IsLinux()) return; // madvise is Linux-only; elsewhere both are documented no-ops
        string path = Path.GetTempFileName();
        try
        {
            const int bytes = 8 << 20;
            var data = new byte[bytes];
            new Random(1).NextBytes(data);
            File.WriteAllBytes(path, data);
            using var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            using var view = map.CreateViewAccessor(0, bytes, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            try
            {
                nint start = (nint)p;
                Assert.True(ResidentKiB(start) < bytes / 1024 / 2, "a fresh mapping should not be resident yet");
                if (!ResidentPages.Populate(start, bytes)) return; // kernel older than 5.14: nothing to check
                Assert.Equal(bytes / 1024, ResidentKiB(start));
                Assert.Equal(data[12345], p[12345]); // the data is the file's, unchanged
                ResidentPages.Drop(start, bytes);
                Assert.Equal(0, ResidentKiB(start));
                Assert.Equal(data[bytes - 1], p[bytes - 1]); // and still readable after the drop
                Assert.False(ResidentPages.Populate(start, 0));
            }
            finally { view.SafeMemoryMappedViewHandle.ReleasePointer(); }
        }
        finally { File.Delete(path); }
    }
}
