using PureFlux.Model.Engine;
using PureFlux.Model.Layers;
using PureFlux.Model.QwenImage;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// <c>pureflux quantize</c> on the tiny golden Qwen-Image snapshot (F32 weights, as the reference repo): the int8 / int4
/// snapshot opens, reports its stored mode, generates bit-identically to load-time <c>--quant</c> on the source and close
/// to the unquantized run; <c>make-model --quant</c> writes the same tensors as quantizing the BF16 random snapshot.
/// </summary>
public sealed class QwenImageQuantizeTests : IDisposable
{
    private static string GoldenDir => Path.Combine(Golden.Dir, "qwenimage");
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"pureflux-qwenimage-quant-{Environment.ProcessId}-{Guid.NewGuid():N}");
    public QwenImageQuantizeTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The 64×64 golden pipeline's prompt (ids mapped into the tiny vocabulary) and noise, 2 steps.</summary>
    internal static float[] Generate(QwenImageModel model)
    {
        using var g = SafetensorsFile.Open(Path.Combine(GoldenDir, "pipeline_t2i_h64_w64.safetensors"));
        var ids = g.ReadInt64("inputs.input_ids").Select(v => (int)v).ToArray();
        var e = model.EncodePrompt(ids, out _);
        using var text = new TextConditioning(e.Reshape(1, e.Shape[0], e.Shape[1]), Tensor.FromSpan<float>(model.Device, Enumerable.Repeat(1f, e.Shape[0]).ToArray(), new Shape(1, e.Shape[0])));
        using var noise = g.LoadF32("inputs.initial_noise", model.Device);
        return GenerationEngine.Run(model, new GenerationJob { PromptEmbeds = text, Noise = noise, Width = 64, Height = 64, Steps = 2 }).Decoded;
    }

    /// <summary>‖a − b‖₂ / ‖a‖₂.</summary>
    private static double RelativeRms(float[] a, float[] b) =>
        Math.Sqrt(a.Zip(b).Sum(p => ((double)p.First - p.Second) * ((double)p.First - p.Second)) / a.Sum(v => (double)v * v));

    [Theory]
    // Measured ‖Δ‖/‖ref‖ of the decoded image vs F32 (random weights, 3 encoder layers, 2 blocks, 2 steps, the VAE): int8
    // (per-row scales, error ≤ 1/254 of a row's largest weight) 0.0058, int4 (groups of 32–64, ≤ 1/14) 0.061 — the ~10×
    // gap of their step sizes. Bounds ~3.5× the measurement: one flipped rounding must not fail the test, a wrong scale must.
    [InlineData("int8", QuantMode.Int8, 0.02)]
    [InlineData("int4", QuantMode.Int4, 0.2)]
    public void Quantized_snapshot_generates_like_load_time_quant_and_near_f32(string name, QuantMode mode, double tolerance)
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS")))
            Assert.Skip("host-side CLI tests run in the main pass only");
        string output = Path.Combine(_dir, name);
        var (code, _, err) = Run("quantize", "--model", Path.Combine(GoldenDir, "model"), "--quant", name, "--out", output);
        Assert.True(code == 0, err);
        using var cpu = new CpuDevice();
        using var stored = (QwenImageModel)ModelFamilies.Open(output, cpu);
        Assert.Equal(mode, stored.Quant);
        Assert.Equal(mode, QuantizedSnapshot.StoredMode(stored.Snapshot.TextEncoder));
        var quantized = Generate(stored);
        using var source = (QwenImageModel)ModelFamilies.Open(Path.Combine(GoldenDir, "model"), cpu);
        var reference = Generate(source);
        using var loadTime = (QwenImageModel)ModelFamilies.Open(Path.Combine(GoldenDir, "model"), cpu, new ModelOptions { Quant = mode });
        Assert.Equal(Generate(loadTime), quantized);
        double diff = RelativeRms(reference, quantized);
        Assert.True(diff > 0 && diff < tolerance, $"{name}: relative RMS {diff:g3} vs F32 (bound {tolerance})");

        (code, _, err) = Run("quantize", "--model", output, "--quant", "int4", "--out", Path.Combine(_dir, "again"));
        Assert.NotEqual(0, code);
        Assert.Contains("already quantized", err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("int8")]
    [InlineData("int4")]
    public void Make_model_with_quant_equals_quantizing_the_bf16_random_snapshot_and_generates(string name)
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("PUREFLUX_TEST_BACKENDS")))
            Assert.Skip("host-side CLI tests run in the main pass only");
        string direct = Path.Combine(_dir, "direct"), bf16 = Path.Combine(_dir, "bf16"), quantized = Path.Combine(_dir, "quantized");
        var (code, _, err) = Run("make-model", "--preset", "qwen-image-tiny", "--random", "--seed", "5", "--quant", name, "--out", direct);
        Assert.True(code == 0, err);
        (code, _, err) = Run("make-model", "--preset", "qwen-image-tiny", "--random", "--seed", "5", "--out", bf16);
        Assert.True(code == 0, err);
        (code, _, err) = Run("quantize", "--model", bf16, "--quant", name, "--out", quantized);
        Assert.True(code == 0, err);
        foreach (var file in new[] { "transformer/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors" })
        {
            using var a = SafetensorsFile.Open(Path.Combine(direct, file));
            using var b = SafetensorsFile.Open(Path.Combine(quantized, file));
            Assert.Equal(b.Names.Order(StringComparer.Ordinal), a.Names.Order(StringComparer.Ordinal));
            foreach (var n in b.Names)
            {
                Assert.True(a.Entry(n).DType == b.Entry(n).DType && a.Entry(n).Shape.ToArray().SequenceEqual(b.Entry(n).Shape.ToArray()), $"{file} {n}: {a.Entry(n).DType} {a.Entry(n).Shape} vs {b.Entry(n).DType} {b.Entry(n).Shape}");
                Assert.True(a.Bytes(n).SequenceEqual(b.Bytes(n)), $"{file} {n}: bytes differ");
            }
        }
        Assert.Contains(Directory.EnumerateFiles(quantized, "*.safetensors", SearchOption.AllDirectories),
            f => { using var g = SafetensorsFile.Open(f); return g.Names.Any(n => g.Entry(n).DType is DType.I8 or DType.I4); });
        (code, _, err) = Run("generate", "--model", direct, "--prompt", "a red fox", "-W", "32", "-H", "32", "--steps", "2", "--out", Path.Combine(_dir, "d.png"), "--no-prompt-cache");
        Assert.True(code == 0, err);
        (code, _, err) = Run("generate", "--model", quantized, "--prompt", "a red fox", "-W", "32", "-H", "32", "--steps", "2", "--out", Path.Combine(_dir, "q.png"), "--no-prompt-cache");
        Assert.True(code == 0, err);
        Assert.Equal(PureFlux.Model.Image.ImageFile.Load(Path.Combine(_dir, "q.png")).Rgb, PureFlux.Model.Image.ImageFile.Load(Path.Combine(_dir, "d.png")).Rgb);

        (code, _, err) = Run("make-model", "--preset", "qwen-image-tiny", "--random", "--quant", "int3", "--out", Path.Combine(_dir, "bad"));
        Assert.NotEqual(0, code);
        Assert.Contains("--quant 'int3': expected none, int8, int4", err);
        (code, _, err) = Run("make-model", "--preset", "zimage-tiny", "--random", "--quant", name, "--out", Path.Combine(_dir, "bad"));
        Assert.NotEqual(0, code);
        Assert.Contains("--quant applies to the Qwen-Image presets", err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "bad")));
    }
}
