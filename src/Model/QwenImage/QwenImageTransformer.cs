using PureFlux.Model.Layers;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// QwenImageTransformer2DModel (text-to-image): packed latent tokens → img_in; text hidden states → txt_norm (RMSNorm
/// over the text channels) → txt_in; timestep → sinusoid of (t·f)·1000, cos first → MLP → temb; num_layers dual-stream
/// <see cref="QwenImageBlock"/>s on [text; image]; norm_out = LayerNorm · (1 + scale) + shift with Linear(SiLU(temb))
/// split as (scale, shift) — the reverse of the blocks — then proj_out on the image tokens. Samples run one after the
/// other, each on its own joint buffer; a sample's padded text tokens (mask 0) are masked out as keys.
/// </summary>
public sealed class QwenImageTransformer : IDisposable
{
    private readonly Linear _imgIn, _txtIn, _t1, _t2, _normOut, _projOut;
    private readonly Tensor _txtNorm;
    private readonly QwenImageBlock[] _blocks;
    private RopeSet? _rope;

    public QwenImageTransformer(QwenImageTransformerConfig config, WeightLoader load, QuantMode quant = QuantMode.None)
    {
        Config = config;
        var c = config;
        int d = c.Dim;
        _imgIn = new Linear(load, "img_in", c.InChannels, d, bias: true);
        _txtNorm = load("txt_norm.weight", c.JointAttentionDim);
        _txtIn = new Linear(load, "txt_in", c.JointAttentionDim, d, bias: true, quant: quant);
        _t1 = new Linear(load, "time_text_embed.timestep_embedder.linear_1", QwenImageTransformerConfig.FrequencyDim, d, bias: true);
        _t2 = new Linear(load, "time_text_embed.timestep_embedder.linear_2", d, d, bias: true);
        _blocks = Enumerable.Range(0, c.NumLayers).Select(i => new QwenImageBlock(load, $"transformer_blocks.{i}", c, quant)).ToArray();
        _normOut = new Linear(load, "norm_out.linear", d, 2 * d, bias: true);
        _projOut = new Linear(load, "proj_out", d, c.OutputChannels, bias: true);
    }

    public QwenImageTransformerConfig Config { get; }

    /// <summary>
    /// The timestep sinusoid [B, 256] as diffusers' Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0, scale=1000)
    /// computes it in float32: a_i = (t · f_i) · 1000 with f_i = exp(−ln(10000)·i/128), then [cos(a), sin(a)].
    /// </summary>
    public static float[] TimestepSinusoid(ReadOnlySpan<float> t)
    {
        const int dim = QwenImageTransformerConfig.FrequencyDim, half = dim / 2;
        var f = TimestepEmbedding.Frequencies(half);
        var y = new float[t.Length * dim];
        for (int b = 0; b < t.Length; b++)
            for (int i = 0; i < half; i++)
            {
                float a = t[b] * f[i];
                a *= QwenImageTransformerConfig.TimestepScale;
                y[b * dim + i] = (float)Math.Cos(a);
                y[b * dim + half + i] = (float)Math.Sin(a);
            }
        return y;
    }

    /// <summary>
    /// One forward. latents [B, S, in_channels] = packed tokens of a rows × cols grid (row-major); text [B, T, joint_dim]
    /// with mask [B, T] (F32 1 = real token; null = all real); t [B] = the model's timestep input (σ = scheduler t / 1000).
    /// Writes output [B, S, p·p·out_channels]. <paramref name="trace"/> sees sample 0's intermediates (names as the
    /// golden set's transformer_forward file).
    /// </summary>
    public void Forward(Tensor latents, int rows, int cols, Tensor text, Tensor? mask, ReadOnlySpan<float> t, Tensor output, Action<string, Tensor>? trace = null)
    {
        const string op = nameof(QwenImageTransformer);
        var c = Config;
        var dev = latents.Device;
        int d = c.Dim;
        Check.Rank(op, "latents", latents, 3);
        Check.Rank(op, "text", text, 3);
        int batch = latents.Shape[0], s = latents.Shape[1], tl = text.Shape[1];
        Check.That(s == rows * cols && s > 0, op, $"latents has shape {latents.Shape}; expected {rows}×{cols} = {rows * cols} tokens");
        Check.LastDim(op, "latents", latents, c.InChannels);
        Check.LastDim(op, "text", text, c.JointAttentionDim);
        Check.That(text.Shape[0] == batch && t.Length == batch && tl > 0, op, $"text {text.Shape} and {t.Length} timesteps for a batch of {batch}");
        Check.That(mask is null || (mask.Rank == 2 && mask.Shape[0] == batch && mask.Shape[1] == tl), op, $"mask has shape {mask?.Shape}; expected [{batch}, {tl}]");
        Check.That(output.Rank == 3 && output.Shape[0] == batch && output.Shape[1] == s && output.Shape[2] == c.OutputChannels, op,
            $"output has shape {output.Shape}; expected [{batch}, {s}, {c.OutputChannels}]");
        int start = Math.Max(rows / 2, cols / 2);
        Check.That(rows <= QwenImageTransformerConfig.RopePositions && cols <= QwenImageTransformerConfig.RopePositions && start + tl <= QwenImageTransformerConfig.RopePositions, op,
            $"a {rows}×{cols} token grid with {tl} text tokens exceeds the RoPE position range ({QwenImageTransformerConfig.RopePositions})");

        var rope = Rope(dev, rows, cols, tl);
        trace?.Invoke("rope.img.cos", rope.ImgCosHalf);
        trace?.Invoke("rope.img.sin", rope.ImgSinHalf);
        trace?.Invoke("rope.txt.cos", rope.TxtCosHalf);
        trace?.Invoke("rope.txt.sin", rope.TxtSinHalf);

        // temb [B, D] and SiLU(temb), shared by every block's modulation.
        using var siluTemb = Tensor.Empty(dev, DType.F32, batch, d);
        using (var sinus = Tensor.FromSpan<float>(dev, TimestepSinusoid(t), new Shape(batch, QwenImageTransformerConfig.FrequencyDim)))
        using (var hidden = Tensor.Empty(dev, DType.F32, batch, d))
        {
            trace?.Invoke("temb.time_proj", sinus);
            _t1.Forward(sinus, hidden);
            trace?.Invoke("temb.linear_1", hidden);
            Silu.Forward(hidden, hidden);
            _t2.Forward(hidden, siluTemb);
            trace?.Invoke("temb.out", siluTemb);
            Silu.Forward(siluTemb, siluTemb);
        }
        var mods = _blocks.Select(b => b.Modulation(siluTemb)).ToArray();
        using var final = Tensor.Empty(dev, DType.F32, batch, 2, d);
        _normOut.Forward(siluTemb, final.Reshape(batch, 2 * d));

        float[]? maskH = mask?.ToFloatArray();
        try
        {
            using var x = Tensor.Empty(dev, DType.F32, tl + s, d);
            using var normed = Tensor.Empty(dev, DType.F32, tl, c.JointAttentionDim);
            using var norm = Tensor.Empty(dev, DType.F32, s, d);
            for (int b = 0; b < batch; b++)
            {
                var tr = b == 0 ? trace : null;
                _imgIn.Forward(latents.Slice(b, 1).Reshape(s, c.InChannels), x.Slice(tl, s));
                tr?.Invoke("img_in", x.Slice(tl, s));
                RmsNorm.Forward(text.Slice(b, 1).Reshape(tl, c.JointAttentionDim), _txtNorm, normed, QwenImageTransformerConfig.NormEps);
                tr?.Invoke("txt_norm", normed);
                _txtIn.Forward(normed, x.Slice(0, tl));
                tr?.Invoke("txt_in", x.Slice(0, tl));

                // Key mask [T + S] only when this sample has padded text.
                Tensor? keyMask = null;
                if (maskH is not null && Enumerable.Range(0, tl).Any(i => maskH[b * tl + i] == 0))
                {
                    var km = new byte[tl + s];
                    for (int i = 0; i < tl; i++) km[i] = maskH[b * tl + i] != 0 ? (byte)1 : (byte)0;
                    Array.Fill(km, (byte)1, tl, s);
                    keyMask = Tensor.FromSpan<byte>(dev, km, new Shape(tl + s), DType.U8);
                }
                using (keyMask)
                using (var keys = TokenMergeRatio is null ? null : Tensor.Empty(dev, DType.F32, s, d))
                {
                    TokenMergePlan? plan = null;
                    try
                    {
                        for (int i = 0; i < _blocks.Length; i++)
                        {
                            Streaming?.Starting($"transformer_blocks.{i}.", $"transformer_blocks.{(i + 1) % _blocks.Length}.");
                            var (img, txt) = mods[i];
                            var bt = tr is null ? null : Sub(tr, $"block.{i}");
                            _blocks[i].Forward(x, tl, Sample(img, b), Sample(txt, b), rope.TxtCos, rope.TxtSin, rope.ImgCos, rope.ImgSin, keyMask,
                                i == 0 ? bt : null, plan, i == 0 ? keys : null);
                            if (i == 0 && keys is not null)
                                plan = TokenMerging.Plan(keys, rows, cols, TokenMergeRatio!.Value, 0, s, rope.ImgCos, rope.ImgSin);
                            if (SyncPerBlock) x.Device.Synchronize();
                            bt?.Invoke("txt", x.Slice(0, tl));
                            bt?.Invoke("img", x.Slice(tl, s));
                            Streaming?.Done($"transformer_blocks.{i}.");
                        }
                    }
                    finally { plan?.Dispose(); }
                }

                var fm = final.Slice(b, 1).Reshape(2, d);
                LayerNormModulate.Forward(x.Slice(tl, s), fm.Slice(1, 1).Reshape(d), fm.Slice(0, 1).Reshape(d), norm, QwenImageTransformerConfig.NormEps);
                tr?.Invoke("norm_out", norm);
                _projOut.Forward(norm, output.Slice(b, 1).Reshape(s, c.OutputChannels));
                tr?.Invoke("output", output.Slice(b, 1).Reshape(s, c.OutputChannels));
            }
        }
        finally
        {
            foreach (var (img, txt) in mods) { img.Dispose(); txt.Dispose(); }
        }
    }

    private static Tensor Sample(Tensor mod, int b) => mod.Slice(b, 1).Reshape(mod.Shape[1], mod.Shape[2]);

    private static Action<string, Tensor> Sub(Action<string, Tensor> trace, string prefix) => (n, t) => trace($"{prefix}.{n}", t);

    /// <summary>The RoPE tables for one (grid, text length) combination; kept while they repeat (every step of a job).</summary>
    /// <summary>
    /// Weight streaming for weights larger than memory: <c>Starting(prefix, nextPrefix)</c> before a block runs (the model
    /// reads the next block ahead), <c>Done(prefix)</c> after it (the model drops its pages from the resident set).
    /// Prefixes are "transformer_blocks.{i}.". Blocks run per sample, so a batch re-reads them per sample.
    /// </summary>
    public (Action<string, string?> Starting, Action<string> Done)? Streaming { get; set; }
    /// <summary>Wait for the device after every block (the experiment switch <c>sync-per-block</c>; ModelOptions.SyncPerBlock).</summary>
    public bool SyncPerBlock { get; set; }

    /// <summary>
    /// The experiment switch <c>tome RATIO</c> (null = off): token merging of ⌊ratio · S⌋ image tokens (ToMe's bipartite
    /// matching, <see cref="TokenMerging"/>) in every block after the first. Qwen-Image's 60 blocks are all dual-stream, so
    /// only the image stream merges: its q/k/v, attention rows, output projection and MLP run on the merged rows, the
    /// text stream and the attention over it are untouched. The first block runs at full resolution and gives the keys
    /// (its image key projections) for one plan per sample and forward.
    /// </summary>
    public double? TokenMergeRatio { get; init; }

    /// <summary>Keep the RoPE tables of the last size between calls (the default); false rebuilds them on every call (experiment switch rope-cache=off).</summary>
    public bool CacheRope { get; set; } = true;

    private RopeSet Rope(Device dev, int rows, int cols, int textLength)
    {
        if (!CacheRope) { _rope?.Dispose(); _rope = null; }
        string key = $"{rows}x{cols}:{textLength}";
        if (_rope is { } r && r.Key == key && r.Device == dev) return r;
        _rope?.Dispose();
        _rope = null;
        var axes = Config.AxesDimsRope;
        int half = Config.AttentionHeadDim / 2;
        var (ic, isn) = QwenImageRope.Factors(QwenImageRope.ImagePositions(rows, cols), axes);
        var (tc, ts) = QwenImageRope.Factors(QwenImageRope.OnAllAxes(QwenImageRope.TextPositions(rows, cols, textLength)), axes);
        Tensor T(float[] v, int w) => Tensor.FromSpan<float>(dev, v, new Shape(v.Length / w, w));
        _rope = new RopeSet(key, dev,
            T(QwenImageRope.Interleave(ic), 2 * half), T(QwenImageRope.Interleave(isn), 2 * half),
            T(QwenImageRope.Interleave(tc), 2 * half), T(QwenImageRope.Interleave(ts), 2 * half),
            T(ic, half), T(isn, half), T(tc, half), T(ts, half));
        return _rope;
    }

    private sealed record RopeSet(string Key, Device Device, Tensor ImgCos, Tensor ImgSin, Tensor TxtCos, Tensor TxtSin,
        Tensor ImgCosHalf, Tensor ImgSinHalf, Tensor TxtCosHalf, Tensor TxtSinHalf) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in new[] { ImgCos, ImgSin, TxtCos, TxtSin, ImgCosHalf, ImgSinHalf, TxtCosHalf, TxtSinHalf }) t.Dispose();
        }
    }

    public void Dispose()
    {
        _rope?.Dispose();
        foreach (var l in new[] { _imgIn, _txtIn, _t1, _t2, _normOut, _projOut }) l.Dispose();
        _txtNorm.Dispose();
        foreach (var b in _blocks) b.Dispose();
    }
}
