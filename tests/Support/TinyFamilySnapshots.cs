namespace PureFlux.Tests.Support;

/// <summary>Tiny random snapshots of the other families, written once per test process (klein's is <see cref="TinySnapshot"/>).</summary>
public static class TinyFamilySnapshots
{
    private static Lazy<string> Written(string name, Action<string> write) => new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-tests-{name}-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model_index.json"))) write(dir);
        return dir;
    });

    private static readonly Lazy<string> ZImageDir = Written("zimage", d => PureFlux.Model.ZImage.ZImageRandomSnapshot.Write(d, PureFlux.Model.ZImage.ZImagePreset.Tiny, 0));
    private static readonly Lazy<string> Flux1DevDir = Written("flux1", d => PureFlux.Model.Flux1.Flux1RandomSnapshot.Write(d, PureFlux.Model.Flux1.Flux1Preset.TinyDev, 7));
    private static readonly Lazy<string> QwenImageDir = Written("qwen", d => PureFlux.Model.QwenImage.QwenImageRandomSnapshot.Write(d, PureFlux.Model.QwenImage.QwenImagePreset.Tiny, 3));

    public static string ZImage => ZImageDir.Value;
    public static string Flux1Dev => Flux1DevDir.Value;
    public static string QwenImage => QwenImageDir.Value;
}
