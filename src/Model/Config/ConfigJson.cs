using System.Text.Json;

namespace PureFlux.Model.Config;

/// <summary>A model config file that is missing, unreadable or has a bad field; the message names file and field.</summary>
/// Always one line: names and values quoted from a file cannot break it.
public sealed class ModelConfigException(string message, Exception? inner = null) : Exception(message.ReplaceLineEndings(" "), inner);

/// <summary>
/// Typed field access to one JSON config file. Every error names the file and the field, and says what was
/// expected and what was found. Fields with a library default may be absent (or null, where null means "unset").
/// </summary>
internal sealed class ConfigJson
{
    private readonly JsonElement _root;
    private readonly string _prefix; // "rope_parameters." for a nested object, so messages name the full field

    private ConfigJson(string path, JsonElement root, string prefix = "")
    {
        Path = path;
        _root = root;
        _prefix = prefix;
    }

    /// <summary>The file, as shown in messages.</summary>
    public string Path { get; }

    /// <summary>Config files are a few KB; anything past this is not a config (and is never read whole).</summary>
    public const long MaxFileBytes = 16 << 20;

    // Bounds for sizes and counts in configs: far above any released model, low enough that nothing derived from them
    // (products of dims, arrays of layers) overflows or asks for absurd memory before the weights are even looked at.
    public const int MaxLayers = 1024, MaxHeads = 1024, MaxHeadDim = 4096, MaxDim = 1 << 20, MaxChannels = 1 << 16, MaxVocab = 1 << 24;

    public static ConfigJson Load(string path)
    {
        byte[] bytes = RegularFile.ReadAllBytes(path, MaxFileBytes, "config file", m => new ModelConfigException(m));
        return Parse(bytes, path);
    }

    public static ConfigJson Parse(ReadOnlySpan<byte> json, string path)
    {
        long bad = RegularFile.InvalidUtf8Offset(json);
        if (bad >= 0) throw new ModelConfigException($"{path}: not valid UTF-8 text (byte {bad}); expected a JSON config");
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{path}: not valid JSON ({e.Message})", e);
        }
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelConfigException($"{path}: expected a JSON object at the top level, found {Kind(root)}");
        CheckStrings(path, root, "");
        return new ConfigJson(path, root);
    }

    /// <summary>
    /// Every name and string must decode (JSON escapes can still spell a lone surrogate such as "\ud800", which .NET
    /// only rejects when the string is read): checked once here, so no reader meets it later as a raw exception.
    /// </summary>
    private static void CheckStrings(string path, JsonElement e, string where)
    {
        try
        {
            switch (e.ValueKind)
            {
                case JsonValueKind.Object:
                    foreach (var p in e.EnumerateObject())
                    {
                        string name = p.Name;
                        CheckStrings(path, p.Value, where.Length == 0 ? name : where + "." + name);
                    }
                    break;
                case JsonValueKind.Array:
                    int i = 0;
                    foreach (var x in e.EnumerateArray()) CheckStrings(path, x, $"{where}[{i++}]");
                    break;
                case JsonValueKind.String:
                    _ = e.GetString();
                    break;
            }
        }
        catch (InvalidOperationException ex)
        {
            throw new ModelConfigException($"{path}: {(where.Length == 0 ? "a field name" : $"field '{where}'")} holds text that is not valid Unicode ({ex.Message})", ex);
        }
    }

    public bool Has(string field) => _root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    private JsonElement? Get(string field) =>
        _root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private JsonElement Required(string field) =>
        Get(field) ?? throw new ModelConfigException($"{Path}: missing field '{_prefix}{field}'");

    public ModelConfigException Error(string field, string problem) => new($"{Path}: field '{_prefix}{field}' {problem}");

    private ModelConfigException Wrong(string field, JsonElement v, string expected) =>
        Error(field, $"is {Show(v)}; expected {expected}");

    private static string Show(JsonElement v)
    {
        string raw = v.GetRawText();
        if (raw.Length > 60) raw = raw[..57] + "...";
        return $"{raw} ({Kind(v)})";
    }

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Null => "null",
        _ => v.ValueKind.ToString(),
    };

    private int AsInt(string field, JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.Number)
        {
            if (v.TryGetInt32(out int i)) return i;
            // 3.0 is accepted as 3 (some tools write integral floats).
            if (v.TryGetDouble(out double d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
        }
        throw Wrong(field, v, "an integer");
    }

    private double AsDouble(string field, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Number) throw Wrong(field, v, "a number");
        // 1e999 parses to infinity: no config field means that, and it would poison every product downstream.
        return v.TryGetDouble(out double d) && double.IsFinite(d) ? d : throw Wrong(field, v, "a finite number");
    }

    public int Int(string field) => AsInt(field, Required(field));
    public int Int(string field, int fallback) => Get(field) is { } v ? AsInt(field, v) : fallback;
    public int? IntOrNull(string field) => Get(field) is { } v ? AsInt(field, v) : null;

    /// <summary>An integer that must be at least <paramref name="min"/> and at most <paramref name="max"/>.</summary>
    public int Positive(string field, int? fallback = null, int min = 1, int max = int.MaxValue)
    {
        int v = fallback is int f ? Int(field, f) : Int(field);
        if (v < min) throw Error(field, $"is {v}; expected an integer >= {min}");
        if (v > max) throw Error(field, $"is {v}; expected an integer <= {max}");
        return v;
    }

    /// <summary>A finite number in [<paramref name="min"/>, <paramref name="max"/>] (exclusive of min when <paramref name="minExclusive"/>).</summary>
    public double Number(string field, double fallback, double min, double max, bool minExclusive = false)
    {
        double v = Double(field, fallback);
        if (minExclusive ? !(v > min) : !(v >= min)) throw Error(field, $"is {Fmt(v)}; expected a number {(minExclusive ? ">" : ">=")} {Fmt(min)}");
        if (!(v <= max)) throw Error(field, $"is {Fmt(v)}; expected a number <= {Fmt(max)}");
        return v;
    }

    private static string Fmt(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    public double Double(string field) => AsDouble(field, Required(field));
    public double Double(string field, double fallback) => Get(field) is { } v ? AsDouble(field, v) : fallback;
    public double? DoubleOrNull(string field) => Get(field) is { } v ? AsDouble(field, v) : null;

    /// <summary>For fields whose default is a number but where an explicit null means "unset": absent → fallback, null → null.</summary>
    public double? DoubleOrExplicitNull(string field, double? fallback) =>
        !_root.TryGetProperty(field, out var v) ? fallback : v.ValueKind == JsonValueKind.Null ? null : AsDouble(field, v);

    public bool Bool(string field, bool fallback)
    {
        if (Get(field) is not { } v) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(field, v, "true or false"),
        };
    }

    public string String(string field) => AsString(field, Required(field));
    public string String(string field, string fallback) => Get(field) is { } v ? AsString(field, v) : fallback;
    public string? StringOrNull(string field) => Get(field) is { } v ? AsString(field, v) : null;

    private string AsString(string field, JsonElement v) =>
        v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Wrong(field, v, "a string");

    public int[] IntArray(string field, int[] fallback) => Get(field) is { } v ? AsIntArray(field, v) : fallback;

    /// <summary>An array of integers with a bounded length and bounded entries.</summary>
    public int[]? BoundedIntArray(string field, int[]? fallback, int minLength, int maxLength, int min, int max)
    {
        if (Get(field) is not { } v) return fallback;
        var a = AsIntArray(field, v, maxLength);
        if (a.Length < minLength || a.Length > maxLength)
            throw Error(field, $"has {a.Length} entries; expected {(minLength == maxLength ? $"{minLength}" : $"{minLength} to {maxLength}")}");
        foreach (int x in a)
            if (x < min || x > max) throw Error(field, $"has the entry {x}; expected integers in {min}..{max}");
        return a;
    }
    public int[]? IntArrayOrNull(string field) => Get(field) is { } v ? AsIntArray(field, v) : null;

    private int[] AsIntArray(string field, JsonElement v, int maxLength = 1 << 16)
    {
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, v, "an array of integers");
        if (v.GetArrayLength() > maxLength) throw Error(field, $"has {v.GetArrayLength()} entries; expected at most {maxLength}");
        var list = new List<int>();
        foreach (var x in v.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number) throw Wrong(field, v, "an array of integers");
            list.Add(AsInt(field, x));
        }
        return [.. list];
    }

    public string[] StringArray(string field, string[] fallback, int maxLength = 1 << 16)
    {
        if (Get(field) is not { } v) return fallback;
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > maxLength)
            throw Error(field, $"has {v.GetArrayLength()} entries; expected at most {maxLength}");
        if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
            throw Wrong(field, v, "an array of strings");
        return [.. v.EnumerateArray().Select(x => x.GetString()!)];
    }

    /// <summary>A nested object (e.g. rope_parameters), read with the same rules; messages say "field 'a.b'".</summary>
    public ConfigJson? Object(string field)
    {
        if (Get(field) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Object) throw Wrong(field, v, "an object");
        return new ConfigJson(Path, v, _prefix + field + ".");
    }

    /// <summary>The raw element of a field (null when absent or null).</summary>
    public JsonElement? Raw(string field) => Get(field);

    public IEnumerable<(string Name, JsonElement Value)> Fields() => _root.EnumerateObject().Select(p => (p.Name, p.Value));
}
