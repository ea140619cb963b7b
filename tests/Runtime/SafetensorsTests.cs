using System.Runtime.InteropServices;
using System.Text;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Runtime;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathFor(string name) => Path.Combine(_dir, name);

    /// <summary>Writes 8-byte length + header + data, exactly as given (for corrupt files).</summary>
    private string WriteRaw(string name, string header, byte[]? data = null, ulong? headerLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var path = PathFor(name);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes(headerLength ?? (ulong)json.Length));
        fs.Write(json);
        if (data is not null) fs.Write(data);
        return path;
    }

    /// <summary>Opening must fail naming the file; returns the message with the path cut out (so checks on the rest mean something).</summary>
    private static string OpenFails(string path)
    {
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.StartsWith(path + ": ", e.Message);
        return e.Message[(path.Length + 2)..];
    }

    [Fact]
    public void Round_trip_with_writer_keeps_dtypes_shapes_values_and_metadata()
    {
        float[] f32 = [1.5f, -2f, 3.25f, 0f, float.MaxValue, -0f];
        ushort[] bf16 = [Bf16.FromFloat(1f), Bf16.FromFloat(-3.5f), Bf16.FromFloat(0.15625f)];
        Half[] f16 = [(Half)0.5f, (Half)(-65504f), (Half)1e-3f, (Half)7f];
        long[] i64 = [long.MinValue, -1, 0, 42];
        byte[] u8 = [0, 1, 255];
        var path = PathFor("rt.safetensors");
        SafetensorsWriter.Write(path,
        [
            SafetensorsWriteEntry.FromFloats("a.f32", f32, Shape.Of(2, 3)),
            SafetensorsWriteEntry.FromBytes("b.bf16", DType.BF16, Shape.Of(3), MemoryMarshal.AsBytes(bf16.AsSpan()).ToArray()),
            SafetensorsWriteEntry.FromBytes("c.f16", DType.F16, Shape.Of(2, 2), MemoryMarshal.AsBytes(f16.AsSpan()).ToArray()),
            SafetensorsWriteEntry.FromBytes("d.i64", DType.I64, Shape.Of(4), MemoryMarshal.AsBytes(i64.AsSpan()).ToArray()),
            SafetensorsWriteEntry.FromBytes("e.u8", DType.U8, Shape.Of(3, 1), u8),
            SafetensorsWriteEntry.FromFloats("f.empty", [], Shape.Of(0, 5)),
            SafetensorsWriteEntry.FromFloats("g.scalar", [7f], Shape.Of()),
        ], new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode ✓" });

        using var f = SafetensorsFile.Open(path);
        Assert.Equal(7, f.Entries.Count);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal("ünïcode ✓", f.Metadata["note"]);
        Assert.Equal([2, 3], f.Entry("a.f32").Shape.ToArray());
        Assert.Equal(DType.BF16, f.Entry("b.bf16").DType);
        Assert.Equal(f32, f.ReadFloats("a.f32"));
        Assert.Equal([1f, -3.5f, 0.15625f], f.ReadFloats("b.bf16"));
        Assert.Equal(f16.Select(h => (float)h).ToArray(), f.ReadFloats("c.f16"));
        Assert.Equal(i64, f.ReadInt64("d.i64"));
        Assert.Equal([0L, 1, 255], f.ReadInt64("e.u8"));
        Assert.Empty(f.ReadFloats("f.empty"));
        Assert.Equal([7f], f.ReadFloats("g.scalar"));
        Assert.Equal(0, f.Entry("g.scalar").Shape.Rank);
        // The writer pads the header to 8 bytes so the data section (and F32/I64 tensors) stay aligned.
        Assert.Equal(0, f.Pointer("a.f32") % 8);

        var dev = new CpuDevice(1);
        using var t = f.Load("c.f16", dev);
        Assert.Equal(f16.Select(h => (float)h).ToArray(), t.ToFloatArray());
        using var t32 = f.LoadF32("b.bf16", dev);
        Assert.Equal(DType.F32, t32.DType);
        Assert.Equal([1f, -3.5f, 0.15625f], t32.ToArray<float>());
    }

    [Fact]
    public void Writer_rejects_duplicate_names_and_wrong_byte_counts_without_leaving_a_file()
    {
        var path = PathFor("dup.safetensors");
        var e = Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path,
            [SafetensorsWriteEntry.FromFloats("w", [1f], Shape.Of(1)), SafetensorsWriteEntry.FromFloats("w", [2f], Shape.Of(1))]));
        Assert.Contains("'w'", e.Message);
        Assert.False(File.Exists(path));

        var ex = Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.Write(path,
            [SafetensorsWriteEntry.FromFloats("short", [1f, 2f], Shape.Of(3))]));
        Assert.Contains("short", ex.Message);
        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public void Missing_file_names_the_path()
    {
        OpenFails(PathFor("does-not-exist.safetensors"));
    }

    [Fact]
    public void File_shorter_than_8_bytes()
    {
        var path = PathFor("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("too short", OpenFails(path));
        File.WriteAllBytes(path, []);
        Assert.Contains("too short", OpenFails(path));
    }

    [Fact]
    public void Header_length_past_the_end()
    {
        var path = WriteRaw("hlen.safetensors", "{}", headerLength: 1000);
        Assert.Contains("past the end", OpenFails(path));
        path = WriteRaw("hlen2.safetensors", "{}", headerLength: ulong.MaxValue);
        Assert.Contains("past the end", OpenFails(path));
    }

    [Fact]
    public void Header_not_json()
    {
        Assert.Contains("not valid JSON", OpenFails(WriteRaw("nojson.safetensors", "{\"a\": [1, 2")));
        Assert.Contains("not valid JSON", OpenFails(WriteRaw("empty.safetensors", "")));
        Assert.Contains("not valid JSON", OpenFails(WriteRaw("binary.safetensors", "\u0001\u0002garbage")));
    }

    [Fact]
    public void Header_not_an_object()
    {
        Assert.Contains("JSON object", OpenFails(WriteRaw("array.safetensors", "[1, 2, 3]")));
        Assert.Contains("JSON object", OpenFails(WriteRaw("string.safetensors", "\"hello\"")));
        var e = OpenFails(WriteRaw("entry.safetensors", "{\"w\": 5}"));
        Assert.Contains("'w'", e);
        Assert.Contains("must be an object", e);
        Assert.Contains("__metadata__", OpenFails(WriteRaw("meta.safetensors", "{\"__metadata__\": [1]}")));
    }

    [Fact]
    public void Unknown_dtype()
    {
        var e = OpenFails(WriteRaw("dtype.safetensors", "{\"w\": {\"dtype\": \"F8_E8M0\", \"shape\": [2], \"data_offsets\": [0, 2]}}", new byte[2]));
        Assert.Contains("'w'", e);
        Assert.Contains("F8_E8M0", e);
        e = OpenFails(WriteRaw("nodtype.safetensors", "{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", new byte[8]));
        Assert.Contains("'w'", e);
        Assert.Contains("dtype", e);
    }

    [Theory]
    [InlineData("[-1]")]
    [InlineData("[2.5]")]
    [InlineData("[\"2\"]")]
    [InlineData("[4294967296]")]
    [InlineData("[65536, 65536, 65536, 65536]")]
    [InlineData("7")]
    public void Negative_or_non_integer_shape(string shape)
    {
        var e = OpenFails(WriteRaw("dims.safetensors", $"{{\"w\": {{\"dtype\": \"F32\", \"shape\": {shape}, \"data_offsets\": [0, 8]}}}}", new byte[8]));
        Assert.Contains("'w'", e);
        Assert.Contains("shape", e);
    }

    [Fact]
    public void Data_offsets_past_the_end()
    {
        var e = OpenFails(WriteRaw("off.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", new byte[12]));
        Assert.Contains("'w'", e);
        Assert.Contains("past the end", e);
    }

    [Theory]
    [InlineData("[8, 0]")]
    [InlineData("[-4, 4]")]
    [InlineData("[0]")]
    [InlineData("[0, 4, 8]")]
    [InlineData("[\"0\", \"8\"]")]
    [InlineData("[0.5, 8]")]
    [InlineData("{\"begin\": 0}")]
    public void Malformed_data_offsets(string offsets)
    {
        var e = OpenFails(WriteRaw("bad-off.safetensors", $"{{\"w\": {{\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {offsets}}}}}", new byte[16]));
        Assert.Contains("'w'", e);
        Assert.Contains("data_offsets", e);
    }

    [Fact]
    public void Offsets_length_differs_from_dtype_times_shape()
    {
        var e = OpenFails(WriteRaw("len.safetensors", "{\"w\": {\"dtype\": \"BF16\", \"shape\": [3, 2], \"data_offsets\": [0, 24]}}", new byte[24]));
        Assert.Contains("'w'", e);
        Assert.Contains("needs 12 bytes", e);
        Assert.Contains("24", e);
    }

    [Fact]
    public void Overlapping_tensors()
    {
        var e = OpenFails(WriteRaw("overlap.safetensors",
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
            new byte[16]));
        Assert.Contains("'a'", e);
        Assert.Contains("'b'", e);
        Assert.Contains("overlap", e);
    }

    [Fact]
    public void Duplicate_tensor_names()
    {
        var e = OpenFails(WriteRaw("dupname.safetensors",
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
            new byte[8]));
        Assert.Contains("'a'", e);
        Assert.Contains("more than once", e);
    }

    [Fact]
    public void Missing_tensor_name_lookup_names_file_and_tensor()
    {
        var path = PathFor("one.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromFloats("present", [1f], Shape.Of(1))]);
        using var f = SafetensorsFile.Open(path);
        Assert.False(f.Contains("absent"));
        foreach (var act in new Action[] { () => f.Entry("absent"), () => f.ReadFloats("absent"), () => f.Load("absent", new CpuDevice(1)) })
        {
            var e = Assert.Throws<SafetensorsException>(act);
            Assert.Contains(path, e.Message);
            Assert.Contains("'absent'", e.Message);
            Assert.Contains("'present'", e.Message);
        }
    }

    [Fact]
    public void Zero_copy_load_keeps_data_valid_after_the_file_is_disposed()
    {
        var path = PathFor("zc.safetensors");
        float[] values = Enumerable.Range(0, 1000).Select(i => i * 0.5f - 7f).ToArray();
        SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromFloats("w", values, Shape.Of(10, 100))]);
        var dev = new CpuDevice(1);

        var f = SafetensorsFile.Open(path);
        var t = f.Load("w", dev);
        Assert.Equal(f.Pointer("w"), t.Pointer); // zero-copy: the tensor points into the mapping
        Assert.True(IsMapped(path));
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => f.Bytes("w").Length);
        Assert.Throws<ObjectDisposedException>(() => f.Load("w", dev));

        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(values, t.ToArray<float>());
        using (var row = t.Slice(3, 2))
            Assert.Equal(values.AsSpan(300, 200).ToArray(), row.ToFloatArray());
        Assert.True(IsMapped(path), "the mapping must stay while a zero-copy tensor is alive");

        t.Dispose(); // the last user: unmaps the file
        if (OperatingSystem.IsLinux()) Assert.False(IsMapped(path), "disposing the last zero-copy tensor must unmap the file");
        t.Dispose(); // twice is harmless
    }

    [Fact]
    public void Load_on_an_ilgpu_device_uploads_a_copy()
    {
        var dev = Backends.Get("ilgpu-cpu");
        var path = PathFor("up.safetensors");
        SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromFloats("w", [1f, 2f, 3f], Shape.Of(3))]);
        Tensor t;
        using (var f = SafetensorsFile.Open(path)) t = f.Load("w", dev);
        using (t)
        {
            Assert.Same(dev, t.Device);
            Assert.Equal([1f, 2f, 3f], t.ToArray<float>());
        }
    }

    [Fact]
    public void Golden_file_opens_and_has_notes()
    {
        var path = Path.Combine(Golden.Dir, "ops.safetensors");
        using var f = SafetensorsFile.Open(path);
        Assert.True(f.Metadata.TryGetValue("golden_notes", out var notes), "ops.safetensors has no golden_notes metadata");
        Assert.False(string.IsNullOrWhiteSpace(notes));
        Assert.True(f.Entries.Count > 2);
        Assert.Equal([1000], f.Entry("silu.x").Shape.ToArray());
        Assert.Equal(1000, f.ReadFloats("silu.out").Length);
    }

    /// <summary>Whether this process has <paramref name="path"/> mapped (Linux /proc/self/maps; true elsewhere).</summary>
    private static bool IsMapped(string path)
    {
        if (!OperatingSystem.IsLinux()) return true;
        var full = Path.GetFullPath(path);
        return File.ReadLines("/proc/self/maps").Any(l => l.EndsWith(full, StringComparison.Ordinal));
    }
    /// <summary>RssFile of this process in bytes (Linux), or null.</summary>
    private static long? RssFileBytes()
    {
        if (!OperatingSystem.IsLinux()) return null;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssFile:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        return null;
    }

    [Fact]
    public void Disposing_a_zero_copy_view_drops_its_pages_but_not_the_data()
    {
        // 64 MiB between two small neighbours: their edge pages must survive the drop.
        const int n = 16 << 20;
        var big = new float[n];
        for (int i = 0; i < n; i += 1024) big[i] = i;
        float[] small = [1f, 2f, 3f];
        string path = PathFor("resident.safetensors");
        SafetensorsWriter.Write(path, [
            SafetensorsWriteEntry.FromFloats("a", small, new Shape(3)),
            SafetensorsWriteEntry.FromFloats("big", big, new Shape(n)),
            SafetensorsWriteEntry.FromFloats("z", small, new Shape(3))]);
        var dev = new CpuDevice(1);
        using var file = SafetensorsFile.Open(path);
        using var a = file.Load("a", dev);
        using var z = file.Load("z", dev);
        long? before = RssFileBytes();
        var view = file.Load("big", dev);
        double sum = 0;
        var span = view.AsSpan<float>();
        for (int i = 0; i < n; i += 1024) sum += span[i]; // touches every page
        long? touched = RssFileBytes();
        view.Dispose();
        long? after = RssFileBytes();
        if (before is not null)
        {
            Assert.True(touched - before > 48L << 20, $"reading 64 MiB should fault it in: RssFile {before} -> {touched}");
            Assert.True(touched - after > 48L << 20, $"disposing the view should drop its pages: RssFile {touched} -> {after}");
        }
        Assert.Equal(Enumerable.Range(0, n / 1024).Sum(i => (double)i * 1024), sum);
        Assert.Equal(small, a.AsSpan<float>().ToArray());
        Assert.Equal(small, z.AsSpan<float>().ToArray());
        using var again = file.Load("big", dev); // the data is still there (from the page cache)
        Assert.Equal(big[1024 * 77], again.AsSpan<float>()[1024 * 77]);
    }
}
