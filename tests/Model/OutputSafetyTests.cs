using System.Diagnostics;
using System.Security.Cryptography;
using PureFlux.Cli.Commands;
using PureFlux.Model.Image;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Runtime;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// <c>--out</c> never destroys what is at its path: only an absent path or a writable regular file is written (through a
/// temporary file and a rename), never a directory, link, device, pipe or read-only file, never anything inside the
/// model; every refusal is one line before any compute, and nothing temporary is left behind.
/// </summary>
public sealed class OutputSafetyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-out-safety-").FullName;

    public void Dispose()
    {
        if (!OperatingSystem.IsWindows())
            foreach (var f in Directory.EnumerateFiles(_dir, "*", SearchOption.AllDirectories))
                try { File.SetUnixFileMode(f, UnixFileMode.UserRead | UnixFileMode.UserWrite); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        Directory.Delete(_dir, recursive: true);
    }

    private string P(string name) => Path.Combine(_dir, name);

    private static (int Code, string Out, string Err) Generate(string model, params string[] extra) =>
        Run(["generate", "--model", model, "--prompt", "x", "-W", "32", "-H", "32", "--steps", "1", "--no-prompt-cache", .. extra]);

    /// <summary>A refusal: exit 1, one line on stderr naming the path, nothing on stdout (no compute ran), no temporary file.</summary>
    private void AssertRefused((int Code, string Out, string Err) r, string path, string expected)
    {
        Assert.True(r.Code == 1, $"exit {r.Code}: {r.Err}");
        string line = r.Err.Trim();
        Assert.DoesNotContain('\n', line);
        Assert.StartsWith("error: ", line);
        Assert.Contains(path, line);
        Assert.Contains(expected, line);
        Assert.DoesNotContain("wrote", r.Out);
        AssertNoTemporaryFiles(_dir);
    }

    private static void AssertNoTemporaryFiles(string dir) =>
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories),
            e => e.EndsWith(".partial", StringComparison.Ordinal) || e.EndsWith(".probe", StringComparison.Ordinal));

    [Fact]
    public void A_directory_is_refused()
    {
        Directory.CreateDirectory(P("adir"));
        AssertRefused(Generate(TinySnapshot.Dir, "--out", P("adir")), P("adir"), "is a directory");
        Assert.True(Directory.Exists(P("adir")));
        AssertRefused(Generate(TinySnapshot.Dir, "--out", P("adir") + "/"), P("adir"), "directory");
    }

    [Fact]
    public void A_symbolic_link_is_refused_and_neither_it_nor_its_target_changes()
    {
        File.WriteAllText(P("precious.txt"), "precious");
        File.CreateSymbolicLink(P("link.png"), P("precious.txt"));
        AssertRefused(Generate(TinySnapshot.Dir, "--out", P("link.png")), P("link.png"), "symbolic link");
        Assert.Equal("precious", File.ReadAllText(P("precious.txt")));
        Assert.Equal(P("precious.txt"), new FileInfo(P("link.png")).LinkTarget);

        File.CreateSymbolicLink(P("dangling.png"), P("nowhere.png"));
        AssertRefused(Generate(TinySnapshot.Dir, "--out", P("dangling.png")), P("dangling.png"), "symbolic link");
        Assert.False(File.Exists(P("nowhere.png")));
    }

    [Fact]
    public void A_named_pipe_and_a_device_node_are_refused()
    {
        if (OutputSupport.MakeFifo(P("pipe.png")))
        {
            AssertRefused(Generate(TinySnapshot.Dir, "--out", P("pipe.png")), P("pipe.png"), "named pipe");
            Assert.Equal(FileKind.Fifo, RegularFile.Kind(P("pipe.png")));
        }
        if (File.Exists("/dev/null"))
        {
            // Checked directly: a broken check must not be able to replace the machine's /dev/null.
            var e = Assert.Throws<IOException>(() => PngWriter.EnsureWritable("/dev/null"));
            Assert.Contains("'/dev/null'", e.Message);
            Assert.Contains("character device", e.Message);
            Assert.Throws<IOException>(() => PngWriter.Save("/dev/null", new byte[3 * 16 * 16], 16, 16));
            Assert.Equal(FileKind.CharDevice, RegularFile.Kind("/dev/null"));
        }
    }

    [Fact]
    public void A_read_only_file_is_refused_not_overwritten()
    {
        if (OperatingSystem.IsWindows()) { Assert.Skip("POSIX file modes"); return; }
        File.WriteAllText(P("ro.png"), "keep me");
        File.SetUnixFileMode(P("ro.png"), UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        AssertRefused(Generate(TinySnapshot.Dir, "--out", P("ro.png")), P("ro.png"), "read-only");
        Assert.Equal("keep me", File.ReadAllText(P("ro.png")));
    }

    [Fact]
    public void A_missing_directory_is_refused_in_one_line()
    {
        string path = Path.Combine(P("no-such-dir"), "x.png");
        AssertRefused(Generate(TinySnapshot.Dir, "--out", path), path, "does not exist");
    }

    [Fact]
    public void Nothing_inside_the_model_snapshot_is_written_even_through_a_linked_directory()
    {
        string model = P("model");
        CopyTree(TinySnapshot.Dir, model);
        string weights = Path.Combine(model, "transformer", ModelSnapshot.TransformerWeights);
        byte[] before = SHA256.HashData(File.ReadAllBytes(weights));

        AssertRefused(Generate(model, "--out", weights), weights, "inside the model snapshot");
        AssertRefused(Generate(model, "--out", Path.Combine(model, "new.png")), Path.Combine(model, "new.png"), "inside the model snapshot");
        Directory.CreateSymbolicLink(P("alias"), model);
        string viaAlias = Path.Combine(P("alias"), "transformer", ModelSnapshot.TransformerWeights);
        AssertRefused(Generate(model, "--out", viaAlias), viaAlias, "inside the model snapshot");
        // The --model path given through the alias protects the real directory too.
        AssertRefused(Generate(P("alias"), "--out", weights), weights, "inside the model snapshot");
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(weights)));
        Assert.False(File.Exists(Path.Combine(model, "new.png")));

        // The built-in model's directory is protected whatever --model says.
        string builtIn = Path.Combine(BuiltInModel.Directory, "transformer", ModelSnapshot.TransformerWeights);
        var r = Generate(model, "--out", builtIn);
        Assert.Equal(1, r.Code);
        Assert.Contains("inside the model snapshot", r.Err);
    }

    [Fact]
    public void A_blob_that_a_hugging_face_snapshot_links_to_is_refused()
    {
        // models--x/blobs/<hash> hold the bytes; snapshots/<rev>/... are links into blobs (huggingface-cli's layout).
        string repo = P("models--x"), blobs = Path.Combine(repo, "blobs"), snap = Path.Combine(repo, "snapshots", "rev1");
        Directory.CreateDirectory(blobs);
        string? transformerBlob = null;
        foreach (var file in Directory.GetFiles(TinySnapshot.Dir, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(TinySnapshot.Dir, file);
            string blob = Path.Combine(blobs, Convert.ToHexString(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(rel))).ToLowerInvariant());
            File.Copy(file, blob);
            string link = Path.Combine(snap, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob));
            if (rel == Path.Combine("transformer", ModelSnapshot.TransformerWeights)) transformerBlob = blob;
        }
        Assert.NotNull(transformerBlob);
        byte[] before = SHA256.HashData(File.ReadAllBytes(transformerBlob));
        AssertRefused(Generate(snap, "--out", transformerBlob), transformerBlob, "points to");
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(transformerBlob)));
    }

    [Fact]
    public void Every_png_of_a_batch_is_checked_before_any_compute()
    {
        Directory.CreateDirectory(P("b-1.png"));
        var r = Generate(TinySnapshot.Dir, "--batch-size", "2", "--out", P("b.png"));
        AssertRefused(r, P("b-1.png"), "is a directory");
        Assert.False(File.Exists(P("b-0.png")));

        Directory.CreateDirectory(P("outdir"));
        AssertRefused(Generate(TinySnapshot.Dir, "--batch-size", "2", "--out", P("outdir")), P("outdir"), "is a directory");
    }

    [Fact]
    public void A_writable_regular_file_is_replaced_whole_and_no_temporary_file_remains()
    {
        File.WriteAllText(P("out.png"), "old contents");
        var r = Generate(TinySnapshot.Dir, "--out", P("out.png"));
        Assert.True(r.Code == 0, r.Err);
        var png = File.ReadAllBytes(P("out.png"));
        Assert.Equal(0x89, png[0]);
        Assert.Equal(["out.png"], Directory.GetFileSystemEntries(_dir).Select(p => Path.GetFileName(p)));
    }

    [Fact]
    public void A_failing_snapshot_write_leaves_no_partial_directory()
    {
        // An exception in the middle of make-model (here from its progress callback) removes the temporary tree.
        string target = P("made");
        int calls = 0;
        var e = Assert.Throws<IOException>(() => RandomSnapshot.Write(target, SnapshotPreset.Tiny, 0, _ =>
        {
            if (++calls == 2) throw new IOException("interrupted (simulated)");
        }));
        Assert.Contains("simulated", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        Assert.DoesNotContain(TempFileRegistry.Default.Pending, p => p.StartsWith(_dir, StringComparison.Ordinal));
    }

    [Fact]
    public void A_failing_quantize_leaves_no_partial_directory()
    {
        using var source = ModelSnapshot.Open(TinySnapshot.Dir);
        string target = P("q");
        Assert.Throws<IOException>(() => QuantizedSnapshot.Write(source, PureFlux.Model.Layers.QuantMode.Int8, target,
            _ => throw new IOException("interrupted (simulated)")));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(f, target);
        }
    }
}

/// <summary>The real process: SIGTERM in the middle of a write removes what it was writing and exits 143.</summary>
public sealed class InterruptTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-interrupt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The built pureflux.dll (beside the tests, or in src/Cli/bin of the same configuration), or null.</summary>
    public static string? PurefluxDll()
    {
        string local = Path.Combine(AppContext.BaseDirectory, "pureflux.dll");
        if (File.Exists(local) && File.Exists(Path.Combine(AppContext.BaseDirectory, "pureflux.runtimeconfig.json"))) return local;
        string config = AppContext.BaseDirectory.Contains("/Debug/", StringComparison.Ordinal) ? "Debug" : "Release";
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "src", "Cli", "bin", config, "net10.0", "pureflux.dll");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [Fact]
    public async Task Sigterm_during_make_model_removes_the_partial_snapshot()
    {
        if (OperatingSystem.IsWindows()) Assert.Skip("POSIX signals");
        // A CLI process test, not a device test: it runs once, in the main pass.
        var only = Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS");
        if (!string.IsNullOrWhiteSpace(only)) Assert.Skip($"skipped: CLI signal test runs in the main pass, not with PUREFLUX_TEST_BACKENDS={only}");
        string dll = PurefluxDll() ?? throw new InvalidOperationException("pureflux.dll not found: build src/Cli first");
        string target = Path.Combine(_dir, "klein");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { dll, "make-model", "--preset", "klein-4b", "--random", "--out", target }) psi.ArgumentList.Add(a);
        psi.Environment["PUREFLUX_CACHE"] = Path.Combine(_dir, "cache");
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        var output = p.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        try
        {
            // Wait until the weights are being written inside the temporary directory, then interrupt.
            var sw = Stopwatch.StartNew();
            while (!p.HasExited && sw.Elapsed < TimeSpan.FromSeconds(120)
                && !Directory.EnumerateFiles(_dir, "*.safetensors*", SearchOption.AllDirectories).Any())
                Thread.Sleep(20);
            if (p.HasExited) Assert.Fail("make-model ended before it could be interrupted: " + await err);
            Assert.NotEmpty(Directory.EnumerateFileSystemEntries(_dir, "*.partial"));
            Thread.Sleep(200);
            // libc kill(2), not /bin/kill: CI's OpenCL pass runs inside a minimal root without procps.
            Assert.Equal(0, Kill(p.Id, 15 /* SIGTERM */));
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            await p.WaitForExitAsync(timeout.Token);
            string stderr = await err;
            Assert.True(p.ExitCode == 143, $"exit {p.ExitCode}: {stderr}");
            Assert.Contains("interrupted (SIGTERM)", stderr);
            Assert.Empty(Directory.GetFileSystemEntries(_dir));
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
    }
}
