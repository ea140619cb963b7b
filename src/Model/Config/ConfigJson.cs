using System.Text.Json;

namespace PureFlux.Model.Config;

/// <summary>A model config file that is missing, unreadable or has a bad field; the message names file and field.</summary>
public sealed class ModelConfigException(string message, Exception? inner = null) : Exception(message, inner);

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

    public static ConfigJson Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ModelConfigException($"{path}: cannot read config ({e.Message})", e);
        }
        return Parse(bytes, path);
    }

    public static ConfigJson Parse(ReadOnlySpan<byte> json, string path)
    {
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
        return new ConfigJson(path, root);
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

    private double AsDouble(string field, JsonElement v) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) ? d : throw Wrong(field, v, "a number");

    public int Int(string field) => AsInt(field, Required(field));
    public int Int(string field, int fallback) => Get(field) is { } v ? AsInt(field, v) : fallback;
    public int? IntOrNull(string field) => Get(field) is { } v ? AsInt(field, v) : null;

    /// <summary>An integer that must be at least <paramref name="min"/>.</summary>
    public int Positive(string field, int? fallback = null, int min = 1)
    {
        int v = fallback is int f ? Int(field, f) : Int(field);
        if (v < min) throw Error(field, $"is {v}; expected an integer >= {min}");
        return v;
    }

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
    public int[]? IntArrayOrNull(string field) => Get(field) is { } v ? AsIntArray(field, v) : null;

    private int[] AsIntArray(string field, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, v, "an array of integers");
        var list = new List<int>();
        foreach (var x in v.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number) throw Wrong(field, v, "an array of integers");
            list.Add(AsInt(field, x));
        }
        return [.. list];
    }

    public string[] StringArray(string field, string[] fallback)
    {
        if (Get(field) is not { } v) return fallback;
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
