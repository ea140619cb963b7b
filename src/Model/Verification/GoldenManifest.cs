using System.Globalization;
using System.Text.Json;

namespace PureFlux.Model.Verification;

/// <summary>
/// A golden set's manifest.json: its <c>"files"</c> object lists every file of the set, and for each safetensors file
/// every tensor with its shape and dtype (for a JSON file, the cases or runs it holds). What the manifest lists must be
/// there: <see cref="Check"/> turns each missing file, missing tensor or case, shape that differs from the listing and
/// NaN/Inf in a golden tensor into a failing <see cref="VerifyRow"/>, so a damaged set can never pass.
/// </summary>
public sealed class GoldenManifest
{
    public const string FileName = "manifest.json";

    private readonly string _dir;
    private readonly List<(string File, JsonElement Listing)> _files = new();

    private GoldenManifest(string dir, JsonElement files)
    {
        _dir = dir;
        foreach (var p in files.EnumerateObject()) _files.Add((p.Name, p.Value.Clone()));
    }

    /// <summary>The files the manifest lists, in its order.</summary>
    public IEnumerable<string> Files => _files.Select(f => f.File);

    /// <summary>Reads <paramref name="dir"/>/manifest.json, or returns null when there is none.</summary>
    /// <exception cref="IOException">A manifest that is not JSON or has no "files" object (names the file).</exception>
    public static GoldenManifest? Load(string dir)
    {
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        if (RegularFile.Problem(path, out _) is { } problem) throw new IOException($"{path}: {problem}");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("files", out var files) || files.ValueKind != JsonValueKind.Object)
                throw new IOException($"{path}: missing the \"files\" object (every file of the set and its tensors)");
            return new GoldenManifest(dir, files);
        }
        catch (JsonException e) { throw new IOException($"{path}: not valid JSON ({e.Message})"); }
    }

    /// <summary>
    /// Failing rows for everything listed but missing or damaged (none for a complete set). <paramref name="incomplete"/>
    /// receives the files that must not be run (missing, unreadable, or missing tensors).
    /// </summary>
    public List<VerifyRow> Check(out HashSet<string> incomplete)
    {
        var rows = new List<VerifyRow>();
        incomplete = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (file, listing) in _files)
        {
            string path = Path.Combine(_dir, file);
            void Fail(string what) => rows.Add(new VerifyRow(file, what, double.NaN, double.NaN, 0));
            if (!RegularFile.Present(path))
            {
                Fail("file missing (listed in manifest.json)");
                incomplete.Add(file);
                continue;
            }
            if (RegularFile.Problem(path, out _) is { } problem)
            {
                Fail(problem);
                incomplete.Add(file);
                continue;
            }
            int before = rows.Count;
            bool unusable = false;
            try
            {
                bool json = file.EndsWith(".json", StringComparison.Ordinal);
                if (json && listing.ValueKind is JsonValueKind.Object or JsonValueKind.Number) unusable = CheckCaseCounts(path, listing, Fail);
                else if (listing.ValueKind == JsonValueKind.Object) unusable = CheckTensors(path, listing, Fail);
                else if (listing.ValueKind == JsonValueKind.Array) CheckCases(path, listing, Fail);
            }
            catch (Exception e) when (e is SafetensorsException or IOException or JsonException or UnauthorizedAccessException)
            {
                Fail($"unreadable: {e.Message}");
                unusable = true;
            }
            if (unusable) incomplete.Add(file);
        }
        return rows;
    }

    /// <summary>Every listed tensor present with the listed shape, and no NaN/Inf in a float tensor. Returns whether one is missing.</summary>
    private static bool CheckTensors(string path, JsonElement listing, Action<string> fail)
    {
        using var g = SafetensorsFile.Open(path);
        bool missing = false;
        foreach (var t in listing.EnumerateObject())
        {
            if (!g.Contains(t.Name))
            {
                fail($"{t.Name}: tensor missing (listed in manifest.json)");
                missing = true;
                continue;
            }
            var e = g.Entry(t.Name);
            if (ListedShape(t.Value) is { } shape && !shape.SequenceEqual(e.Shape.ToArray()))
            {
                fail($"{t.Name}: shape {e.Shape}, manifest.json lists [{string.Join(", ", shape)}]");
                missing = true;
                continue;
            }
            if (e.DType is DType.F32 or DType.F16 or DType.BF16)
            {
                var values = g.ReadFloats(t.Name);
                long nan = values.LongCount(float.IsNaN), inf = values.LongCount(float.IsInfinity);
                if (nan + inf > 0) fail($"{t.Name}: golden data contains {new NonFiniteCount(nan, inf)} values");
            }
        }
        return missing;
    }

    /// <summary>
    /// A JSON file listed by its case counts (the FLUX.1 set): a number is the length of its "cases" array; an object maps
    /// each top-level array to its length (scheduler.json: {"dev": 6, "schnell": 4, "img2img": 7}). Returns whether one is short.
    /// </summary>
    private static bool CheckCaseCounts(string path, JsonElement listing, Action<string> fail)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var expected = listing.ValueKind == JsonValueKind.Number ? [("cases", listing)] : listing.EnumerateObject().Select(p => (p.Name, p.Value)).ToArray();
        bool shortOfCases = false;
        foreach (var (key, count) in expected)
        {
            if (!count.TryGetInt32(out int n)) continue;
            int have = root.ValueKind == JsonValueKind.Object && root.TryGetProperty(key, out var a) && a.ValueKind == JsonValueKind.Array ? a.GetArrayLength() : -1;
            if (have < n)
            {
                fail(have < 0 ? $"'{key}': array missing (manifest.json lists {n} cases)" : $"'{key}': {have} cases, manifest.json lists {n}");
                shortOfCases = true;
            }
        }
        return shortOfCases;
    }

    /// <summary>[[d0, d1, ...], "dtype"] → the dims, or null when the listing has another form.</summary>
    private static int[]? ListedShape(JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() < 1 || v[0].ValueKind != JsonValueKind.Array) return null;
        var dims = new List<int>();
        foreach (var d in v[0].EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int x)) return null;
            dims.Add(x);
        }
        return dims.ToArray();
    }

    /// <summary>
    /// A JSON file listed with its case names: scheduler.json's cases ("STEPSxWIDTHxHEIGHT", or "STEPS" where the cases
    /// carry no size) or schedulers.json's runs.
    /// </summary>
    private static void CheckCases(string path, JsonElement listing, Action<string> fail)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var have = new HashSet<string>(StringComparer.Ordinal);
        var root = doc.RootElement;
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("runs", out var runs) && runs.ValueKind == JsonValueKind.Object)
            foreach (var r in runs.EnumerateObject()) have.Add(r.Name);
        if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("cases", out var cases) && cases.ValueKind == JsonValueKind.Array)
            foreach (var c in cases.EnumerateArray())
                if (c.ValueKind == JsonValueKind.Object && c.TryGetProperty("num_inference_steps", out var s))
                {
                    // klein's cases are named by steps and size; a size-independent schedule (Z-Image's static shift) by
                    // steps alone; img2img cases (Qwen-Image's scheduler.json) add their strength: "50x1024x1024@0.6".
                    if (c.TryGetProperty("width", out var w) && c.TryGetProperty("height", out var h))
                        have.Add(string.Create(CultureInfo.InvariantCulture, $"{s}x{w}x{h}")
                            + (c.TryGetProperty("strength", out var st) && st.ValueKind == JsonValueKind.Number ? "@" + st.GetRawText() : ""));
                    else have.Add(s.GetRawText());
                }
        foreach (var item in listing.EnumerateArray())
        {
            string name = item.ValueKind == JsonValueKind.String ? item.GetString()! : item.GetRawText();
            if (!have.Contains(name)) fail($"case '{name}' missing (listed in manifest.json)");
        }
    }
}
