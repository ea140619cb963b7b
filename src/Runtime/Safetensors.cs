using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;

namespace PureFlux.Runtime;

/// <summary>Raised for a malformed or inconsistent safetensors file; the message names the file and tensor.</summary>
public sealed class SafetensorsException(string message) : Exception(message);

/// <summary>One tensor's header entry: dtype, shape and byte range within the data section.</summary>
public sealed record SafetensorsEntry(string Name, DType DType, Shape Shape, long Begin, long End)
{
    public long Bytes => End - Begin;
}

/// <summary>
/// A memory-mapped safetensors file (8-byte little-endian header length, JSON header, raw data).
/// Every entry is validated on open: known dtype, non-negative shape, offsets inside the data section,
/// byte length matching dtype × shape, no overlaps. Tensors can be read zero-copy on the CPU.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Headers larger than this are treated as corrupt (the format's reference reader uses 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsEntry> _entries;
    private int _refs = 1;

    private SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr,
        long dataStart, Dictionary<string, SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        _dataStart = dataStart;
        _entries = entries;
        Metadata = metadata;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyCollection<SafetensorsEntry> Entries => _entries.Values;
    public IEnumerable<string> Names => _entries.Keys;
    public bool Contains(string name) => _entries.ContainsKey(name);

    public SafetensorsEntry Entry(string name) =>
        _disposed ? throw new ObjectDisposedException($"safetensors file {Path}")
        : _entries.TryGetValue(name, out var e) ? e
            : throw new SafetensorsException($"{Path}: no tensor named '{name}' (the file has {_entries.Count} tensors{Sample()})");

    private string Sample() => _entries.Count == 0 ? "" : ", e.g. '" + string.Join("', '", _entries.Keys.Order().Take(3)) + "'";

    /// <summary>Opens and validates a file.</summary>
    /// <exception cref="SafetensorsException">Missing, truncated or corrupt file; the message says what is wrong.</exception>
    public static SafetensorsFile Open(string path)
    {
        // A link flattened into a text file by a copy that kept no links is followed to the file it names.
        string shown = path;
        path = FlattenedLink.Resolve(path, out string? linkProblem);
        if (linkProblem is not null) throw new SafetensorsException($"{shown}: {linkProblem}");
        // Sizes and types come from the final target of any symbolic link (a Hugging Face cache snapshot is all links),
        // checked before opening: a pipe would block the open, a device maps as an empty file.
        if (RegularFile.Problem(path, out _) is { } problem) throw new SafetensorsException($"{path}: {problem}");
        FileStream stream;
        try { stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SafetensorsException($"{path}: cannot open ({e.Message})"); }
        long length;
        MemoryMappedFile map;
        try
        {
            length = stream.Length; // the opened file's own size (fstat), whatever the path went through
            if (length < 8) throw new SafetensorsException($"{path}: {length} bytes is too short for a safetensors file (needs an 8-byte header length)");
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        }
        catch (Exception e)
        {
            stream.Dispose();
            if (e is IOException or UnauthorizedAccessException) throw new SafetensorsException($"{path}: cannot map ({e.Message})");
            throw;
        }
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* ptr = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;
            var (entries, metadata, dataStart) = ParseHeader(path, ptr, length);
            return new SafetensorsFile(path, map, view, ptr, dataStart, entries, metadata);
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    private static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>, long) ParseHeader(string path, byte* ptr, long length)
    {
        ulong headerLen = *(ulong*)ptr;
        if (headerLen > (ulong)(length - 8))
            throw new SafetensorsException($"{path}: header length {headerLen} runs past the end of the file ({length} bytes): truncated or not a safetensors file");
        if (headerLen > MaxHeaderBytes)
            throw new SafetensorsException($"{path}: header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit: corrupt file");
        long dataStart = 8 + (long)headerLen;
        long dataLen = length - dataStart;
        var headerSpan = new ReadOnlySpan<byte>(ptr + 8, (int)headerLen);
        // The format requires UTF-8; .NET would only notice a bad byte (or an escaped lone surrogate) when a name is read.
        long badByte = RegularFile.InvalidUtf8Offset(headerSpan);
        if (badByte >= 0)
            throw new SafetensorsException($"{path}: header is not valid UTF-8 (byte {8 + badByte} of the file): corrupt or not a safetensors file");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(headerSpan.ToArray()); }
        catch (JsonException e) { throw new SafetensorsException($"{path}: header is not valid JSON ({e.Message.ReplaceLineEndings(" ")})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new SafetensorsException($"{path}: header must be a JSON object");
        try { return ParseEntries(path, doc.RootElement, dataStart, dataLen); }
        catch (InvalidOperationException e)
        {
            throw new SafetensorsException($"{path}: header holds a name or string that is not valid text ({e.Message})");
        }
        catch (SafetensorsException e) when (e.Message.ReplaceLineEndings(" ") != e.Message)
        {
            throw new SafetensorsException(e.Message.ReplaceLineEndings(" ")); // a tensor name with a line break: keep the error one line
        }
    }

    private static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>, long) ParseEntries(string path, JsonElement root, long dataStart, long dataLen)
    {
        var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>();
        foreach (var prop in root.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw new SafetensorsException($"{path}: __metadata__ must be an object of strings");
                foreach (var m in prop.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                continue;
            }
            if (entries.ContainsKey(prop.Name)) throw new SafetensorsException($"{path}: tensor '{prop.Name}' appears more than once in the header");
            entries[prop.Name] = ParseEntry(path, prop, dataLen);
        }

        // Overlap check: sort by start and require each tensor to begin at or after the previous end.
        SafetensorsEntry? prev = null;
        foreach (var e in entries.Values.Where(e => e.Bytes > 0).OrderBy(e => e.Begin))
        {
            if (prev is not null && e.Begin < prev.End)
                throw new SafetensorsException($"{path}: tensor '{e.Name}' bytes [{e.Begin}, {e.End}) overlap tensor '{prev.Name}' [{prev.Begin}, {prev.End})");
            prev = e;
        }
        return (entries, metadata, dataStart);
    }

    private static SafetensorsEntry ParseEntry(string path, JsonProperty prop, long dataLen)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object) throw new SafetensorsException($"{path}: tensor '{name}': header entry must be an object");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new SafetensorsException($"{path}: tensor '{name}': missing dtype");
        if (!DTypeInfo.TryParseSafetensors(dt.GetString()!, out var dtype))
            throw new SafetensorsException($"{path}: tensor '{name}': unknown dtype '{dt.GetString()}' (expected F32, F16, BF16, I8, U8, BOOL, I32, I64)");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new SafetensorsException($"{path}: tensor '{name}': missing shape");
        var dims = new List<int>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dv) || dv < 0 || dv > int.MaxValue)
                throw new SafetensorsException($"{path}: tensor '{name}': bad shape {sh.GetRawText()} (dimensions must be non-negative integers)");
            dims.Add((int)dv);
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new SafetensorsException($"{path}: tensor '{name}': data_offsets must be [begin, end]");
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new SafetensorsException($"{path}: tensor '{name}': bad data_offsets {off.GetRawText()}");
        if (end > dataLen)
            throw new SafetensorsException($"{path}: tensor '{name}': data_offsets {off.GetRawText()} run past the end of the data ({dataLen} bytes): file truncated?");
        long elements = 1;
        foreach (var d in dims)
            if (d != 0 && elements > long.MaxValue / 8 / d) { elements = -1; break; } else elements *= d;
        if (elements < 0)
            throw new SafetensorsException($"{path}: tensor '{name}': shape {sh.GetRawText()} is too large");
        var shape = new Shape(dims.ToArray());
        long need = dtype.ByteCount(shape.Count);
        if (end - begin != need)
            throw new SafetensorsException($"{path}: tensor '{name}': {dtype}{shape} needs {need} bytes but data_offsets span {end - begin}");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    /// <summary>The raw bytes of a tensor (valid while the file is open).</summary>
    public ReadOnlySpan<byte> Bytes(string name)
    {
        var e = Entry(name);
        return new ReadOnlySpan<byte>(_base + _dataStart + e.Begin, checked((int)e.Bytes));
    }

    /// <summary>Pointer to a tensor's bytes in the mapping (valid while the file is open).</summary>
    public nint Pointer(string name) => (nint)(_base + _dataStart + Entry(name).Begin);

    /// <summary>
    /// The tensor on <paramref name="device"/>, in its stored dtype. On the CPU this is zero-copy: a view of
    /// the mapping that keeps the file mapped until the tensor is disposed. Elsewhere it is uploaded.
    /// </summary>
    public Tensor Load(string name, Device device)
    {
        var e = Entry(name);
        if (device is CpuDevice)
        {
            Interlocked.Increment(ref _refs);
            nint at = (nint)(_base + _dataStart + e.Begin);
            var buffer = new CpuBuffer(device, at, Math.Max(1, e.Bytes), new Releaser(this, at, e.Bytes));
            return new Tensor(buffer, 0, e.DType, e.Shape, name, ownsBuffer: true);
        }
        var t = Tensor.Empty(device, e.DType, e.Shape, name);
        t.CopyFrom(Bytes(name));
        return t;
    }

    /// <summary>Values as float32 (F32, F16, BF16 and integer dtypes are converted).</summary>
    public float[] ReadFloats(string name)
    {
        var e = Entry(name);
        var bytes = Bytes(name);
        return e.DType switch
        {
            DType.F32 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray(),
            DType.BF16 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes).ToArray(), Bf16.ToFloat),
            DType.F16 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, System.Half>(bytes).ToArray(), h => (float)h),
            DType.I64 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(), x => (float)x),
            DType.I32 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray(), x => (float)x),
            DType.U8 => Array.ConvertAll(bytes.ToArray(), x => (float)x),
            DType.I8 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, sbyte>(bytes).ToArray(), x => (float)x),
            DType.F8E4M3 or DType.F8E5M2 => Array.ConvertAll(bytes.ToArray(), x => Fp8.Decode(x, Fp8.FormatOf(e.DType)!.Value)),
            _ => throw new SafetensorsException($"{Path}: tensor '{name}': cannot read {e.DType} as float"),
        };
    }

    /// <summary>Integer values (I64, I32, U8, I8) as long.</summary>
    public long[] ReadInt64(string name)
    {
        var e = Entry(name);
        var bytes = Bytes(name);
        return e.DType switch
        {
            DType.I64 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(bytes).ToArray(),
            DType.I32 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(bytes).ToArray(), x => (long)x),
            DType.U8 => Array.ConvertAll(bytes.ToArray(), x => (long)x),
            DType.I8 => Array.ConvertAll(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, sbyte>(bytes).ToArray(), x => (long)x),
            _ => throw new SafetensorsException($"{Path}: tensor '{name}': expected an integer dtype, found {e.DType}"),
        };
    }

    /// <summary>Loads a tensor converted to F32 on <paramref name="device"/> (a pooled copy).</summary>
    public Tensor LoadF32(string name, Device device)
    {
        var e = Entry(name);
        return Tensor.FromSpan<float>(device, ReadFloats(name), e.Shape, DType.F32, name);
    }

    /// <summary>
    /// Ends one zero-copy view: its pages leave this process's resident set at once (they stay in the page cache), then
    /// the file's reference is dropped. Without the first step a weight that was read once and converted (quantized at
    /// load time) would stay resident until the whole file is unmapped — the BF16 copy beside the int8 one.
    /// </summary>
    private sealed class Releaser(SafetensorsFile file, nint start, long bytes) : IDisposable
    {
        private int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            ResidentPages.Drop(start, bytes);
            file.Release();
        }
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _refs) != 0) return;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }

    /// <summary>Closes the file once every zero-copy tensor taken from it is disposed too.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Release();
    }

    private bool _disposed;
}

/// <summary>One tensor to write: its header fields and a callback that writes exactly its bytes.</summary>
public sealed record SafetensorsWriteEntry(string Name, DType DType, Shape Shape, Action<Stream> WriteData)
{
    public static SafetensorsWriteEntry FromFloats(string name, float[] data, Shape shape) =>
        new(name, DType.F32, shape, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));

    public static SafetensorsWriteEntry FromBytes(string name, DType dtype, Shape shape, byte[] data) =>
        new(name, dtype, shape, s => s.Write(data));
}

public static class SafetensorsWriter
{
    /// <summary>
    /// Writes a safetensors file, streaming each tensor's data. Writes to a unique temporary file beside it and renames
    /// it at the end (<see cref="AtomicFile"/>), so a failure or an interruption never leaves a half-written file at
    /// <paramref name="path"/> and concurrent writers of one path never mix their bytes.
    /// </summary>
    public static void Write(string path, IReadOnlyList<SafetensorsWriteEntry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var t in tensors)
        {
            if (header.ContainsKey(t.Name))
                throw new ArgumentException($"{path}: tensor '{t.Name}' given more than once (or named __metadata__)");
            long bytes = t.DType.ByteCount(t.Shape.Count);
            header[t.Name] = new Dictionary<string, object>
            {
                ["dtype"] = t.DType.SafetensorsName(),
                ["shape"] = t.Shape.ToArray(),
                ["data_offsets"] = new[] { offset, offset + bytes },
            };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8; // keep the data section 8-byte aligned
        var headerBytes = new byte[json.Length + pad];
        json.CopyTo(headerBytes, 0);
        for (int i = json.Length; i < headerBytes.Length; i++) headerBytes[i] = (byte)' ';

        AtomicFile.Write(path, fs =>
        {
            fs.Write(BitConverter.GetBytes((ulong)headerBytes.Length));
            fs.Write(headerBytes);
            long expected = 8 + headerBytes.Length;
            foreach (var t in tensors)
            {
                t.WriteData(fs);
                expected += t.DType.ByteCount(t.Shape.Count);
                if (fs.Position != expected)
                    throw new InvalidOperationException($"{path}: tensor '{t.Name}' wrote {fs.Position - (expected - t.DType.ByteCount(t.Shape.Count))} bytes, expected {t.DType.ByteCount(t.Shape.Count)}");
            }
        });
    }
}
