using PureFlux.Model.Snapshot;

namespace PureFlux.Cli.Commands;

/// <summary>
/// The model used when no --model is given: the "tiny" random preset (klein architecture, real Qwen3
/// tokenizer), written once to a cache directory and loaded through the normal snapshot loader.
/// </summary>
internal static class BuiltInModel
{
    private const ulong Seed = 0;
    private const string Version = "v1";

    /// <summary>$PUREFLUX_CACHE, else $XDG_CACHE_HOME/pureflux, else ~/.cache/pureflux.</summary>
    public static string CacheRoot
    {
        get
        {
            string? root = Environment.GetEnvironmentVariable("PUREFLUX_CACHE");
            if (!string.IsNullOrEmpty(root)) return root;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            return !string.IsNullOrEmpty(xdg) ? Path.Combine(xdg, "pureflux")
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "pureflux");
        }
    }

    public static string Directory => Path.Combine(CacheRoot, $"builtin-{SnapshotPreset.Tiny.Name}-{Version}");

    public static string Ensure()
    {
        string dir = Directory;
        if (!File.Exists(Path.Combine(dir, "model_index.json")))
        {
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
            RandomSnapshot.Write(dir, SnapshotPreset.Tiny, Seed);
        }
        return dir;
    }
}
