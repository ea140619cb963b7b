using PureFlux.Model.Layers;

namespace PureFlux.Model.ZImage;

/// <summary>
/// ZImageTransformer2DModel (text-to-image path): timestep MLP → adaLN input [B, min(D, 256)]; image patch tokens
/// embedded and padded to a multiple of 32 with the learned <c>x_pad_token</c>; caption features RMSNorm + Linear,
/// padded with <c>cap_pad_token</c>; modulated noise-refiner blocks on the image tokens and unmodulated context-refiner
/// blocks on the caption tokens; then the main blocks on [image; caption]; final LayerNorm · (1 + scale) → Linear.
/// Items of a batch may have different caption lengths: they are held as one ragged token matrix (see
/// <see cref="ZImageBlock"/>), which is what diffusers' zero-filled, key-masked batch computes.
/// </summary>
public sealed class ZImageTransformer : IDisposable
{
    private const float FinalEps = 1e-6f;
    private readonly Linear _t1, _t2, _xEmbed, _capEmbed, _finalAdaLn, _finalLinear;
    private readonly Tensor _capNorm, _xPad, _capPad, _zeros;
    /// <summary>Wait for the device after every block (the experiment switch <c>sync-per-block</c>; ModelOptions.SyncPerBlock).</summary>
    public bool SyncPerBlock { get; set; }
    private readonly ZImageBlock[] _noiseRefiner, _contextRefiner, _layers;
    private RopeSet? _rope;

    public ZImageTransformer(ZImageTransformerConfig config, WeightLoader load, Device device, QuantMode quant = QuantMode.None)
    {
        Config = config;
        var c = config;
        int d = c.Dim;
        _t1 = new Linear(load, "t_embedder.mlp.0", ZImageTransformerConfig.FrequencyDim, ZImageTransformerConfig.TimeHidden, bias: true);
        _t2 = new Linear(load, "t_embedder.mlp.2", ZImageTransformerConfig.TimeHidden, c.AdaLnDim, bias: true);
        _xEmbed = new Linear(load, "all_x_embedder.2-1", c.PatchChannels, d, bias: true);
        _capNorm = load("cap_embedder.0.weight", c.CapFeatDim);
        _capEmbed = new Linear(load, "cap_embedder.1", c.CapFeatDim, d, bias: true, quant: quant);
        _xPad = F32(load("x_pad_token", 1, d), device);
        _capPad = F32(load("cap_pad_token", 1, d), device);
        _finalAdaLn = new Linear(load, "all_final_layer.2-1.adaLN_modulation.1", c.AdaLnDim, d, bias: true);
        _finalLinear = new Linear(load, "all_final_layer.2-1.linear", d, c.PatchChannels, bias: true);
        _noiseRefiner = Enumerable.Range(0, c.NumRefinerLayers).Select(i => new ZImageBlock(load, $"noise_refiner.{i}", c, modulated: true, quant)).ToArray();
        _contextRefiner = Enumerable.Range(0, c.NumRefinerLayers).Select(i => new ZImageBlock(load, $"context_refiner.{i}", c, modulated: false, quant)).ToArray();
        _layers = Enumerable.Range(0, c.NumLayers).Select(i => new ZImageBlock(load, $"layers.{i}", c, modulated: true, quant)).ToArray();
        _zeros = Tensor.Zeros(device, DType.F32, new Shape(d));
    }

    public ZImageTransformerConfig Config { get; }

    /// <summary>The pad tokens are copied into F32 activations: held as F32 whatever the checkpoint's dtype.</summary>
    private static Tensor F32(Tensor t, Device device)
    {
        if (t.DType == DType.F32) return t;
        using (t) return Tensor.FromSpan<float>(device, t.ToFloatArray(), t.Shape);
    }

    /// <summary>n rounded up to a multiple of 32 (diffusers' SEQ_MULTI_OF): image and caption lengths after padding.</summary>
    public static int Padded(int n) => (n + ZImageTransformerConfig.SequenceMultiple - 1) / ZImageTransformerConfig.SequenceMultiple * ZImageTransformerConfig.SequenceMultiple;

    /// <summary>Caption rows' position ids [C, 3]: row i → (1 + i, 0, 0), pads included.</summary>
    public static long[] CaptionPositionIds(int paddedCaption)
    {
        var ids = new long[paddedCaption * 3];
        for (int i = 0; i < paddedCaption; i++) ids[i * 3] = 1 + i;
        return ids;
    }

    /// <summary>
    /// Image rows' position ids [P, 3] for a rows × cols token grid after a caption padded to <paramref name="paddedCaption"/>:
    /// token (h, w) → (C + 1, h, w); the pad rows up to P = <see cref="Padded"/>(rows · cols) → (0, 0, 0).
    /// </summary>
    public static long[] ImagePositionIds(int paddedCaption, int rows, int cols)
    {
        int tokens = rows * cols;
        var ids = new long[Padded(tokens) * 3];
        for (int h = 0; h < rows; h++)
            for (int w = 0; w < cols; w++)
            {
                int r = (h * cols + w) * 3;
                ids[r] = paddedCaption + 1;
                ids[r + 1] = h;
                ids[r + 2] = w;
            }
        return ids;
    }

    /// <summary>RoPE factors for position ids [S, 3]: cos, sin [S, head_dim] (each pair's factor twice, as Rope.ApplyInterleaved takes them).</summary>
    public (float[] Cos, float[] Sin) RopeTable(long[] ids) => RopeTables.Flux2(ids, Config.AxesDims, Config.RopeTheta, float32Angles: true);

    /// <summary>
    /// One forward. patches [B, S, p·p·C] = the latents' patch tokens (row-major grid <paramref name="rows"/> ×
    /// <paramref name="cols"/>, features (p, c) with the channel fastest); captions [B, T, cap_feat_dim] of which item b
    /// uses the first <paramref name="captionLengths"/>[b] rows; t [B] = the model's timestep input (0 at pure noise).
    /// Writes output [B, S, p·p·C] (the raw model output; the pipeline negates it). <paramref name="trace"/> is only
    /// called for B = 1.
    /// </summary>
    public void Forward(Tensor patches, int rows, int cols, Tensor captions, IReadOnlyList<int> captionLengths, ReadOnlySpan<float> t, Tensor output,
        Action<string, Tensor>? trace = null)
    {
        const string op = nameof(ZImageTransformer);
        var c = Config;
        var dev = patches.Device;
        int d = c.Dim, pc = c.PatchChannels;
        Check.Rank(op, "patches", patches, 3);
        Check.Rank(op, "captions", captions, 3);
        int batch = patches.Shape[0], s = patches.Shape[1];
        Check.That(s == rows * cols && s > 0, op, $"patches has shape {patches.Shape}; expected {rows}×{cols} = {rows * cols} tokens");
        Check.LastDim(op, "patches", patches, pc);
        Check.LastDim(op, "captions", captions, c.CapFeatDim);
        Check.That(captions.Shape[0] == batch && captionLengths.Count == batch && t.Length == batch, op,
            $"captions {captions.Shape}, {captionLengths.Count} caption lengths and {t.Length} timesteps for a batch of {batch}");
        Check.That(captionLengths.All(l => l >= 1 && l <= captions.Shape[1]), op, $"caption lengths [{string.Join(", ", captionLengths)}] must be in 1..{captions.Shape[1]}");
        Check.That(output.Rank == 3 && output.Shape[0] == batch && output.Shape[1] == s && output.Shape[2] == pc, op, $"output has shape {output.Shape}; expected [{batch}, {s}, {pc}]");
        if (batch != 1) trace = null;

        var rope = Rope(dev, rows, cols, captionLengths);
        int p = rope.ImageRows;

        // Timestep → adaLN input [B, min(D, 256)] (no activation after the second Linear).
        var tScaled = new float[batch];
        for (int b = 0; b < batch; b++) tScaled[b] = t[b] * (float)c.TScale;
        using var adaln = Tensor.Empty(dev, DType.F32, batch, c.AdaLnDim);
        using (var tIn = Tensor.FromSpan<float>(dev, tScaled, new Shape(batch)))
        using (var freq = Tensor.Empty(dev, DType.F32, batch, ZImageTransformerConfig.FrequencyDim))
        using (var hidden = Tensor.Empty(dev, DType.F32, batch, ZImageTransformerConfig.TimeHidden))
        {
            TimestepEmbedding.Forward(tIn, freq);
            trace?.Invoke("temb.freq", freq);
            _t1.Forward(freq, hidden);
            trace?.Invoke("temb.linear_1", hidden);
            Silu.Forward(hidden, hidden);
            _t2.Forward(hidden, adaln);
            trace?.Invoke("temb.out", adaln);
        }

        // Image tokens [B·P, D]: embedded, then the pad rows replaced by the learned pad token.
        using var img = Tensor.Empty(dev, DType.F32, batch * p, d);
        for (int b = 0; b < batch; b++)
        {
            var rowsB = img.Slice(b * p, p);
            _xEmbed.Forward(patches.Slice(b, 1).Reshape(s, pc), rowsB.Slice(0, s));
            for (int r = s; r < p; r++) _xPad.CopyTo(rowsB.Slice(r, 1));
        }
        trace?.Invoke("x.seq", img);

        // Caption tokens, ragged [ΣC_b, D]: RMSNorm + Linear on the real rows, pad token after them.
        using var cap = Tensor.Empty(dev, DType.F32, rope.CaptionRows, d);
        using (var normed = Tensor.Empty(dev, DType.F32, captionLengths.Max(), c.CapFeatDim))
            for (int b = 0; b < batch; b++)
            {
                int len = captionLengths[b];
                var seg = rope.Captions[b];
                var nb = normed.Slice(0, len);
                RmsNorm.Forward(captions.Slice(b, 1).Reshape(captions.Shape[1], c.CapFeatDim).Slice(0, len), _capNorm, nb, (float)c.NormEps);
                trace?.Invoke("cap.rmsnorm", nb);
                _capEmbed.Forward(nb, cap.Slice(seg.Offset, len));
                for (int r = len; r < seg.Length; r++) _capPad.CopyTo(cap.Slice(seg.Offset + r, 1));
            }
        trace?.Invoke("cap.seq", cap);

        var imageSegments = Enumerable.Range(0, batch).Select(b => new TokenSegment(b * p, p)).ToArray();
        for (int i = 0; i < _noiseRefiner.Length; i++)
        {
            using var mod = _noiseRefiner[i].Modulation(adaln);
            _noiseRefiner[i].Forward(img, imageSegments, mod, rope.ImageCos, rope.ImageSin, Sub(trace, $"noise_refiner.{i}"));
            if (SyncPerBlock) dev.Synchronize();
            trace?.Invoke($"noise_refiner.{i}", img);
        }
        for (int i = 0; i < _contextRefiner.Length; i++)
        {
            _contextRefiner[i].Forward(cap, rope.Captions, null, rope.CaptionCos, rope.CaptionSin, Sub(trace, $"context_refiner.{i}"));
            if (SyncPerBlock) dev.Synchronize();
            trace?.Invoke($"context_refiner.{i}", cap);
        }

        // Unified per item: [image rows (pads included); caption rows].
        using var x = Tensor.Empty(dev, DType.F32, rope.UnifiedRows, d);
        for (int b = 0; b < batch; b++)
        {
            var u = rope.Unified[b];
            img.Slice(b * p, p).CopyTo(x.Slice(u.Offset, p));
            cap.Slice(rope.Captions[b].Offset, rope.Captions[b].Length).CopyTo(x.Slice(u.Offset + p, rope.Captions[b].Length));
        }
        trace?.Invoke("unified.seq", x);
        using (var keys = TokenMergeRatio is null ? null : Tensor.Empty(dev, DType.F32, rope.UnifiedRows, d))
        {
            ZImageTokenMerge? merge = null;
            try
            {
                for (int i = 0; i < _layers.Length; i++)
                {
                    var tr = Sub(trace, $"layers.{i}");
                    using var mod = _layers[i].Modulation(adaln, tr);
                    _layers[i].Forward(x, rope.Unified, mod, rope.UnifiedCos, rope.UnifiedSin, tr, merge, i == 0 ? keys : null);
                    if (i == 0 && keys is not null) merge = PlanMerge(keys, rows, cols, rope);
                    if (SyncPerBlock) dev.Synchronize();
                    trace?.Invoke($"layers.{i}", x);
                }
            }
            finally { merge?.Dispose(); }
        }

        // Final layer on the image rows: LayerNorm (no affine) · (1 + Linear(SiLU(adaln))), then Linear to patches.
        using var scale = Tensor.Empty(dev, DType.F32, batch, d);
        using (var act = Tensor.Empty(dev, DType.F32, batch, c.AdaLnDim))
        {
            Silu.Forward(adaln, act);
            _finalAdaLn.Forward(act, scale);
        }
        trace?.Invoke("final.adaLN", scale);
        if (trace is not null)
        {
            using var all = Tensor.Empty(dev, DType.F32, rope.UnifiedRows, d);
            LayerNormModulate.LayerNorm(x, all, FinalEps);
            trace("final.norm_final", all);
        }
        using var norm = Tensor.Empty(dev, DType.F32, batch * s, d);
        for (int b = 0; b < batch; b++)
            LayerNormModulate.Forward(x.Slice(rope.Unified[b].Offset, s), _zeros, scale.Slice(b, 1), norm.Slice(b * s, s), FinalEps);
        _finalLinear.Forward(norm, output.Reshape(batch * s, pc));
        trace?.Invoke("output", output.Reshape(s, pc));
    }

    /// <summary>
    /// The experiment switch <c>tome RATIO</c> (null = off): token merging of ⌊ratio · S⌋ of each item's image tokens
    /// (ToMe's bipartite matching, <see cref="TokenMerging"/>) in every main layer after the first, whose key projections
    /// plan it (one plan per item and forward). The refiners run unmerged (they see one modality each, before the
    /// unified sequence exists); pad and caption rows are never merged.
    /// </summary>
    public double? TokenMergeRatio { get; init; }

    private ZImageTokenMerge PlanMerge(Tensor keys, int rows, int cols, RopeSet rope)
    {
        int s = rows * cols;
        var plans = new List<TokenMergePlan>();
        try
        {
            foreach (var u in rope.Unified)
                plans.Add(TokenMerging.Plan(keys.Slice(u.Offset, s), rows, cols, TokenMergeRatio!.Value, 0, u.Length,
                    rope.UnifiedCos.Slice(u.Offset, u.Length), rope.UnifiedSin.Slice(u.Offset, u.Length)));
            return new ZImageTokenMerge(plans.ToArray(), rope.Unified);
        }
        catch
        {
            foreach (var p in plans) p.Dispose();
            throw;
        }
    }

    private static Action<string, Tensor>? Sub(Action<string, Tensor>? trace, string prefix) =>
        trace is null ? null : (n, t) => trace($"{prefix}.{n}", t);

    /// <summary>The RoPE tables and row layout for one (grid, caption lengths) combination; kept while they repeat (every step of a job).</summary>
    /// <summary>Keep the RoPE tables of the last size between calls (the default); false rebuilds them on every call (experiment switch rope-cache=off).</summary>
    public bool CacheRope { get; set; } = true;

    private RopeSet Rope(Device dev, int rows, int cols, IReadOnlyList<int> captionLengths)
    {
        if (!CacheRope) { _rope?.Dispose(); _rope = null; }
        string key = $"{rows}x{cols}:{string.Join(',', captionLengths)}";
        if (_rope is { } r && r.Key == key && r.Device == dev) return r;
        _rope?.Dispose();
        _rope = null;
        int p = Padded(rows * cols);
        var caps = new List<TokenSegment>();
        var unified = new List<TokenSegment>();
        var imgCos = new List<float>(); var imgSin = new List<float>();
        var capCos = new List<float>(); var capSin = new List<float>();
        var uniCos = new List<float>(); var uniSin = new List<float>();
        int capOffset = 0, uniOffset = 0;
        foreach (int len in captionLengths)
        {
            int cp = Padded(len);
            var (ic, isn) = RopeTable(ImagePositionIds(cp, rows, cols));
            var (cc, cs) = RopeTable(CaptionPositionIds(cp));
            imgCos.AddRange(ic); imgSin.AddRange(isn);
            capCos.AddRange(cc); capSin.AddRange(cs);
            uniCos.AddRange(ic); uniCos.AddRange(cc);
            uniSin.AddRange(isn); uniSin.AddRange(cs);
            caps.Add(new TokenSegment(capOffset, cp));
            unified.Add(new TokenSegment(uniOffset, p + cp));
            capOffset += cp;
            uniOffset += p + cp;
        }
        int hd = Config.HeadDim;
        Tensor T(List<float> v) => Tensor.FromSpan<float>(dev, v.ToArray(), new Shape(v.Count / hd, hd));
        _rope = new RopeSet(key, dev, p, caps, unified, T(imgCos), T(imgSin), T(capCos), T(capSin), T(uniCos), T(uniSin));
        return _rope;
    }

    private sealed record RopeSet(string Key, Device Device, int ImageRows, IReadOnlyList<TokenSegment> Captions, IReadOnlyList<TokenSegment> Unified,
        Tensor ImageCos, Tensor ImageSin, Tensor CaptionCos, Tensor CaptionSin, Tensor UnifiedCos, Tensor UnifiedSin) : IDisposable
    {
        public int CaptionRows => Captions.Sum(s => s.Length);
        public int UnifiedRows => Unified.Sum(s => s.Length);
        public void Dispose()
        {
            foreach (var t in new[] { ImageCos, ImageSin, CaptionCos, CaptionSin, UnifiedCos, UnifiedSin }) t.Dispose();
        }
    }

    public void Dispose()
    {
        _rope?.Dispose();
        foreach (var l in new[] { _t1, _t2, _xEmbed, _capEmbed, _finalAdaLn, _finalLinear }) l.Dispose();
        foreach (var t in new[] { _capNorm, _xPad, _capPad, _zeros }) t.Dispose();
        foreach (var b in _noiseRefiner.Concat(_contextRefiner).Concat(_layers)) b.Dispose();
    }
}
