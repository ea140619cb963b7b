using PureFlux.Model.ZImage;
using PureFlux.Tests.Support;

namespace PureFlux.Tests.Model;

/// <summary>ZImageTransformer2DModel against diffusers on the tiny random Z-Image (tests/golden/zimage, README there).</summary>
public class ZImageTransformerTests
{
    // One transformer forward in fp32, relative to each tensor's max magnitude (the klein sets' tolerance).
    private const double Tol = 2e-4;
    private static string Dir => Path.Combine(Golden.Dir, "zimage");
    private static ZImageTransformerConfig Config => ZImageTransformerConfig.Load(Path.Combine(Dir, "model", "transformer", "config.json"));
    private static SafetensorsFile G(string name) => GoldenModel.File(Path.Combine("zimage", name));

    private static ZImageTransformer Load(Device dev) =>
        new(Config, GoldenModel.Loader(dev, "zimage/model/transformer/diffusion_pytorch_model.safetensors"), dev);

    /// <summary>latent [16, 1, H, W] → patch tokens [1, H/2·W/2, 64] on the device.</summary>
    private static Tensor Patches(Device dev, SafetensorsFile g, string name, out int rows, out int cols)
    {
        var dims = g.Entry(name).Shape;
        int c = dims[dims.Rank - 4], h = dims[-2], w = dims[-1];
        rows = h / 2; cols = w / 2;
        using var x = g.LoadF32(name, dev);
        var tokens = Tensor.Empty(dev, DType.F32, 1, rows * cols, 4 * c);
        Latents.PatchTokens(x.Reshape(c, h, w), tokens.Reshape(rows * cols, 4 * c));
        return tokens;
    }

    private static float[] Unpatch(Device dev, Tensor tokens, int c, int rows, int cols)
    {
        using var full = Tensor.Empty(dev, DType.F32, c, 2 * rows, 2 * cols);
        Latents.UnpatchTokens(tokens.Reshape(rows * cols, 4 * c), full);
        return full.ToFloatArray();
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Patch_tokens_match_diffusers_patchify_exactly(string backend)
    {
        var dev = Backends.Get(backend);
        var g = G("transformer_forward.safetensors");
        using var tokens = Patches(dev, g, "inputs.x", out int rows, out int cols);
        var expected = g.ReadFloats("x.patches").AsSpan(0, rows * cols * 64).ToArray(); // the rest are the padding's repeats
        Compare.Close(expected, tokens.ToFloatArray(), 0f, 0f, $"patch tokens on {backend}");
        Compare.Close(g.ReadFloats("inputs.x"), Unpatch(dev, tokens, 16, rows, cols), 0f, 0f, $"unpatch tokens on {backend}");
    }

    [Fact]
    public void Position_ids_and_rope_tables_match_diffusers()
    {
        var g = G("transformer_forward.safetensors");
        using var cpu = new CpuDevice();
        using var model = Load(cpu);
        var capIds = ZImageTransformer.CaptionPositionIds(ZImageTransformer.Padded(11));
        var imgIds = ZImageTransformer.ImagePositionIds(ZImageTransformer.Padded(11), 6, 10);
        Assert.Equal(g.ReadInt64("cap.pos_ids"), capIds);
        Assert.Equal(g.ReadInt64("x.pos_ids"), imgIds);
        foreach (var (ids, name) in new[] { (imgIds, "x"), (capIds, "cap") })
        {
            var (cos, sin) = model.RopeTable(ids);
            // Ours repeat each pair's factor twice (dims 2j, 2j+1); diffusers stores one complex factor per pair.
            Compare.Close(g.ReadFloats($"rope.{name}.cos"), cos.Where((_, i) => i % 2 == 0).ToArray(), 1e-6f, 1e-6f, $"rope.{name}.cos");
            Compare.Close(g.ReadFloats($"rope.{name}.sin"), sin.Where((_, i) => i % 2 == 0).ToArray(), 1e-6f, 1e-6f, $"rope.{name}.sin");
        }
    }

    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Forward_matches_diffusers_block_by_block(string backend)
    {
        var dev = Backends.Get(backend);
        var g = G("transformer_forward.safetensors");
        using var model = Load(dev);
        using var patches = Patches(dev, g, "inputs.x", out int rows, out int cols);
        using var caps = g.LoadF32("inputs.cap_feats", dev);
        int capLen = caps.Shape[0];
        using var output = Tensor.Empty(dev, DType.F32, 1, rows * cols, 64);
        var trace = new GoldenModel.Trace();
        model.Forward(patches, rows, cols, caps.Reshape(1, capLen, 64), [capLen], g.ReadFloats("inputs.t"), output, trace.Record);

        string[] names =
        [
            "temb.freq", "temb.linear_1", "temb.out", "x.seq", "cap.seq",
            "noise_refiner.0.attn.q_rope", "noise_refiner.0.attn.k_rope", "noise_refiner.0.attn.v", "noise_refiner.0.attn.sdpa_out", "noise_refiner.0", "noise_refiner.1",
            "context_refiner.0.attn.q_rope", "context_refiner.0.attn.sdpa_out", "context_refiner.0", "context_refiner.1",
            "unified.seq", "layers.0.mod", "layers.0.attention_norm1", "layers.0.attn_in", "layers.0.attn.to_q", "layers.0.attn.to_k", "layers.0.attn.to_v",
            "layers.0.attn.q_normed", "layers.0.attn.k_normed", "layers.0.attn.q_rope", "layers.0.attn.k_rope", "layers.0.attn.v", "layers.0.attn.sdpa_out",
            "layers.0.attn.out", "layers.0.attention_norm2", "layers.0.ffn_norm1", "layers.0.ffn_in", "layers.0.ffn.w1", "layers.0.ffn.w3",
            "layers.0.ffn.out", "layers.0.ffn_norm2", "layers.0", "layers.1", "final.adaLN", "final.norm_final",
        ];
        foreach (var n in names) GoldenModel.AssertClose(g, trace, n, n, Tol, $"Z-Image transformer on {backend}");
        // cap.rmsnorm covers the 11 real rows (diffusers normalises the pads' repeats too).
        var capNorm = g.ReadFloats("cap.rmsnorm").AsSpan(0, capLen * 64).ToArray();
        Assert.True(Compare.RelMaxError(capNorm, trace.Values["cap.rmsnorm"]) <= Tol, $"cap.rmsnorm on {backend}");
        var expected = g.ReadFloats("output");
        double err = Compare.RelMaxError(expected, Unpatch(dev, output, 16, rows, cols));
        Assert.True(err <= Tol, $"output on {backend}: {err:g3}");
    }

    /// <summary>
    /// The batch of two with captions of 37 and 9 tokens (how the pipeline batches CFG): diffusers zero-fills the
    /// shorter item and masks it; our ragged rows must give the same outputs, and each item equals its single run.
    /// </summary>
    [Theory, MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Batch_of_two_with_different_caption_lengths_matches_diffusers(string backend)
    {
        var dev = Backends.Get(backend);
        var g = G("transformer_forward_batch2.safetensors");
        using var model = Load(dev);
        using var one = Patches(dev, g, "inputs.x", out int rows, out int cols);
        int s = rows * cols;
        using var patches = Tensor.Empty(dev, DType.F32, 2, s, 64);
        one.CopyTo(patches.Slice(0, 1));
        one.CopyTo(patches.Slice(1, 1));
        var c0 = g.ReadFloats("inputs.cap_feats.0");
        var c1 = g.ReadFloats("inputs.cap_feats.1");
        int l0 = c0.Length / 64, l1 = c1.Length / 64, t = Math.Max(l0, l1);
        var capsH = new float[2 * t * 64];
        c0.CopyTo(capsH, 0);
        c1.CopyTo(capsH, t * 64);
        using var caps = Tensor.FromSpan<float>(dev, capsH, new Shape(2, t, 64));
        using var output = Tensor.Empty(dev, DType.F32, 2, s, 64);
        model.Forward(patches, rows, cols, caps, [l0, l1], g.ReadFloats("inputs.t"), output);
        var expected = g.ReadFloats("output");
        int per = expected.Length / 2;
        for (int b = 0; b < 2; b++)
        {
            var actual = Unpatch(dev, output.Slice(b, 1), 16, rows, cols);
            var exp = expected.AsSpan(b * per, per).ToArray();
            double err = Compare.RelMaxError(exp, actual);
            Assert.True(err <= Tol, $"batch item {b} on {backend}: {err:g3}");
            err = Compare.RelMaxError(g.ReadFloats($"single.{b}.output"), actual);
            Assert.True(err <= Tol, $"batch item {b} vs its single run on {backend}: {err:g3}");
        }
    }
}
