using PureFlux.Model.Config;
using PureFlux.Model.Layers;

namespace PureFlux.Model.Flux2;

/// <summary>
/// Flux2Transformer2DModel: timestep embedding → shared modulation → x/context embedders → double-stream
/// blocks → single-stream blocks → AdaLN (scale, shift) → proj_out, on image tokens [S_img, in] with text
/// [S_txt, joint_dim]. The text stream comes first in the joint sequence.
/// </summary>
public sealed class Flux2Transformer : IDisposable
{
    private readonly Linear _timeLinear1, _timeLinear2, _modImg, _modTxt, _modSingle, _normOut, _xEmbed, _ctxEmbed, _projOut;
    /// <summary>Wait for the device after every block (the experiment switch <c>sync-per-block</c>; ModelOptions.SyncPerBlock).</summary>
    public bool SyncPerBlock { get; set; }
    /// <summary>
    /// The experiment switch <c>tome RATIO</c> (ModelOptions.TokenMergeRatio; null = off): the single-stream blocks run
    /// their branch on the joint sequence with ⌊ratio · N⌋ of the N generated image tokens merged
    /// (<see cref="TokenMerging"/>), matched by the keys of the last double block, one plan per sample and forward.
    /// Why those blocks: they hold most of the work (20 of klein 4B's 25 blocks), their one stream means merging image rows
    /// leaves the text untouched, and the double blocks before them run at full resolution, so the image is embedded and
    /// has met the text before any token is merged; the last of them gives the keys at no extra GEMM.
    /// </summary>
    public double? TokenMergeRatio { get; init; }
    private readonly Flux2DoubleBlock[] _double;
    private readonly Flux2SingleBlock[] _single;

    /// <param name="fusedQkv">The experiment switch <c>fused-qkv</c>: the double blocks' Q, K, V projections stacked at
    /// load into one GEMM per stream.</param>
    public Flux2Transformer(Flux2TransformerConfig config, WeightLoader load, QuantMode quant = QuantMode.None, bool fusedQkv = false)
    {
        // Unsupported values in the snapshot's config are bad data (exit 1), not a bad command line.
        if (config.PatchSize != 1)
            throw new ModelConfigException($"transformer/config.json: field 'patch_size' is {config.PatchSize}; only 1 is supported (FLUX.2 klein uses 1)");
        if (config.GuidanceEmbeds)
            throw new ModelConfigException("transformer/config.json: field 'guidance_embeds' is true (guidance-distilled FLUX.2 dev), which is not supported; klein has none (false)");
        Config = config;
        var dims = config;
        int d = dims.InnerDim;
        float eps = (float)dims.Eps;
        _timeLinear1 = new Linear(load, "time_guidance_embed.timestep_embedder.linear_1", dims.TimestepGuidanceChannels, d);
        _timeLinear2 = new Linear(load, "time_guidance_embed.timestep_embedder.linear_2", d, d);
        _modImg = new Linear(load, "double_stream_modulation_img.linear", d, 6 * d);
        _modTxt = new Linear(load, "double_stream_modulation_txt.linear", d, 6 * d);
        _modSingle = new Linear(load, "single_stream_modulation.linear", d, 3 * d);
        _normOut = new Linear(load, "norm_out.linear", d, 2 * d);
        _xEmbed = new Linear(load, "x_embedder", dims.InChannels, d, quant: quant);
        _ctxEmbed = new Linear(load, "context_embedder", dims.JointAttentionDim, d, quant: quant);
        _projOut = new Linear(load, "proj_out", d, dims.OutputChannels, quant: quant);
        _double = Enumerable.Range(0, dims.NumLayers)
            .Select(i => new Flux2DoubleBlock(load, $"transformer_blocks.{i}", d, dims.NumAttentionHeads, dims.AttentionHeadDim, dims.MlpHiddenDim, eps, quant, fusedQkv)).ToArray();
        _single = Enumerable.Range(0, dims.NumSingleLayers)
            .Select(i => new Flux2SingleBlock(load, $"single_transformer_blocks.{i}", d, dims.NumAttentionHeads, dims.AttentionHeadDim, dims.MlpHiddenDim, eps, quant)).ToArray();
    }

    public Flux2TransformerConfig Config { get; }

    /// <summary>
    /// RoPE tables for [text; image; references] positions (see <see cref="PositionIds"/>). Returns cos/sin [S, head_dim].
    /// </summary>
    public (float[] Cos, float[] Sin) RopeTables(int textLen, int latentH, int latentW, IReadOnlyList<ReferenceGrid>? references = null)
    {
        var ids = PositionIds(textLen, latentH, latentW, references);
        return PureFlux.Kernels.RopeTables.Flux2(ids, Config.AxesDimsRope, Config.RopeTheta);
    }

    /// <summary>
    /// Position ids [S_txt + S_img + S_ref, 4] in (t, h, w, l) order, text first: text (0,0,0,i), the generated image
    /// (0,h,w,0), then each reference image's grid with its own T (FLUX.2 uses 10, 20, … for references 0, 1, …).
    /// </summary>
    public static long[] PositionIds(int textLen, int latentH, int latentW, IReadOnlyList<ReferenceGrid>? references = null)
    {
        var grids = new List<ReferenceGrid> { new(0, latentH, latentW) };
        if (references is not null) grids.AddRange(references);
        int total = textLen + grids.Sum(g => g.Rows * g.Cols);
        var ids = new long[total * 4];
        for (int i = 0; i < textLen; i++) ids[i * 4 + 3] = i;
        int r = textLen;
        foreach (var g in grids)
            for (int h = 0; h < g.Rows; h++)
                for (int w = 0; w < g.Cols; w++, r++)
                {
                    ids[r * 4] = g.T;
                    ids[r * 4 + 1] = h;
                    ids[r * 4 + 2] = w;
                }
        return ids;
    }

    /// <summary>Batch-1 forward: hidden [S_img, in], text [S_txt, joint_dim], output [S_img, out].</summary>
    public void Forward(Tensor hidden, Tensor text, float timestep, Tensor cos, Tensor sin, Tensor output, Action<string, Tensor>? trace = null) =>
        Forward(hidden.Reshape(1, (int)hidden.Shape.Rows, Config.InChannels), text.Reshape(1, (int)text.Shape.Rows, Config.JointAttentionDim),
            [timestep], cos, sin, output.Reshape(1, (int)output.Shape.Rows, Config.OutputChannels), trace);

    /// <summary>
    /// One batched forward. hidden [B, S_img, in] (generated tokens first, then any reference tokens), text
    /// [B, S_txt, joint_dim], timesteps [B] = the pipeline's t/1000 per sample, cos/sin [S_txt + S_img, head_dim]
    /// (on the device, shared by the batch). Writes output [B, S_out, out_channels] for the first S_out ≤ S_img image
    /// tokens (reference tokens are attended to but their outputs are not computed). <paramref name="trace"/> is only
    /// called for B = 1 (the golden sets' intermediates are per sample).
    /// </summary>
    /// <paramref name="tokenGrid"/> is the generated image's token grid (rows · cols = S_out), which token merging needs.
    public void Forward(Tensor hidden, Tensor text, ReadOnlySpan<float> timesteps, Tensor cos, Tensor sin, Tensor output, Action<string, Tensor>? trace = null,
        (int Rows, int Cols)? tokenGrid = null)
    {
        const string op = nameof(Flux2Transformer);
        var dev = hidden.Device;
        int d = Config.InnerDim;
        Check.Rank(op, "hidden_states", hidden, 3);
        Check.Rank(op, "encoder_hidden_states", text, 3);
        Check.Rank(op, "output", output, 3);
        int batch = hidden.Shape[0], imgLen = hidden.Shape[1], textLen = text.Shape[1], s = imgLen + textLen, outLen = output.Shape[1];
        Check.LastDim(op, "hidden_states", hidden, Config.InChannels);
        Check.LastDim(op, "encoder_hidden_states", text, Config.JointAttentionDim);
        Check.That(text.Shape[0] == batch, op, $"encoder_hidden_states has shape {text.Shape}; expected batch {batch} like hidden_states {hidden.Shape}");
        Check.That(timesteps.Length == batch, op, $"{timesteps.Length} timesteps for a batch of {batch}");
        Check.Shape(op, "rope cos", cos, s, Config.AttentionHeadDim);
        Check.That(output.Shape[0] == batch && outLen <= imgLen && output.Shape[2] == Config.OutputChannels, op,
            $"output has shape {output.Shape}; expected [{batch}, ≤{imgLen}, {Config.OutputChannels}]");
        if (batch != 1) trace = null;
        (int Rows, int Cols) grid = default;
        if (TokenMergeRatio is not null)
        {
            grid = tokenGrid ?? throw new ArgumentException($"{op}: token merging needs the image token grid (rows, cols) of the {outLen} generated tokens");
            Check.That(grid.Rows * grid.Cols == outLen, op, $"token grid {grid.Rows}×{grid.Cols} does not hold the {outLen} generated image tokens");
            Check.That(_double.Length > 0, op, "token merging takes its keys from the last double-stream block; this model has none");
        }

        using var mod = Modulation(dev, timesteps, trace);

        using var x = Tensor.Empty(dev, DType.F32, batch, s, d);
        for (int b = 0; b < batch; b++)
        {
            var xb = x.Slice(b, 1).Reshape(s, d);
            _ctxEmbed.Forward(text.Slice(b, 1).Reshape(textLen, Config.JointAttentionDim), xb.Slice(0, textLen));
            _xEmbed.Forward(hidden.Slice(b, 1).Reshape(imgLen, Config.InChannels), xb.Slice(textLen, imgLen));
            trace?.Invoke("embed.context", xb.Slice(0, textLen));
            trace?.Invoke("embed.x", xb.Slice(textLen, imgLen));
        }

        // Double-stream blocks keep two weight sets for the text and image rows of each sample, so they run per
        // sample; the single-stream blocks (most of the model) take the whole batch in each GEMM.
        using var keys = TokenMergeRatio is null ? null : Tensor.Empty(dev, DType.F32, batch, outLen, d);
        for (int i = 0; i < _double.Length; i++)
        {
            int block = i;
            for (int b = 0; b < batch; b++)
                _double[i].Forward(x.Slice(b, 1).Reshape(s, d), textLen, mod.Sample(b), cos, sin, trace is null ? null : (n, t) => trace($"double.{block}.{n}", t),
                    i == _double.Length - 1 ? keys?.Slice(b, 1).Reshape(outLen, d) : null);
            if (SyncPerBlock) x.Device.Synchronize();
        }
        if (keys is null)
            for (int i = 0; i < _single.Length; i++)
            {
                int block = i;
                _single[i].Forward(x, mod, cos, sin, trace is null ? null : (n, t) => trace($"single.{block}.{n}", t));
                if (SyncPerBlock) x.Device.Synchronize();
                trace?.Invoke($"single.{block}", x.Reshape(s, d));
            }
        else
            // Token merging: each sample has its own plan (its own keys), so the single blocks run per sample.
            for (int b = 0; b < batch; b++)
            {
                using var plan = TokenMerging.Plan(keys.Slice(b, 1).Reshape(outLen, d), grid.Rows, grid.Cols, TokenMergeRatio!.Value, textLen, s, cos, sin);
                var xb = x.Slice(b, 1);
                var mb = mod.Sample(b);
                for (int i = 0; i < _single.Length; i++)
                {
                    int block = i;
                    _single[i].Forward(xb, mb, cos, sin, trace is null ? null : (n, t) => trace($"single.{block}.{n}", t), plan);
                    if (SyncPerBlock) x.Device.Synchronize();
                    trace?.Invoke($"single.{block}", x.Reshape(s, d));
                }
            }

        using var norm = Tensor.Empty(dev, DType.F32, batch, outLen, d);
        for (int b = 0; b < batch; b++)
        {
            var img = x.Slice(b, 1).Reshape(s, d).Slice(textLen, outLen);
            var m = mod.Sample(b).Final;
            // norm_out's linear gives (scale, shift) — the reverse of the blocks' (shift, scale).
            LayerNormModulate.Forward(img, Flux2Modulation.Row(m, 1), Flux2Modulation.Row(m, 0), norm.Slice(b, 1).Reshape(outLen, d), (float)Config.Eps);
        }
        trace?.Invoke("norm_out", norm.Reshape(outLen, d));
        _projOut.Forward(norm.Reshape(batch * outLen, d), output.Reshape(batch * outLen, Config.OutputChannels));
        trace?.Invoke("output", output.Reshape(outLen, Config.OutputChannels));
    }

    /// <summary>Modulation vectors for every sample: [B, 6, D] (double img/txt), [B, 3, D] (single), [B, 2, D] (final).</summary>
    private Flux2Modulation Modulation(Device dev, ReadOnlySpan<float> timesteps, Action<string, Tensor>? trace)
    {
        int d = Config.InnerDim, batch = timesteps.Length;
        // The model scales t/1000 back by 1000 in float32, as diffusers does.
        var t = new float[batch];
        for (int b = 0; b < batch; b++) t[b] = timesteps[b] * 1000f;
        using var tIn = Tensor.FromSpan<float>(dev, t, new Shape(batch));
        using var proj = Tensor.Empty(dev, DType.F32, batch, Config.TimestepGuidanceChannels);
        TimestepEmbedding.Forward(tIn, proj);
        trace?.Invoke("temb.time_proj", proj);
        using var h = _timeLinear1.Forward(proj);
        trace?.Invoke("temb.linear_1", h);
        Silu.Forward(h, h);
        using var temb = _timeLinear2.Forward(h);
        trace?.Invoke("temb.out", temb);
        Silu.Forward(temb, temb);
        var mod = new Flux2Modulation
        {
            DoubleImg = Tensor.Empty(dev, DType.F32, batch, 6, d),
            DoubleTxt = Tensor.Empty(dev, DType.F32, batch, 6, d),
            Single = Tensor.Empty(dev, DType.F32, batch, 3, d),
            Final = Tensor.Empty(dev, DType.F32, batch, 2, d),
        };
        _modImg.Forward(temb, mod.DoubleImg.Reshape(batch, 6 * d));
        _modTxt.Forward(temb, mod.DoubleTxt.Reshape(batch, 6 * d));
        _modSingle.Forward(temb, mod.Single.Reshape(batch, 3 * d));
        _normOut.Forward(temb, mod.Final.Reshape(batch, 2 * d));
        trace?.Invoke("mod.double_img", mod.DoubleImg.Reshape(6, d));
        trace?.Invoke("mod.double_txt", mod.DoubleTxt.Reshape(6, d));
        trace?.Invoke("mod.single", mod.Single.Reshape(3, d));
        return mod;
    }

    public void Dispose()
    {
        foreach (var l in new[] { _timeLinear1, _timeLinear2, _modImg, _modTxt, _modSingle, _normOut, _xEmbed, _ctxEmbed, _projOut }) l.Dispose();
        foreach (var b in _double) b.Dispose();
        foreach (var b in _single) b.Dispose();
    }
}
