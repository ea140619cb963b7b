using System.Text.Json;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

public class CliTests
{

    private static void AssertOneLineError(string err, string contains)
    {
        Assert.StartsWith("error: ", err);
        Assert.Contains(contains, err);
        Assert.Single(err.TrimEnd().Split('\n')); // one line, no stack trace
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void Devices_lists_cpu_and_ilgpu_cpu()
    {
        var (code, o, e) = Run("devices");
        Assert.Equal(0, code);
        Assert.Equal("", e);
        var lines = o.TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Matches(@"^id\s+kind\s+name\s+memory$", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("cpu ") && l.Contains(" Cpu ") && l.EndsWith("GiB"));
        Assert.Contains(lines, l => l.StartsWith("ilgpu-cpu ") && l.Contains("IlgpuCpu"));
        Assert.Equal(Devices.List().Count + 1, lines.Length);
    }

    [Fact]
    public void Devices_opens_a_named_device()
    {
        var (code, o, _) = Run("devices", "--device", "cpu");
        Assert.Equal(0, code);
        Assert.StartsWith("cpu: Cpu, ", o);
        Assert.EndsWith(": ok", o.TrimEnd());
    }

    [Fact]
    public void Unknown_device_is_a_one_line_error()
    {
        var (code, o, e) = Run("devices", "--device", "tpu:0");
        Assert.Equal(2, code);
        Assert.Equal("", o);
        AssertOneLineError(e, "unknown device 'tpu:0'; expected auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu");
    }

    [Fact]
    public void Absent_device_kind_is_a_one_line_error()
    {
        Assert.SkipWhen(Devices.IsAvailable(DeviceKind.Cuda, out _), "a CUDA device is present");
        var (code, _, e) = Run("devices", "-d", "cuda:0");
        Assert.NotEqual(0, code);
        AssertOneLineError(e, "device 'cuda:0': no CUDA device found");
    }

    [Fact]
    public void Tokenize_prints_ids_as_json()
    {
        var (code, o, e) = Run("tokenize", "Hello, world!");
        Assert.Equal(0, code);
        Assert.Equal("", e);
        Assert.Equal([9707, 11, 1879, 0], JsonSerializer.Deserialize<int[]>(o)!);
    }

    [Fact]
    public void Tokenize_chat_matches_reference_chat_ids()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Golden.Dir, "tokenizer", "qwen3-ids.json")));
        var c = doc.RootElement.GetProperty("cases")[1];
        var (code, o, _) = Run("tokenize", "--chat", c.GetProperty("text").GetString()!);
        Assert.Equal(0, code);
        Assert.Equal(c.GetProperty("chat_ids").EnumerateArray().Select(x => x.GetInt32()), JsonSerializer.Deserialize<int[]>(o)!);
    }

    [Fact]
    public void Tokenize_with_explicit_tokenizer_file()
    {
        var (code, o, _) = Run("tokenize", "--tokenizer", PureFlux.Model.Text.Qwen3Tokenizer.BuiltInPath, " ");
        Assert.Equal(0, code);
        Assert.Equal("[220]", o.Trim());
    }

    [Fact]
    public void Tokenize_with_missing_tokenizer_file_names_it()
    {
        string path = Path.Combine(Path.GetTempPath(), "pureflux-missing", "tokenizer.json");
        var (code, o, e) = Run("tokenize", "--tokenizer", path, "hi");
        Assert.Equal(1, code);
        Assert.Equal("", o);
        AssertOneLineError(e, path);
    }

    [Theory]
    [InlineData(new string[0], "no command given; commands: generate, verify, make-model, quantize, devices, tokenize")]
    [InlineData(new[] { "frobnicate" }, "Unrecognized command or argument 'frobnicate'")]
    [InlineData(new[] { "tokenize" }, "Required argument 'TEXT' missing")]
    [InlineData(new[] { "tokenize", "a", "b" }, "Unrecognized command or argument 'b'")]
    [InlineData(new[] { "devices", "--bogus" }, "--bogus")]
    public void Bad_arguments_give_usage_error(string[] args, string expected)
    {
        var (code, o, e) = Run(args);
        Assert.Equal(2, code);
        Assert.Equal("", o);
        AssertOneLineError(e, expected);
        Assert.Contains("--help", e);
    }

    [Fact]
    public void Help_goes_to_stdout_and_lists_commands()
    {
        var (code, o, _) = Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("devices", o);
        Assert.Contains("tokenize", o);
    }
}
