using PureFlux.Tests.Support;

namespace PureFlux.Tests.Runtime;

/// <summary>
/// Files reached through symbolic links (every file of a Hugging Face cache snapshot is one): sizes and types come
/// from the final target, and a link to anything but a regular file with data is a one-line error naming the link.
/// </summary>
public sealed class SymlinkTests : IDisposable
{
    private readonly ScratchDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    private string WriteBlob(string name)
    {
        string blobs = _tmp["blobs"];
        Directory.CreateDirectory(blobs);
        string path = Path.Combine(blobs, name);
        // A header far longer than the link's own size (the length of "../../blobs/<name>").
        var entries = Enumerable.Range(0, 40).Select(i => SafetensorsWriteEntry.FromFloats($"block.{i}.a_rather_long_tensor_name.weight", [i, i + 0.5f], new Shape(2))).ToList();
        SafetensorsWriter.Write(path, entries);
        return path;
    }

    private string Link(string rel, string target)
    {
        string link = _tmp[rel];
        Directory.CreateDirectory(Path.GetDirectoryName(link)!);
        File.CreateSymbolicLink(link, target);
        return link;
    }

    [Fact]
    public void A_relative_link_reads_its_target()
    {
        WriteBlob("0a1b2c");
        string link = Link("snapshots/rev/transformer/model.safetensors", "../../../blobs/0a1b2c");
        Assert.True(new FileInfo(link).Length < 100, "the link itself is small");
        using var f = SafetensorsFile.Open(link);
        Assert.Equal(40, f.Names.Count());
        Assert.Equal([39f, 39.5f], f.ReadFloats("block.39.a_rather_long_tensor_name.weight"));
        // A chain of links, the last one absolute.
        string chain = Link("snapshots/rev/chain.safetensors", "transformer/model.safetensors");
        using var g = SafetensorsFile.Open(chain);
        Assert.Equal([0f, 0.5f], g.ReadFloats("block.0.a_rather_long_tensor_name.weight"));
        Assert.Equal(new FileInfo(_tmp["blobs/0a1b2c"]).Length, RegularFile.Require(chain));
    }

    private static void AssertOneLine(string message, params string[] parts)
    {
        Assert.DoesNotContain('\n', message);
        foreach (var p in parts) Assert.Contains(p, message);
    }

    [Fact]
    public void A_link_to_a_device_is_a_one_line_error()
    {
        string link = Link("zero.safetensors", "/dev/zero");
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(link));
        AssertOneLine(e.Message, link, "/dev/zero", "not a regular file");
        Assert.StartsWith(link + ": ", e.Message);
        string nul = Link("null.safetensors", "/dev/null");
        AssertOneLine(Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(nul)).Message, nul, "/dev/null");
    }

    [Fact]
    public void Dangling_and_directory_links_are_one_line_errors()
    {
        string dangling = Link("gone.safetensors", "../blobs/nothing-here");
        AssertOneLine(Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(dangling)).Message, dangling, "does not exist");
        Directory.CreateDirectory(_tmp["adir"]);
        string dir = Link("dir.safetensors", "adir");
        AssertOneLine(Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(dir)).Message, dir, "is a directory");
        AssertOneLine(Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(_tmp["adir"])).Message, "is a directory");
        string loop = Link("loop.safetensors", "loop.safetensors");
        AssertOneLine(Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(loop)).Message, loop);
        File.WriteAllBytes(_tmp["empty.safetensors"], []);
        AssertOneLine(Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(_tmp["empty.safetensors"])).Message, "empty");
    }

    [Fact]
    public async Task A_named_pipe_is_refused_without_blocking()
    {
        string fifo = _tmp["pipe"];
        if (!HfCache.MakeFifo(fifo)) Assert.Skip("mkfifo is not available here");
        string link = Link("pipe.safetensors", "pipe");
        var open = Task.Run(() => Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(link)), TestContext.Current.CancellationToken);
        var done = await Task.WhenAny(open, Task.Delay(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken));
        Assert.True(done == open, "opening a link to a pipe blocked");
        AssertOneLine((await open).Message, link, "not a regular file");
    }
}
