using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Qwen3;

namespace PureFlux.Model.Snapshot;

/// <summary>
/// A snapshot whose transformer and text-encoder linear weights are stored already quantized (<c>pureflux quantize</c>),
/// so loading them is a file mapping instead of reading every BF16 weight, quantizing it and filling gigabytes of fresh
/// memory (7–10 s for klein 4B's transformer as int8 on a 2-core guest). Same layout as the source snapshot; for each
/// quantized linear "P.weight" holds the integers (I8 [N, K], or I4 [N, K]: two per byte, low nibble first — a dtype
/// name only PureFlux reads) or FP8 codes (F8_E4M3 / F8_E5M2 [N, K]) and "P.weight_scale" the F32 scales ([N], or
/// [N, K / group] for int4). Exactly the weights
/// that <c>--quant</c> quantizes at load time are quantized, by the same code, so results are bit-identical to
/// <c>--quant MODE</c> on the source. Component files carry metadata "pureflux.quant" = int8 | int4 | fp8-e4m3 | fp8-e5m2.
/// </summary>
/// <summary>One component <c>pureflux quantize</c> rewrites: its folder, weight file name, a fresh mapping of its weights,
/// and how the family builds it with load-time quantization (the build records exactly the linears it quantizes).</summary>
public sealed record QuantizableComponent(string Name, string FileName, Func<WeightSource> Open, Func<WeightLoader, WeightSource, IDisposable> Build);

/// <summary>A model family whose snapshots <c>pureflux quantize</c> can write.</summary>
public interface IQuantizableFamily
{
    /// <summary>Writes the snapshot in <paramref name="source"/> with <paramref name="mode"/> weights to <paramref name="destination"/>.</summary>
    void Quantize(string source, QuantMode mode, string destination, Action<string>? log = null);
}

public static class QuantizedSnapshot
{
    public const string MetadataKey = "pureflux.quant";

    /// <summary>How the snapshot's weights are stored: None (as released) or the mode of <c>pureflux quantize</c>.</summary>
    public static QuantMode StoredMode(ModelSnapshot snapshot) => StoredMode(snapshot.Transformer);

    /// <summary>How a component's weights are stored: None, or the mode its files' metadata names.</summary>
    public static QuantMode StoredMode(WeightSource weights) =>
        QuantModes.TryParse(weights.Files.Select(f => f.Metadata.TryGetValue(MetadataKey, out var m) ? m : null).FirstOrDefault(m => m is not null), out var mode)
            ? mode : QuantMode.None;

    /// <summary>
    /// Writes <paramref name="source"/> with quantized linear weights to <paramref name="destination"/> (absent or an
    /// empty directory). Everything is written beside it first and moved into place at the end: a failure leaves nothing.
    /// </summary>
    public static void Write(ModelSnapshot source, QuantMode mode, string destination, Action<string>? log = null)
    {
        var layers = Flux2.Flux2KleinModel.DefaultTextLayers(source.TextEncoderConfig.NumHiddenLayers);
        Write(source.Directory, StoredMode(source),
        [
            new QuantizableComponent("transformer", ModelSnapshot.TransformerWeights, () => source.OpenWeights("transformer"),
                (load, _) => new Flux2Transformer(source.TransformerConfig, load, mode)),
            new QuantizableComponent("text_encoder", ModelSnapshot.TextEncoderWeights, () => source.OpenWeights("text_encoder"),
                (load, _) => new Qwen3TextEncoder(source.TextEncoderConfig, load, layers, mode)),
        ], mode, destination, log);
    }

    /// <summary>
    /// Any family's snapshot in <paramref name="sourceDir"/> (stored as <paramref name="stored"/>) with the given components
    /// quantized: everything is written beside <paramref name="destination"/> first and moved into place at the end.
    /// </summary>
    public static void Write(string sourceDir, QuantMode stored, IReadOnlyList<QuantizableComponent> components, QuantMode mode, string destination, Action<string>? log = null)
    {
        if (mode == QuantMode.None) throw new ArgumentException("quantize: --quant must be int8, int4, fp8-e4m3 or fp8-e5m2");
        if (stored != QuantMode.None)
            throw new ArgumentException($"quantize: {sourceDir} is already quantized ({Name(stored)}); start from the BF16 snapshot");
        string dst = Path.GetFullPath(destination);
        if (File.Exists(dst) || (Directory.Exists(dst) && Directory.EnumerateFileSystemEntries(dst).Any()))
            throw new IOException($"{destination}: already exists and is not an empty directory");
        if (dst.StartsWith(Path.GetFullPath(sourceDir).TrimEnd('/') + "/", StringComparison.Ordinal))
            throw new ArgumentException($"quantize: the output {destination} must not be inside the source snapshot");
        string parent = Path.GetDirectoryName(dst)!;
        Directory.CreateDirectory(parent);
        // A unique name per writer, registered so that Ctrl-C / SIGTERM remove it too.
        string partial = TempFileRegistry.UniqueSibling(dst);
        using var reg = TempFileRegistry.Default.Register(partial, directory: true);
        try
        {
            CopyExceptWeights(sourceDir, partial, components.Select(c => c.Name).ToHashSet(StringComparer.Ordinal));
            using var cpu = new CpuDevice();
            foreach (var c in components)
            {
                log?.Invoke($"quantizing {c.Name} to {Name(mode)}...");
                WriteComponent(sourceDir, c, mode, partial, cpu);
            }
            TempFileRegistry.Default.ThrowIfClosing(partial);
            try
            {
                if (Directory.Exists(dst)) Directory.Delete(dst);
                Directory.Move(partial, dst);
            }
            catch (IOException e) when (Directory.Exists(dst))
            {
                throw new IOException($"{destination}: another writer created it meanwhile; expected an absent or empty directory ({e.Message})");
            }
        }
        finally
        {
            TempFileRegistry.TryDelete(partial); // nothing left after the move; the whole tree after a failure
        }
    }

    private static string Name(QuantMode mode) => mode.Name();

    /// <summary>Copies the snapshot tree but for the quantized components' weight files (single or sharded).</summary>
    private static void CopyExceptWeights(string src, string dst, IReadOnlySet<string> quantized)
    {
        foreach (var file in Directory.EnumerateFiles(src, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(src, file);
            string component = rel.Split(Path.DirectorySeparatorChar)[0];
            if (quantized.Contains(component) && (rel.EndsWith(".safetensors", StringComparison.Ordinal) || rel.EndsWith(".safetensors.index.json", StringComparison.Ordinal)))
                continue;
            string target = Path.Combine(dst, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    /// <summary>
    /// Builds the component with load-time quantization, records which linears were quantized (and their bits), and
    /// writes one safetensors file: those weights as integers + scales, every other tensor copied as stored.
    /// </summary>
    private static void WriteComponent(string sourceDir, QuantizableComponent component, QuantMode mode, string root, Device cpu)
    {
        using var weights = component.Open();
        var build = component.Build;
        string fileName = component.FileName;
        var quantized = new Dictionary<string, QuantizedTensor>(StringComparer.Ordinal);
        // A family's loader may rename (Qwen2.5-VL's "model.language_model.*", Z-Image's optional "model."): a Linear reports
        // right after loading its weight, so the name last read from the file is the one to replace.
        string? lastRead = null;
        WeightLoader fileLoader = weights.Loader(cpu);
        WeightLoader load = (name, shape) => { lastRead = name; return fileLoader(name, shape); };
        using var scope = Linear.RecordQuantized((prefix, q) => quantized[lastRead ?? prefix + ".weight"] = q);
        using var model = build(load, weights);
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var name in weights.Names.Order(StringComparer.Ordinal))
        {
            if (quantized.TryGetValue(name, out var q))
            {
                var data = q.Data;
                var scales = q.Scales;
                entries.Add(new SafetensorsWriteEntry(name, data.DType, data.Shape, s => s.Write(data.AsSpan<byte>())));
                string scaleName = name[..^".weight".Length] + Linear.ScaleSuffix;
                if (weights.Contains(scaleName)) throw new SnapshotException($"{weights.Name}: already has a tensor '{scaleName}'");
                entries.Add(new SafetensorsWriteEntry(scaleName, DType.F32, scales.Shape, s => s.Write(scales.AsSpan<byte>())));
            }
            else
            {
                var e = weights.Entry(name);
                string n = name;
                entries.Add(new SafetensorsWriteEntry(n, e.DType, e.Shape, s => s.Write(weights.Bytes(n))));
            }
        }
        string dir = Path.Combine(root, component.Name);
        Directory.CreateDirectory(dir);
        SafetensorsWriter.Write(Path.Combine(dir, fileName), entries, new Dictionary<string, string>
        {
            [MetadataKey] = Name(mode),
            ["pureflux.source"] = Path.GetFullPath(sourceDir),
        });
    }
}
