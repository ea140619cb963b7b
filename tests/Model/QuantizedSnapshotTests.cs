using PureFlux.Model.Engine;
using PureFlux.Model.Flux2;
using PureFlux.Model.Layers;
using PureFlux.Model.Pipeline;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary><c>pureflux quantize</c>: a pre-quantized snapshot gives exactly what load-time quantization gives, and says what it is.</summary>
public sealed class QuantizedSnapshotTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-quantized-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("int8", "cpu")]
    [InlineData("int4", "cpu")]
    [InlineData("fp8-e4m3", "cpu")]
    [InlineData("fp8-e5m2", "cpu")]
    public void Generating_from_the_quantized_snapshot_equals_load_time_quantization(string quant, string backend)
    {
        var dev = Backends.Get(backend);
        string q = Path.Combine(_dir, quant);
        var made = Run("quantize", "--model", TinySnapshot.Dir, "--quant", quant, "--out", q);
        Assert.True(made.Code == 0, made.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "." + quant + ".partial")));

        Assert.True(QuantModes.TryParse(quant, out var mode));
        using var original = ModelSnapshot.Open(TinySnapshot.Dir);
        using var stored = ModelSnapshot.Open(q);
        Assert.Equal(QuantMode.None, QuantizedSnapshot.StoredMode(original));
        Assert.Equal(mode, QuantizedSnapshot.StoredMode(stored));
        // The linears are integers + scales on disk; everything else (norms, embeddings, VAE) is copied as stored.
        var name = "single_transformer_blocks.0.attn.to_qkv_mlp_proj.weight";
        Assert.Equal(mode switch { QuantMode.Int8 => DType.I8, QuantMode.Int4 => DType.I4, QuantMode.Fp8E4M3 => DType.F8E4M3, _ => DType.F8E5M2 },
            stored.Transformer.Entry(name).DType);
        Assert.Equal(original.Transformer.Entry(name).Shape, stored.Transformer.Entry(name).Shape);
        Assert.True(stored.Transformer.Contains("single_transformer_blocks.0.attn.to_qkv_mlp_proj" + Linear.ScaleSuffix));
        Assert.Equal(DType.BF16, stored.Transformer.Entry("double_stream_modulation_img.linear.weight").DType); // never quantized
        Assert.Equal(original.TextEncoder.Entry("model.embed_tokens.weight").DType, stored.TextEncoder.Entry("model.embed_tokens.weight").DType);

        var request = new GenerationJob { Prompts = ["a lighthouse at dawn"], Width = 48, Height = 32, Steps = 2, Seed = 7 };
        using var a = new Flux2KleinModel(original, dev, new ModelOptions { Quant = mode });
        using var b = new Flux2KleinModel(stored, dev);
        Assert.Equal(GenerationEngine.Run(a, request).Image(0).Rgb, GenerationEngine.Run(b, request).Image(0).Rgb);
    }

    /// <summary>On ILGPU devices the stored integers are uploaded as they are: a Linear from them equals one quantized at load.</summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void A_stored_quantized_linear_equals_load_time_quantization_on_every_backend(string backend)
    {
        var dev = Backends.Get(backend);
        foreach (var (quant, mode) in new[] { ("int8", QuantMode.Int8), ("int4", QuantMode.Int4), ("fp8-e4m3", QuantMode.Fp8E4M3), ("fp8-e5m2", QuantMode.Fp8E5M2) })
        {
            string q = Path.Combine(_dir, quant);
            Assert.Equal(0, Run("quantize", "--model", TinySnapshot.Dir, "--quant", quant, "--out", q).Code);
            using var original = ModelSnapshot.Open(TinySnapshot.Dir);
            using var stored = ModelSnapshot.Open(q);
            const string prefix = "single_transformer_blocks.0.attn.to_out";
            var shape = original.Transformer.Entry(prefix + ".weight").Shape;
            int n = shape[0], k = shape[1], m = 5;
            using var a = new Linear(original.Transformer.Loader(dev), prefix, k, n, quant: mode);
            using var b = new Linear(stored.Transformer.Loader(dev), prefix, k, n);
            var rng = new Random(3);
            using var x = Tensor.FromArray(dev, Enumerable.Range(0, m * k).Select(_ => rng.NextSingle() - 0.5f).ToArray(), m, k);
            using var ya = a.Forward(x);
            using var yb = b.Forward(x);
            Assert.Equal(ya.ToFloatArray(), yb.ToFloatArray());
        }
    }

    /// <summary>A stored F8 weight needs its F32 scale [out]: missing, misshaped or mistyped is one line naming the tensor.</summary>
    [Fact]
    public void A_stored_fp8_weight_without_a_proper_scale_is_one_line_naming_it()
    {
        using var cpu = new CpuDevice(1);
        var codes = new byte[4 * 8];
        Linear Load(params SafetensorsWriteEntry[] scale)
        {
            string path = Path.Combine(_dir, $"f8-{Guid.NewGuid():N}.safetensors");
            SafetensorsWriter.Write(path, [SafetensorsWriteEntry.FromBytes("l.weight", DType.F8E4M3, Shape.Of(4, 8), codes), .. scale],
                new Dictionary<string, string>());
            using var source = WeightSource.OpenFile(path);
            return new Linear(source.Loader(cpu), "l", 8, 4);
        }
        using (var ok = Load(SafetensorsWriteEntry.FromFloats("l.weight_scale", [1f, 2f, 3f, 4f], Shape.Of(4))))
            Assert.Equal(4, ok.Out);
        foreach (var (scale, expected) in new (SafetensorsWriteEntry[], string)[]
        {
            ([], "no tensor named 'l.weight_scale'"),
            ([SafetensorsWriteEntry.FromFloats("l.weight_scale", [1f, 2f, 3f], Shape.Of(3))], "tensor 'l.weight_scale' has shape [3], config implies [4]"),
            ([SafetensorsWriteEntry.FromFloats("l.weight_scale", new float[8], Shape.Of(4, 2))], "tensor 'l.weight_scale' has shape [4, 2], config implies [4]"),
        })
        {
            var e = Assert.ThrowsAny<Exception>(() => Load(scale).Dispose());
            Assert.Contains(expected, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [Fact]
    public void Bad_requests_are_one_line_errors_and_leave_nothing_behind()
    {
        string q = Path.Combine(_dir, "q8");
        Assert.Equal(0, Run("quantize", "--model", TinySnapshot.Dir, "--quant", "int8", "--out", q).Code);

        var exists = Run("quantize", "--model", TinySnapshot.Dir, "--quant", "int8", "--out", q);
        Assert.NotEqual(0, exists.Code);
        Assert.Contains("already exists", exists.Err);

        var twice = Run("quantize", "--model", q, "--quant", "int4", "--out", Path.Combine(_dir, "q4"));
        Assert.NotEqual(0, twice.Code);
        Assert.Contains("already quantized (int8)", twice.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "q4")));

        var none = Run("quantize", "--model", TinySnapshot.Dir, "--quant", "none", "--out", Path.Combine(_dir, "qn"));
        Assert.NotEqual(0, none.Code);
        Assert.Contains("expected int8, int4, fp8-e4m3 or fp8-e5m2", none.Err);

        var other = Run("generate", "--model", q, "--quant", "int4", "--prompt", "x", "--width", "32", "--height", "32", "--out", Path.Combine(_dir, "x.png"));
        Assert.NotEqual(0, other.Code);
        Assert.Contains("stored as int8", other.Err);
        Assert.False(File.Exists(Path.Combine(_dir, "x.png")));

        // A scale tensor that disagrees with its weight is named with what was expected.
        var weights = Path.Combine(q, "transformer", ModelSnapshot.TransformerWeights);
        using (var file = SafetensorsFile.Open(weights))
        {
            var entries = file.Names.Order(StringComparer.Ordinal).Select(n =>
            {
                var e = file.Entry(n);
                var bytes = file.Bytes(n).ToArray();
                return n == "proj_out.weight_scale"
                    ? SafetensorsWriteEntry.FromBytes(n, DType.F32, new Shape(e.Shape[0] - 1), bytes[..^4])
                    : SafetensorsWriteEntry.FromBytes(n, e.DType, e.Shape, bytes);
            }).ToList();
            var meta = new Dictionary<string, string>(file.Metadata);
            string broken = Path.Combine(_dir, "broken.safetensors");
            SafetensorsWriter.Write(broken, entries, meta);
            file.Dispose();
            File.Move(broken, weights, overwrite: true);
        }
        var bad = Run("generate", "--model", q, "--prompt", "x", "--width", "32", "--height", "32", "--out", Path.Combine(_dir, "y.png"), "--no-prompt-cache");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("proj_out.weight_scale", bad.Err);
        Assert.False(File.Exists(Path.Combine(_dir, "y.png")));
    }
}
