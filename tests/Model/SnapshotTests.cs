using System.Text.Json;
using PureFlux.Model.Config;
using PureFlux.Model.Snapshot;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

public sealed class SnapshotTests
{
    private static string GoldenModel => Path.Combine(Golden.Dir, "model");

    /// <summary>A scratch copy of the tiny golden model, deleted on dispose.</summary>
    private sealed class ModelCopy : IDisposable
    {
        public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"pureflux-snapshot-{Guid.NewGuid():N}");

        public ModelCopy()
        {
            foreach (var f in Directory.EnumerateFiles(GoldenModel, "*", SearchOption.AllDirectories))
            {
                string to = Path.Combine(Dir, Path.GetRelativePath(GoldenModel, f));
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(f, to);
            }
        }

        public string this[string rel] => Path.Combine(Dir, rel);

        public void Dispose()
        {
            try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    [Fact]
    public void Opens_the_golden_tiny_model()
    {
        using var s = ModelSnapshot.Open(GoldenModel);
        Assert.Equal("Flux2KleinPipeline", s.Index.ClassName);
        Assert.True(s.Index.IsDistilled);
        Assert.Equal(new ComponentSpec("transformers", "Qwen3ForCausalLM"), s.Index.Components["text_encoder"]);
        Assert.Equal(5, s.Index.Components.Count);

        var t = s.TransformerConfig;
        Assert.Equal((2, 2, 2, 32, 64, 192), (t.NumLayers, t.NumSingleLayers, t.NumAttentionHeads, t.AttentionHeadDim, t.InnerDim, t.JointAttentionDim));
        Assert.Equal([8, 8, 8, 8], t.AxesDimsRope);
        Assert.Equal((128, 128, 192, 2000.0, 1e-6, false), (t.InChannels, t.OutputChannels, t.MlpHiddenDim, t.RopeTheta, t.Eps, t.GuidanceEmbeds));

        var q = s.TextEncoderConfig;
        Assert.Equal((1000, 64, 192, 4, 4, 2, 32), (q.VocabSize, q.HiddenSize, q.IntermediateSize, q.NumHiddenLayers, q.NumAttentionHeads, q.NumKeyValueHeads, q.HeadDim));
        Assert.Equal((1e6, 1e-6, true, "default"), (q.RopeTheta, q.RmsNormEps, q.TieWordEmbeddings, q.RopeType));

        var v = s.VaeConfig;
        Assert.Equal([4, 8, 16, 16], v.BlockOutChannels);
        Assert.Equal((32, 2, 2, 8, 128, 1e-4), (v.LatentChannels, v.NormNumGroups, v.LayersPerBlock, v.ScaleFactor, v.PatchedChannels, v.BatchNormEps));

        var sc = s.SchedulerConfig;
        Assert.Equal((true, 3.0, "exponential", 1000), (sc.UseDynamicShifting, sc.Shift, sc.TimeShiftType, sc.NumTrainTimesteps));

        Assert.Null(s.TokenizerFile); // the tiny model has no tokenizer/: the built-in one stands in
        Assert.Equal(49, s.Transformer.Count);
        Assert.Equal(46, s.TextEncoder.Count);
        Assert.Equal(251, s.Vae.Count);
        Assert.False(s.Transformer.IsSharded);
        Assert.Equal("transformer/diffusion_pytorch_model.safetensors", s.Transformer.Name);
    }

    [Fact]
    public void Entries_and_loads_follow_the_config()
    {
        using var s = ModelSnapshot.Open(GoldenModel);
        var t = s.TransformerConfig;
        var e = s.Transformer.Expect("context_embedder.weight", t.InnerDim, t.JointAttentionDim);
        Assert.Equal(DType.F32, e.DType);
        var q = s.TextEncoderConfig;
        s.TextEncoder.Expect("model.layers.0.self_attn.q_proj.weight", q.QueryWidth, q.HiddenSize);
        s.TextEncoder.Expect("model.layers.0.self_attn.k_proj.weight", q.KeyValueWidth, q.HiddenSize);
        Assert.Equal(DType.I64, s.Vae.Entry("bn.num_batches_tracked").DType);
        Assert.Equal(0, s.Vae.Entry("bn.num_batches_tracked").Shape.Rank);

        using var golden = SafetensorsFile.Open(Path.Combine(GoldenModel, "vae", "diffusion_pytorch_model.safetensors"));
        using var mean = s.Vae.Load("bn.running_mean", new CpuDevice());
        Assert.Equal(golden.ReadFloats("bn.running_mean"), mean.ToFloatArray());
        Assert.Equal(golden.ReadFloats("bn.running_var"), s.Vae.ReadFloats("bn.running_var"));
    }

    [Fact]
    public void Expect_names_file_tensor_and_both_shapes()
    {
        using var s = ModelSnapshot.Open(GoldenModel);
        var e = Assert.Throws<SnapshotException>(() => s.Transformer.Expect("context_embedder.weight", 64, 7680));
        Assert.Equal("transformer/diffusion_pytorch_model.safetensors: tensor 'context_embedder.weight' has shape [64, 192], config implies [64, 7680]", e.Message);
        var missing = Assert.Throws<SnapshotException>(() => s.Transformer.Entry("no.such.weight"));
        Assert.StartsWith("transformer/diffusion_pytorch_model.safetensors: no tensor named 'no.such.weight'", missing.Message);
        Assert.DoesNotContain("nearest", missing.Message);
        var typo = Assert.Throws<SnapshotException>(() => s.Transformer.Entry("single_transformer_blocks.1.attn.norm_z.weight"));
        Assert.Contains("nearest: 'single_transformer_blocks.1.attn.norm_k.weight', 'single_transformer_blocks.1.attn.norm_q.weight'", typo.Message);
        Assert.False(s.Transformer.Contains("no.such.weight"));
        Assert.True(s.Transformer.Contains("proj_out.weight"));
    }

    [Theory]
    [InlineData("model_index.json", "missing model_index.json")]
    [InlineData("transformer/config.json", "missing transformer/config.json")]
    [InlineData("text_encoder/config.json", "missing text_encoder/config.json")]
    [InlineData("vae/config.json", "missing vae/config.json")]
    [InlineData("scheduler/scheduler_config.json", "missing scheduler/scheduler_config.json")]
    [InlineData("transformer/diffusion_pytorch_model.safetensors", "missing transformer/diffusion_pytorch_model.safetensors (or diffusion_pytorch_model.safetensors.index.json)")]
    [InlineData("text_encoder/model.safetensors", "missing text_encoder/model.safetensors")]
    [InlineData("vae/diffusion_pytorch_model.safetensors", "missing vae/diffusion_pytorch_model.safetensors")]
    public void Missing_part_gives_one_line_naming_it(string part, string expected)
    {
        using var m = new ModelCopy();
        File.Delete(m[part]);
        var e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith(m.Dir, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Missing_directory_is_named()
    {
        string dir = Path.Combine(Path.GetTempPath(), "pureflux-no-such-model");
        var e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(dir));
        Assert.Equal($"{dir}: model directory not found", e.Message);
    }

    [Fact]
    public void Bad_config_field_names_file_and_field()
    {
        using var m = new ModelCopy();
        string cfg = m["transformer/config.json"];
        File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"num_attention_heads\": 2", "\"num_attention_heads\": \"two\""));
        var e = Assert.Throws<ModelConfigException>(() => ModelSnapshot.Open(m.Dir));
        Assert.Equal($"{cfg}: field 'num_attention_heads' is \"two\" (a string); expected an integer", e.Message);
    }

    [Fact]
    public void Truncated_weights_name_the_component_file()
    {
        using var m = new ModelCopy();
        string w = m["vae/diffusion_pytorch_model.safetensors"];
        var bytes = File.ReadAllBytes(w);
        File.WriteAllBytes(w, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir));
        Assert.StartsWith("vae/diffusion_pytorch_model.safetensors: tensor '", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Snapshot_tokenizer_is_used_when_present()
    {
        using var m = new ModelCopy();
        Directory.CreateDirectory(m["tokenizer"]);
        File.Copy(PureFlux.Model.Text.Qwen3Tokenizer.BuiltInPath, m["tokenizer/tokenizer.json"]);
        using var s = ModelSnapshot.Open(m.Dir);
        Assert.Equal(m["tokenizer/tokenizer.json"], s.TokenizerFile);
        Assert.Equal([9707, 11, 1879, 0], s.LoadTokenizer().Encode("Hello, world!"));
    }

    /// <summary>
    /// Splits the golden text encoder into three shards with an index, like the real klein snapshot ships it.
    /// Returns the weight_map written.
    /// </summary>
    private static Dictionary<string, string> Shard(string componentDir, string baseName, int shards)
    {
        string single = Path.Combine(componentDir, baseName);
        var map = new Dictionary<string, string>();
        using (var src = SafetensorsFile.Open(single))
        {
            var names = src.Names.Order(StringComparer.Ordinal).ToList();
            string stem = baseName[..^".safetensors".Length];
            for (int k = 0; k < shards; k++)
            {
                string shard = $"{stem}-{k + 1:00000}-of-{shards:00000}.safetensors";
                var part = names.Where((_, i) => i % shards == k).ToList();
                var entries = part.Select(n =>
                {
                    var e = src.Entry(n);
                    return SafetensorsWriteEntry.FromBytes(n, e.DType, e.Shape, src.Bytes(n).ToArray());
                }).ToList();
                SafetensorsWriter.Write(Path.Combine(componentDir, shard), entries);
                foreach (var n in part) map[n] = shard;
            }
        }
        File.Delete(single);
        File.WriteAllText(single + ".index.json", JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        return map;
    }

    [Fact]
    public void Sharded_weights_read_like_a_single_file()
    {
        using var m = new ModelCopy();
        var map = Shard(m["text_encoder"], "model.safetensors", 3);
        using var golden = SafetensorsFile.Open(Path.Combine(GoldenModel, "text_encoder", "model.safetensors"));
        using var s = ModelSnapshot.Open(m.Dir);
        var w = s.TextEncoder;
        Assert.True(w.IsSharded);
        Assert.Equal(3, w.Files.Count);
        Assert.Equal("text_encoder/model.safetensors", w.Name);
        Assert.Equal(golden.Names.Order(), w.Names.Order());
        Assert.Equal(3, map.Values.Distinct().Count());
        var cpu = new CpuDevice();
        foreach (var n in golden.Names)
        {
            Assert.Equal(golden.Entry(n).Shape, w.Entry(n).Shape);
            Assert.True(golden.Bytes(n).SequenceEqual(w.Bytes(n)), n);
            using var t = w.Load(n, cpu);
            Assert.Equal(golden.ReadFloats(n), t.ToFloatArray());
        }
        var e = Assert.Throws<SnapshotException>(() => w.Expect("model.embed_tokens.weight", 151936, 2560));
        Assert.Equal("text_encoder/model.safetensors: tensor 'model.embed_tokens.weight' has shape [1000, 64], config implies [151936, 2560]", e.Message);
    }

    [Fact]
    public void Sharded_index_errors_name_index_and_shard()
    {
        using var m = new ModelCopy();
        var map = Shard(m["transformer"], "diffusion_pytorch_model.safetensors", 2);
        string index = m["transformer/diffusion_pytorch_model.safetensors.index.json"];
        string shownIndex = "transformer/diffusion_pytorch_model.safetensors.index.json";

        // A shard file that is missing.
        string shard2 = m["transformer/diffusion_pytorch_model-00002-of-00002.safetensors"];
        File.Move(shard2, shard2 + ".away");
        var e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir));
        Assert.StartsWith($"{shownIndex}: shard 'diffusion_pytorch_model-00002-of-00002.safetensors'", e.Message);
        Assert.Contains("not found", e.Message);
        File.Move(shard2 + ".away", shard2);

        // weight_map pointing at the wrong shard.
        string moved = map.First(kv => kv.Value.Contains("00001")).Key;
        var wrong = new Dictionary<string, string>(map) { [moved] = "diffusion_pytorch_model-00002-of-00002.safetensors" };
        File.WriteAllText(index, JsonSerializer.Serialize(new { weight_map = wrong }));
        e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir));
        Assert.Contains($"weight_map puts '{moved}' in 'diffusion_pytorch_model-00002-of-00002.safetensors'", e.Message);

        // A shard path that would leave the directory.
        var escape = new Dictionary<string, string>(map) { [moved] = "../vae/diffusion_pytorch_model.safetensors" };
        File.WriteAllText(index, JsonSerializer.Serialize(new { weight_map = escape }));
        e = Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir));
        Assert.Contains("must name a shard file in the same directory", e.Message);

        // No weight_map at all / not JSON.
        File.WriteAllText(index, "{\"metadata\": {}}");
        Assert.Contains("missing the \"weight_map\"", Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir)).Message);
        File.WriteAllText(index, "{oops");
        Assert.Contains($"{shownIndex}: not valid JSON", Assert.Throws<SnapshotException>(() => ModelSnapshot.Open(m.Dir)).Message);
    }
}
