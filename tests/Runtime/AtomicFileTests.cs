namespace PureFlux.Tests.Runtime;

/// <summary>Whole-file writes: a unique temporary file renamed into place, nothing left by a failure or an interruption.</summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-atomic-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string[] Entries() => Directory.GetFileSystemEntries(_dir).Select(p => Path.GetFileName(p)).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public void A_write_that_fails_midway_leaves_the_old_file_whole_and_no_temporary_file()
    {
        string path = Path.Combine(_dir, "out.bin");
        File.WriteAllText(path, "old");
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, fs =>
        {
            fs.Write(new byte[100_000]);
            throw new IOException("disk full (simulated)");
        }));
        Assert.Contains("simulated", e.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["out.bin"], Entries());
        Assert.DoesNotContain(TempFileRegistry.Default.Pending, p => p.StartsWith(_dir, StringComparison.Ordinal));
    }

    [Fact]
    public void A_safetensors_write_that_fails_midway_leaves_nothing()
    {
        string path = Path.Combine(_dir, "w.safetensors");
        Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.Write(path,
        [
            SafetensorsWriteEntry.FromFloats("a", new float[4], new Shape(4)),
            new SafetensorsWriteEntry("b", DType.F32, new Shape(4), _ => throw new InvalidOperationException("interrupted (simulated)")),
        ]));
        Assert.Empty(Entries());
    }

    [Fact]
    public void An_interruption_during_a_write_removes_the_temporary_file_and_refuses_new_ones()
    {
        // What the CLI's SIGINT/SIGTERM handler does (DeleteAll on the registry), arriving while a file is half-written.
        var registry = new TempFileRegistry();
        string path = Path.Combine(_dir, "out.png");
        string? seen = null;
        Assert.Throws<IOException>(() => AtomicFile.Write(path, fs =>
        {
            fs.Write(new byte[1000]);
            seen = Assert.Single(registry.Pending);
            Assert.True(File.Exists(seen));
            Assert.Equal(1, registry.DeleteAll());
            Assert.False(File.Exists(seen));
        }, registry));
        Assert.NotNull(seen);
        Assert.EndsWith(".partial", seen);
        Assert.Empty(Entries());
        Assert.True(registry.Closing);
        Assert.Throws<IOException>(() => AtomicFile.WriteAllBytes(path, [1, 2, 3], registry));
        Assert.Empty(Entries());
    }

    [Fact]
    public void DeleteAll_removes_registered_files_and_directory_trees_and_only_those()
    {
        var registry = new TempFileRegistry();
        string file = Path.Combine(_dir, ".a.partial"), tree = Path.Combine(_dir, ".snapshot.partial"), keep = Path.Combine(_dir, "keep.txt");
        using var r1 = registry.Register(file);
        using var r2 = registry.Register(tree, directory: true);
        File.WriteAllText(file, "x");
        Directory.CreateDirectory(Path.Combine(tree, "transformer"));
        File.WriteAllText(Path.Combine(tree, "transformer", "w.safetensors"), "x");
        File.WriteAllText(keep, "keep");
        Assert.Equal(2, registry.DeleteAll(TimeSpan.FromMilliseconds(10)));
        Assert.Equal(["keep.txt"], Entries());
    }

    [Fact]
    public void Concurrent_writers_of_one_path_each_install_a_complete_file()
    {
        string path = Path.Combine(_dir, "shared.bin");
        var payloads = Enumerable.Range(0, 8).Select(i => Enumerable.Repeat((byte)(i + 1), 200_000).ToArray()).ToArray();
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = payloads.Select(p => new Thread(() =>
        {
            try
            {
                for (int k = 0; k < 20; k++)
                {
                    AtomicFile.WriteAllBytes(path, p);
                    var read = File.ReadAllBytes(path);
                    if (read.Length != p.Length || read.Any(b => b != read[0])) throw new Exception("a torn file was read");
                }
            }
            catch (Exception e) { errors.Add(e); }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Empty(errors);
        Assert.Equal(["shared.bin"], Entries());
    }

    [Fact]
    public void Kind_tells_files_directories_links_devices_and_pipes_apart()
    {
        string file = Path.Combine(_dir, "f"), link = Path.Combine(_dir, "l"), dangling = Path.Combine(_dir, "d");
        File.WriteAllText(file, "x");
        File.CreateSymbolicLink(link, file);
        File.CreateSymbolicLink(dangling, Path.Combine(_dir, "nowhere"));
        Assert.Equal(FileKind.Regular, RegularFile.Kind(file));
        Assert.Equal(FileKind.Directory, RegularFile.Kind(_dir));
        Assert.Equal(FileKind.SymbolicLink, RegularFile.Kind(link));
        Assert.Equal(FileKind.SymbolicLink, RegularFile.Kind(dangling));
        Assert.Equal(FileKind.Absent, RegularFile.Kind(Path.Combine(_dir, "absent")));
        if (File.Exists("/dev/null")) Assert.Equal(FileKind.CharDevice, RegularFile.Kind("/dev/null"));
        if (OutputSupport.MakeFifo(Path.Combine(_dir, "p"))) Assert.Equal(FileKind.Fifo, RegularFile.Kind(Path.Combine(_dir, "p")));
        Assert.Equal(RegularFile.RealPath(file), RegularFile.RealPath(link));
        // followed to the final target: the target's kind and size
        Assert.Equal(FileKind.Regular, RegularFile.Kind(link, followLinks: true, out long size));
        Assert.Equal(1, size);
        Assert.Equal(FileKind.Absent, RegularFile.Kind(dangling, followLinks: true));
        string toNull = Path.Combine(_dir, "n");
        File.CreateSymbolicLink(toNull, "/dev/null");
        if (File.Exists("/dev/null")) Assert.Equal(FileKind.CharDevice, RegularFile.Kind(toNull, followLinks: true));
    }
}

/// <summary>Helpers for tests of what may be written over.</summary>
public static class OutputSupport
{
    /// <summary>Creates a named pipe with mkfifo(1); false where there is none.</summary>
    public static bool MakeFifo(string path)
    {
        if (OperatingSystem.IsWindows()) return false;
        try
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
