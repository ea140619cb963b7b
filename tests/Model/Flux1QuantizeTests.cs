using PureFlux.Model.Engine;
using PureFlux.Model.Flux1;
using PureFlux.Model.Layers;
using PureFlux.Model.Snapshot;
using PureFlux.Model.Text;
using PureFlux.Tests.Support;
using static PureFlux.Tests.Support.CliRunner;

namespace PureFlux.Tests.Model;

/// <summary>
/// <c>pureflux quantize</c> on the tiny FLUX.1 [dev] golden snapshot (tests/golden/flux1/model/FLUX.1-dev): the written
/// snapshot says its mode in every rewritten file, opens, generates exactly what load-time <c>--quant</c> gives, and
/// stays close to the unquantized run. The prompt is the golden dev pipeline's token ids and noise (the tiny encoders
/// have a 1000-token vocabulary, so the real tokenizers cannot feed them).
/// </summary>
public sealed class Flux1QuantizeTests : IDisposable
{
    private static string Source => Path.Combine(Golden.Dir, "flux1", "model", "FLUX.1-dev");
    private readonly string _dir = Directory.CreateTempSubdirectory("pureflux-flux1-quantized-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// Tolerances on the decoded image (values in [−1, 1]), as the RMS difference over the RMS of the unquantized image:
    /// int8 stores each weight row with 255 levels (error ≤ max|w|/254 per weight), int4 each group of 32 with 15 levels
    /// (≤ max|w|/14, ~18× coarser), and the errors of CLIP, T5 and 6 transformer blocks add up over 2 steps. Measured on
    /// this snapshot: int8 0.0103, int4 0.158; the bounds (0.03, 0.4) leave 2.5–3× headroom and still fail for a broken
    /// quantizer (a wrong scale or nibble order gives a relative RMS near 1). Exactness against load-time quantization is
    /// checked separately (bit for bit).
    /// </summary>
    [Theory]
    [InlineData("int8", QuantMode.Int8, 0.03)]
    [InlineData("int4", QuantMode.Int4, 0.4)]
    public void A_quantized_snapshot_says_its_mode_and_generates_close_to_the_unquantized_one(string quant, QuantMode mode, double tolerance)
    {
        string q = Path.Combine(_dir, quant);
        var made = Run("quantize", "--model", Source, "--quant", quant, "--out", q);
        Assert.True(made.Code == 0, made.Err);
        Assert.Equal("flux1", ModelFamilies.Detect(q).Name);

        // Every rewritten component file carries the mode; the VAE is copied as it was.
        foreach (var (component, file) in new[] { ("transformer", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors"), ("text_encoder_2", "model.safetensors") })
        {
            using var f = SafetensorsFile.Open(Path.Combine(q, component, file));
            Assert.Equal(quant, f.Metadata[QuantizedSnapshot.MetadataKey]);
        }
        using (var vae = SafetensorsFile.Open(Path.Combine(q, "vae", "diffusion_pytorch_model.safetensors")))
            Assert.False(vae.Metadata.ContainsKey(QuantizedSnapshot.MetadataKey));

        using var original = Flux1Snapshot.Open(Source);
        using var stored = Flux1Snapshot.Open(q);
        Assert.Equal(QuantMode.None, QuantizedSnapshot.StoredMode(original.Transformer));
        Assert.Equal(mode, QuantizedSnapshot.StoredMode(stored.Transformer));
        var integer = quant == "int8" ? DType.I8 : DType.I4;
        Assert.Equal(integer, stored.Transformer.Entry("transformer_blocks.0.attn.to_q.weight").DType);
        Assert.True(stored.Transformer.Contains("transformer_blocks.0.attn.to_q" + Linear.ScaleSuffix));
        Assert.Equal(integer, stored.Clip.Entry("text_model.encoder.layers.0.mlp.fc1.weight").DType);
        Assert.Equal(integer, stored.T5.Entry("encoder.block.0.layer.0.SelfAttention.q.weight").DType);
        // Never quantized: the conditioning embedders, the token tables. int4 also keeps T5's wo (K = d_ff 80 is not a multiple of 32).
        Assert.Equal(original.Transformer.Entry("time_text_embed.timestep_embedder.linear_1.weight").DType, stored.Transformer.Entry("time_text_embed.timestep_embedder.linear_1.weight").DType);
        Assert.Equal(original.T5.Entry(original.T5EmbeddingWeight).DType, stored.T5.Entry(stored.T5EmbeddingWeight).DType);
        const string wo = "encoder.block.0.layer.1.DenseReluDense.wo.weight";
        Assert.Equal(quant == "int8" ? DType.I8 : original.T5.Entry(wo).DType, stored.T5.Entry(wo).DType);

        using var cpu = new CpuDevice();
        float[] Generate(Flux1Snapshot s, QuantMode loadTime)
        {
            using var model = new Flux1Model(s, cpu, new ModelOptions { Quant = loadTime });
            return GenerateGoldenPrompt(model, cpu);
        }
        var reference = Generate(original, QuantMode.None);
        var fromFile = Generate(stored, QuantMode.None);
        Assert.Equal(Generate(original, mode), fromFile); // the stored integers are exactly what --quant makes at load time
        double rms = RelativeRms(reference, fromFile);
        Assert.True(rms > 0, $"{quant}: the quantized run equals the unquantized one; nothing was quantized");
        Assert.True(rms < tolerance, $"{quant}: decoded image differs from the unquantized run by relative RMS {rms:G3} (bound {tolerance})");

        var wrong = Assert.Throws<ArgumentException>(() => new Flux1Model(stored, cpu, new ModelOptions { Quant = mode == QuantMode.Int8 ? QuantMode.Int4 : QuantMode.Int8 }));
        Assert.Contains($"stored as {quant}", wrong.Message);
    }

    /// <summary>The golden dev pipeline's prompt ids and noise, 64×64, 2 steps: the decoded image [3, 64, 64].</summary>
    private static float[] GenerateGoldenPrompt(Flux1Model model, Device dev)
    {
        using var g = SafetensorsFile.Open(Path.Combine(Golden.Dir, "flux1", "pipeline_dev_h64_w64.safetensors"));
        var clip = g.ReadInt64("inputs.clip_input_ids").Select(v => (int)v).ToArray();
        var t5 = g.ReadInt64("inputs.t5_input_ids").Select(v => (int)v).ToArray();
        var pooled = model.EncodeClip([clip])[0];
        var embeds = model.EncodeT5([t5])[0];
        using var text = new TextConditioning(Tensor.FromSpan<float>(dev, embeds, new Shape(1, t5.Length, embeds.Length / t5.Length)),
            pooled: Tensor.FromSpan<float>(dev, pooled, new Shape(1, pooled.Length)));
        using var noise = g.LoadF32("inputs.initial_noise", dev);
        return GenerationEngine.Run(model, new GenerationJob { PromptEmbeds = text, Noise = noise, Width = 64, Height = 64, Steps = 2 }).Decoded;
    }

    private static double RelativeRms(float[] expected, float[] actual)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = (double)actual[i] - expected[i];
            diff += d * d;
            norm += (double)expected[i] * expected[i];
        }
        return Math.Sqrt(diff / norm);
    }
}
