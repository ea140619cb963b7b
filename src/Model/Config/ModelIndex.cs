namespace PureFlux.Model.Config;

/// <summary>One pipeline component of model_index.json: ["library", "ClassName"].</summary>
public sealed record ComponentSpec(string Library, string ClassName);

/// <summary>
/// model_index.json of a diffusers snapshot: the pipeline class, its components, and klein's
/// <c>is_distilled</c> (true for FLUX.2 [klein]: no classifier-free guidance; diffusers default false).
/// </summary>
public sealed record ModelIndex
{
    public required string ClassName { get; init; }
    public string? DiffusersVersion { get; init; }
    public bool IsDistilled { get; init; }
    /// <summary>Components by name (transformer, text_encoder, vae, scheduler, tokenizer); [null, null] entries are left out.</summary>
    public required IReadOnlyDictionary<string, ComponentSpec> Components { get; init; }

    public static ModelIndex Load(string path) => Read(ConfigJson.Load(path));

    public static ModelIndex Parse(string json, string path = "model_index.json") =>
        Read(ConfigJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path));

    private static ModelIndex Read(ConfigJson j)
    {
        var components = new Dictionary<string, ComponentSpec>(StringComparer.Ordinal);
        foreach (var (name, v) in j.Fields())
        {
            if (name.StartsWith('_') || v.ValueKind != System.Text.Json.JsonValueKind.Array) continue;
            var items = v.EnumerateArray().ToArray();
            if (items.Length == 2 && items.All(x => x.ValueKind == System.Text.Json.JsonValueKind.Null)) continue;
            if (items.Length != 2 || items.Any(x => x.ValueKind != System.Text.Json.JsonValueKind.String))
                throw j.Error(name, $"is {v.GetRawText()}; expected [\"library\", \"ClassName\"]");
            components[name] = new ComponentSpec(items[0].GetString()!, items[1].GetString()!);
        }
        return new ModelIndex
        {
            ClassName = j.String("_class_name"),
            DiffusersVersion = j.StringOrNull("_diffusers_version"),
            IsDistilled = j.Bool("is_distilled", false),
            Components = components,
        };
    }
}
