using System.Diagnostics;
using PureFlux.Model.Image;
using PureFlux.Model.Text;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>Issue 10, defect 10: PNG text keeps every character, a truthful thread count, option conflicts, one "warning:", the apt mirror.</summary>
public sealed class SmallFixesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-small-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Png_text_keeps_characters_outside_latin1()
    {
        string path = Path.Combine(_dir, "t.png");
        var text = new Dictionary<string, string>
        {
            ["prompt"] = "富士山の夜明け, a café 🌅 — Ωmega",
            ["latin"] = "café, naïve",
            ["nul"] = "a\0b",
        };
        PngWriter.Save(path, new byte[4 * 4 * 3], 4, 4, text);
        var png = File.ReadAllBytes(path);
        var back = PngWriter.ReadText(png);
        Assert.Equal(text["prompt"], back["prompt"]);
        Assert.Equal(text["latin"], back["latin"]);
        Assert.Equal("a\uFFFDb", back["nul"]);
        // Latin-1 values stay tEXt (read by every tool); the rest is iTXt.
        string chunks = System.Text.Encoding.Latin1.GetString(png);
        Assert.Contains("iTXtprompt", chunks);
        Assert.Contains("tEXtlatin", chunks);
        Assert.Equal(4, StbImageSharp.ImageResult.FromMemory(png).Width); // still a valid PNG
    }

    [Fact]
    public void Generate_records_a_non_latin1_prompt_exactly()
    {
        string outPath = Path.Combine(_dir, "out.png");
        const string prompt = "夜明けの灯台";
        var (code, _, e) = Run("generate", "-p", prompt, "-W", "64", "-H", "64", "--device", "cpu", "--no-prompt-cache", "--out", outPath);
        Assert.True(code == 0, e);
        Assert.Equal(prompt, PngWriter.ReadText(File.ReadAllBytes(outPath))["prompt"]);
    }

    [Theory]
    [InlineData(null, -1)]
    [InlineData("", -1)]
    [InlineData("3", 3)]
    [InlineData(" 8 ", 8)]
    public void Thread_setting_is_parsed(string? value, int expected)
    {
        Assert.Equal(expected < 0 ? Environment.ProcessorCount : expected, CpuDevice.ParseThreads(value));
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("-2")]
    [InlineData("1.5")]
    [InlineData("99999")]
    public void Invalid_thread_setting_is_a_one_line_error(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => CpuDevice.ParseThreads(value));
        Assert.Equal($"PUREFLUX_THREADS='{value}': expected a whole number of threads from 1 to {CpuDevice.MaxThreads} (unset: all {Environment.ProcessorCount} processors)", e.Message);
    }

    [Fact]
    public void Banner_names_the_threads_the_device_uses()
    {
        using var three = new CpuDevice(3);
        Assert.Contains(Environment.ProcessorCount == 3 ? ", 3 threads, " : $", 3 of {Environment.ProcessorCount} threads, ", three.Name);
        using var one = new CpuDevice(1);
        Assert.Contains(Environment.ProcessorCount == 1 ? ", 1 threads, " : $", 1 of {Environment.ProcessorCount} threads, ", one.Name);
    }

    [Fact]
    public void Invalid_PUREFLUX_THREADS_fails_the_cli_in_a_child_process()
    {
        // A child process, so the environment of the other tests stays as it is.
        string cli = Path.Combine(AppContext.BaseDirectory, "pureflux.dll");
        Assert.True(File.Exists(cli), cli);
        var psi = new ProcessStartInfo("dotnet", [cli, "devices", "--device", "cpu"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.Environment["PUREFLUX_THREADS"] = "lots";
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(2, p.ExitCode);
        Assert.Equal("error: PUREFLUX_THREADS='lots': expected a whole number of threads from 1 to 1024 " +
            $"(unset: all {Environment.ProcessorCount} processors)", err.Trim());

        psi.Environment["PUREFLUX_THREADS"] = "1";
        using var q = Process.Start(psi)!;
        string o = q.StandardOutput.ReadToEnd();
        q.WaitForExit();
        Assert.Equal(0, q.ExitCode);
        Assert.Contains(Environment.ProcessorCount == 1 ? " 1 threads" : $" 1 of {Environment.ProcessorCount} threads", o);
    }

    [Fact]
    public void Prompt_cache_and_no_prompt_cache_together_are_a_usage_error()
    {
        var (code, o, e) = Run("generate", "-p", "a cat", "--prompt-cache", _dir, "--no-prompt-cache", "--out", Path.Combine(_dir, "x.png"));
        Assert.Equal(2, code);
        Assert.Equal("", o);
        Assert.Equal($"error: --prompt-cache '{_dir}' and --no-prompt-cache contradict each other; give one or the other", e.Trim());
    }

    [Fact]
    public void Truncation_warning_is_prefixed_once()
    {
        var tok = Qwen3Tokenizer.BuiltIn.EncodeForKlein(string.Join(" ", Enumerable.Repeat("word", 600)));
        Assert.True(tok.Truncated);
        Assert.StartsWith("the prompt is ", tok.Warning);

        var (code, _, e) = Run("generate", "-p", string.Join(" ", Enumerable.Repeat("word", 600)), "-W", "64", "-H", "64", "-s", "1",
            "--device", "cpu", "--no-prompt-cache", "--out", Path.Combine(_dir, "w.png"));
        Assert.True(code == 0, e);
        Assert.Contains("warning: the prompt is ", e);
        Assert.DoesNotContain("warning: warning:", e);
    }

    [Theory]
    [InlineData("get-ptxas.sh")]
    [InlineData("pocl-run.sh")]
    public void Tools_take_the_debian_mirror_from_apt(string script)
    {
        string tool = Path.Combine(RepoRoot(), "tools", script);
        string text = File.ReadAllText(tool);
        Assert.DoesNotContain("http://deb.debian.org", text);
        // deb822 sources (Debian 12+), classic sources.list, and none at all.
        string etc822 = Path.Combine(_dir, script + "-822"), etcList = Path.Combine(_dir, script + "-list"), etcNone = Path.Combine(_dir, script + "-none");
        Directory.CreateDirectory(Path.Combine(etc822, "sources.list.d"));
        File.WriteAllText(Path.Combine(etc822, "sources.list.d", "debian.sources"),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n");
        Directory.CreateDirectory(etcList);
        File.WriteAllText(Path.Combine(etcList, "sources.list"), "deb [arch=amd64] http://other.example/debian bookworm main\n");
        Directory.CreateDirectory(etcNone);
        Assert.Equal((0, "http://mirror.example/debian"), Mirror(tool, etc822));
        Assert.Equal((0, "http://other.example/debian"), Mirror(tool, etcList));
        Assert.Equal(1, Mirror(tool, etcNone).Code);
    }

    private static (int Code, string Out) Mirror(string tool, string etc)
    {
        var psi = new ProcessStartInfo("bash", ["-c", $"set -euo pipefail; source <(sed -n '/^host_mirror()/,/^}}/p' '{tool}'); host_mirror"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["APT_ETC"] = etc;
        psi.Environment.Remove("DEBIAN_MIRROR");
        using var p = Process.Start(psi)!;
        string o = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o.Trim());
    }

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "PureFlux.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("PureFlux.sln not found above " + AppContext.BaseDirectory);
    }
}
