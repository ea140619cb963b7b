using PureFlux.Model.Snapshot;
using CliApp = PureFlux.Cli.Cli;

namespace PureFlux.Tests.Support;

/// <summary>The <c>pureflux</c> command line run in process: exit code, stdout and stderr.</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}

/// <summary>The "tiny" random snapshot (klein architecture, real Qwen3 vocabulary), written once per test process.</summary>
public static class TinySnapshot
{
    private static readonly Lazy<string> Written = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-tests-tiny-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model_index.json"))) RandomSnapshot.Write(dir, SnapshotPreset.Tiny, 0);
        return dir;
    });

    public static string Dir => Written.Value;
}

/// <summary>The tiny random snapshot as an undistilled (klein base) model: generation runs real CFG by default.</summary>
public static class TinyBaseSnapshot
{
    private static readonly Lazy<string> Written = new(() =>
    {
        string dir = Path.Combine(Path.GetTempPath(), $"pureflux-tests-tiny-base-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, "model_index.json"))) RandomSnapshot.Write(dir, SnapshotPreset.TinyBase, 0);
        return dir;
    });

    public static string Dir => Written.Value;
}
