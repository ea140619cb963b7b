using PureFlux.Runtime;
using System.Text.Json;

namespace PureFlux.Model.Snapshot;

/// <summary>
/// One component's weights, memory-mapped: a single <c>*.safetensors</c> file, or shards listed by a
/// <c>*.safetensors.index.json</c> (its <c>weight_map</c> names the shard of every tensor). Both look the same
/// from here. Messages name the component's file as <see cref="Name"/> (e.g.
/// "transformer/diffusion_pytorch_model.safetensors").
/// </summary>
public sealed class WeightSource : IDisposable
{
    private readonly Dictionary<string, SafetensorsFile> _fileOf;
    private readonly List<SafetensorsFile> _files;
    private bool _disposed;

    private WeightSource(string name, Dictionary<string, SafetensorsFile> fileOf, List<SafetensorsFile> files)
    {
        Name = name;
        _fileOf = fileOf;
        _files = files;
    }

    /// <summary>How messages name this source, e.g. "text_encoder/model.safetensors".</summary>
    public string Name { get; }

    /// <summary>The files behind this source (one, or every shard).</summary>
    public IReadOnlyList<SafetensorsFile> Files => _files;

    public bool IsSharded => _files.Count > 1 || _sharded;
    private bool _sharded;

    public IEnumerable<string> Names => _fileOf.Keys;
    public int Count => _fileOf.Count;
    public bool Contains(string name) => _fileOf.ContainsKey(name);

    /// <summary>Total bytes of tensor data.</summary>
    public long TotalBytes => _fileOf.Sum(kv => kv.Value.Entry(kv.Key).Bytes);

    /// <summary>
    /// Opens <paramref name="dir"/>/<paramref name="baseName"/> (e.g. "model.safetensors") or, when that file is
    /// absent, its sharded form <paramref name="baseName"/>.index.json. <paramref name="displayName"/> is how
    /// messages name it (defaults to the path).
    /// </summary>
    /// <exception cref="SnapshotException">Neither form present, or a bad index / shard.</exception>
    public static WeightSource Open(string dir, string baseName, string? displayName = null)
    {
        string single = Path.Combine(dir, baseName);
        string index = single + ".index.json";
        displayName ??= single;
        // A link counts as present even when it dangles: opening it then says what it points at.
        if (RegularFile.Present(single)) return OpenFile(single, displayName);
        if (RegularFile.Present(index)) return OpenSharded(index, displayName);
        throw new SnapshotException($"{displayName}: weights not found (neither {baseName} nor {baseName}.index.json in {dir})");
    }

    /// <summary>A single safetensors file.</summary>
    public static WeightSource OpenFile(string path, string? displayName = null)
    {
        displayName ??= path;
        var file = OpenShard(path, displayName);
        var map = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        foreach (var n in file.Names) map[n] = file;
        return new WeightSource(displayName, map, [file]);
    }

    /// <summary>A sharded checkpoint: a *.safetensors.index.json whose weight_map maps tensor → shard file (same directory).</summary>
    public static WeightSource OpenSharded(string indexPath, string? displayName = null)
    {
        displayName ??= indexPath;
        string shownIndex = displayName + ".index.json";
        Dictionary<string, string> weightMap = ReadWeightMap(indexPath, shownIndex);
        string dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;

        var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var map = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, shard) in weightMap)
            {
                if (!opened.TryGetValue(shard, out var file))
                {
                    string shardPath = Path.Combine(dir, shard);
                    if (!RegularFile.Present(shardPath))
                        throw new SnapshotException($"{shownIndex}: shard '{shard}' (holding '{tensor}') not found next to the index");
                    file = OpenShard(shardPath, shard);
                    opened[shard] = file;
                }
                if (!file.Contains(tensor))
                    throw new SnapshotException($"{shownIndex}: weight_map puts '{tensor}' in '{shard}', but that shard has no such tensor");
                map[tensor] = file;
            }
        }
        catch
        {
            foreach (var f in opened.Values) f.Dispose();
            throw;
        }
        return new WeightSource(displayName, map, [.. opened.Values]) { _sharded = true };
    }

    /// <summary>A weight index lists one line per tensor; klein's largest is ~60 KB.</summary>
    private const long MaxIndexBytes = 64 << 20;

    private static Dictionary<string, string> ReadWeightMap(string indexPath, string shown)
    {
        // The index may be a symbolic link (a Hugging Face cache snapshot): check what it finally names before reading.
        if (RegularFile.Problem(indexPath, out long length) is { } problem) throw new SnapshotException($"{shown}: {problem}");
        if (length > MaxIndexBytes) throw new SnapshotException($"{shown}: {length} bytes is too large for a weight index (at most {MaxIndexBytes})");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(indexPath)); }
        catch (JsonException e) { throw new SnapshotException($"{shown}: not valid JSON ({e.Message})"); }
        catch (IOException e) { throw new SnapshotException($"{shown}: cannot read ({e.Message})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object
            || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
            throw new SnapshotException($"{shown}: missing the \"weight_map\" object (tensor name -> shard file)");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in wm.EnumerateObject())
        {
            string? shard = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null;
            // Shards live beside the index: a bare file name, never a path that could leave the directory.
            if (string.IsNullOrEmpty(shard) || shard != Path.GetFileName(shard) || shard is "." or "..")
                throw new SnapshotException($"{shown}: weight_map entry '{p.Name}' must name a shard file in the same directory; found {p.Value.GetRawText()}");
            map[p.Name] = shard;
        }
        if (map.Count == 0) throw new SnapshotException($"{shown}: weight_map is empty");
        return map;
    }

    private static SafetensorsFile OpenShard(string path, string shown)
    {
        try { return SafetensorsFile.Open(path); }
        catch (SafetensorsException e) { throw new SnapshotException($"{shown}: {StripPath(e.Message, path)}"); }
        catch (IOException e) { throw new SnapshotException($"{shown}: cannot open ({e.Message})"); }
        catch (UnauthorizedAccessException e) { throw new SnapshotException($"{shown}: cannot open ({e.Message})"); }
    }

    private static string StripPath(string message, string path) =>
        message.StartsWith(path + ": ", StringComparison.Ordinal) ? message[(path.Length + 2)..] : message;

    private SafetensorsFile FileOf(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_fileOf.TryGetValue(name, out var f)) return f;
        // Hint with the names sharing the longest dotted prefix (e.g. the same block), which is where typos hide.
        static int Shared(string a, string b)
        {
            int n = 0;
            for (int i = 0; i < Math.Min(a.Length, b.Length) && a[i] == b[i]; i++) if (a[i] == '.') n = i + 1;
            return n;
        }
        int best = _fileOf.Keys.Max(k => Shared(k, name));
        var near = best == 0 ? [] : _fileOf.Keys.Where(k => Shared(k, name) == best).Order(StringComparer.Ordinal).Take(3).ToList();
        throw new SnapshotException($"{Name}: no tensor named '{name}' ({_fileOf.Count} tensors" +
            (near.Count > 0 ? $"; nearest: '{string.Join("', '", near)}'" : "") + ")");
    }

    /// <summary>dtype, shape and byte range of a tensor.</summary>
    public SafetensorsEntry Entry(string name) => FileOf(name).Entry(name);

    /// <summary>
    /// The entry of <paramref name="name"/>, checked against the shape the config implies.
    /// </summary>
    /// <exception cref="SnapshotException">"&lt;file&gt;: tensor 'x' has shape [a, b], config implies [c, d]" (or missing).</exception>
    public SafetensorsEntry Expect(string name, params int[] shape)
    {
        var e = Entry(name);
        if (!e.Shape.Dims.SequenceEqual(shape))
            throw new SnapshotException($"{Name}: tensor '{name}' has shape {e.Shape}, config implies {Shape.Format(shape)}");
        return e;
    }

    /// <summary>The tensor on <paramref name="device"/> in its stored dtype (zero-copy view of the mapping on the CPU).</summary>
    public Tensor Load(string name, Device device) => FileOf(name).Load(name, device);

    /// <summary>The tensor converted to F32 on <paramref name="device"/>.</summary>
    public Tensor LoadF32(string name, Device device) => FileOf(name).LoadF32(name, device);

    /// <summary>Values converted to float32 (host copy).</summary>
    public float[] ReadFloats(string name) => FileOf(name).ReadFloats(name);

    /// <summary>Raw bytes of a tensor (valid while this source is open).</summary>
    public ReadOnlySpan<byte> Bytes(string name) => FileOf(name).Bytes(name);

    /// <summary>
    /// Takes the mapped pages of every tensor whose name starts with <paramref name="prefix"/> out of this process's
    /// resident set (madvise DONTNEED; a no-op off Linux). The data stays valid: the next read faults the pages back in,
    /// from the page cache when the kernel still holds them, else from disk. For weights larger than memory (streaming a
    /// transformer block by block), so the resident set holds the block in use rather than whatever was read last.
    /// </summary>
    public void DropResident(string prefix)
    {
        foreach (var (name, file) in _fileOf)
            if (name.StartsWith(prefix, StringComparison.Ordinal))
                ResidentPages.Drop(file.Pointer(name), file.Entry(name).Bytes);
    }

    /// <summary>
    /// Whether a transformer should stream these weights block by block (<see cref="Prefetch"/> / <see cref="DropResident"/>):
    /// they are used in place from the mapping (CPU device, no load-time quantization) and exceed half of this machine's memory.
    /// </summary>
    public bool StreamsOn(Device device, Layers.QuantMode quant) =>
        device is CpuDevice && quant == Layers.QuantMode.None && TotalBytes > GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2;

    /// <summary>
    /// Whether loading should map these weights in at once (<see cref="Layers.WeightLoaderAdapters.Populating"/>): they are
    /// used in place from the mapping (CPU device, no load-time quantization) and are not streamed (<see cref="StreamsOn"/>).
    /// </summary>
    public bool PopulatesOn(Device device, Layers.QuantMode quant) =>
        device is CpuDevice && quant == Layers.QuantMode.None && !StreamsOn(device, quant);

    /// <summary>The loader for <paramref name="device"/>, populating each tensor's pages as it loads where
    /// <see cref="PopulatesOn"/> holds and <paramref name="populate"/> (the switch <c>populate-weights</c>) is on.</summary>
    public Layers.WeightLoader Loader(Device device, Layers.QuantMode quant, bool populate) =>
        Layers.WeightLoaderAdapters.Populating(Layers.WeightLoaders.Loader(this, device), populate && PopulatesOn(device, quant));

    /// <summary>The hooks a streaming transformer calls: read the next block ahead before a block runs, drop the finished one.</summary>
    public (Action<string, string?> Starting, Action<string> Done) StreamingHooks =>
        ((_, next) => { if (next is not null) Prefetch(next); }, DropResident);

    /// <summary>Starts reading in the mapped pages of every tensor whose name starts with <paramref name="prefix"/> (madvise WILLNEED), so the next block's weights arrive while this one computes.</summary>
    public void Prefetch(string prefix)
    {
        foreach (var (name, file) in _fileOf)
            if (name.StartsWith(prefix, StringComparison.Ordinal))
                ResidentPages.Prefetch(file.Pointer(name), file.Entry(name).Bytes);
    }

    /// <summary>Closes the files once every zero-copy tensor loaded from them is disposed too.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var f in _files) f.Dispose();
    }
}
