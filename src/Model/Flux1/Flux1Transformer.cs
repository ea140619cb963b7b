using PureFlux.Model.Layers;

namespace PureFlux.Model.Flux1;

/// <summary>
/// FluxTransformer2DModel (FLUX.1 dev / schnell / Kontext): conditioning temb = timestep_embedder(sin(1000·t))
/// [+ guidance_embedder(sin(1000·g))] + text_embedder(pooled CLIP) → x/context embedders → double-stream blocks →
/// single-stream blocks → norm_out (LayerNorm · (1 + scale) + shift, its linear giving (scale, shift)) → proj_out, on
/// packed image tokens [S_img, 64] with T5 text [S_txt, 4096]. The joint sequence is [text; image].
/// </summary>
public sealed class Flux1Transformer : IDisposable
{
    private readonly Linear _timeLinear1, _timeLinear2, _textLinear1, _textLinear2, _xEmbed, _ctxEmbed, _normOut, _projOut;
    private readonly Linear? _guidanceLinear1, _guidanceLinear2;
    private readonly Flux1DoubleBlock[] _double;
    private readonly Flux1SingleBlock[] _single;

    public Flux1Transformer(Flux1TransformerConfig config, WeightLoader load, QuantMode quant = QuantMode.None)
    {
        Config = config;
        int d = config.InnerDim, tp = Flux1TransformerConfig.TimeProjChannels;
        const string e = "time_text_embed.";
        var owned = new List<IDisposable>();
        try
        {
            _timeLinear1 = Keep(new Linear(load, e + "timestep_embedder.linear_1", tp, d, bias: true));
            _timeLinear2 = Keep(new Linear(load, e + "timestep_embedder.linear_2", d, d, bias: true));
            if (config.GuidanceEmbeds)
            {
                _guidanceLinear1 = Keep(new Linear(load, e + "guidance_embedder.linear_1", tp, d, bias: true));
                _guidanceLinear2 = Keep(new Linear(load, e + "guidance_embedder.linear_2", d, d, bias: true));
            }
            _textLinear1 = Keep(new Linear(load, e + "text_embedder.linear_1", config.PooledProjectionDim, d, bias: true));
            _textLinear2 = Keep(new Linear(load, e + "text_embedder.linear_2", d, d, bias: true));
            _xEmbed = Keep(new Linear(load, "x_embedder", config.InChannels, d, bias: true, quant: quant));
            _ctxEmbed = Keep(new Linear(load, "context_embedder", config.JointAttentionDim, d, bias: true, quant: quant));
            _double = new Flux1DoubleBlock[config.NumLayers];
            for (int i = 0; i < _double.Length; i++)
                _double[i] = Keep(new Flux1DoubleBlock(load, $"transformer_blocks.{i}", d, config.NumAttentionHeads, config.AttentionHeadDim, config.MlpHiddenDim, quant));
            _single = new Flux1SingleBlock[config.NumSingleLayers];
            for (int i = 0; i < _single.Length; i++)
                _single[i] = Keep(new Flux1SingleBlock(load, $"single_transformer_blocks.{i}", d, config.NumAttentionHeads, config.AttentionHeadDim, config.MlpHiddenDim, quant));
            _normOut = Keep(new Linear(load, "norm_out.linear", d, 2 * d, bias: true));
            _projOut = Keep(new Linear(load, "proj_out", d, config.OutputChannels, bias: true, quant: quant));
        }
        catch
        {
            foreach (var o in owned) o.Dispose();
            throw;
        }

        T Keep<T>(T item) where T : IDisposable
        {
            owned.Add(item);
            return item;
        }
    }

    public Flux1TransformerConfig Config { get; }

    /// <summary>
    /// Position ids [S_txt + rows·cols + refRows·refCols, 3] as the FLUX.1 pipelines make them, text first: text rows
    /// (0, 0, 0); the generated grid (0, row, col); a Kontext reference grid (1, row, col), rows and cols from 0.
    /// </summary>
    public static long[] PositionIds(int textLen, int rows, int cols, int refRows = 0, int refCols = 0)
    {
        int total = textLen + rows * cols + refRows * refCols;
        var ids = new long[total * 3];
        int r = textLen;
        void Grid(int t, int gr, int gc)
        {
            for (int h = 0; h < gr; h++)
                for (int w = 0; w < gc; w++, r++)
                {
                    ids[r * 3] = t;
                    ids[r * 3 + 1] = h;
                    ids[r * 3 + 2] = w;
                }
        }
        Grid(0, rows, cols);
        Grid(1, refRows, refCols);
        return ids;
    }

    /// <summary>RoPE tables cos, sin [S, head_dim] for <see cref="PositionIds"/> (3 axes, θ = 10⁴, frequencies in float64).</summary>
    public (float[] Cos, float[] Sin) RopeTables(int textLen, int rows, int cols, int refRows = 0, int refCols = 0) =>
        PureFlux.Kernels.RopeTables.Flux2(PositionIds(textLen, rows, cols, refRows, refCols), Config.AxesDimsRope, Flux1TransformerConfig.RopeTheta);

    /// <summary>
    /// One batched forward. hidden [B, S_img, in] (generated tokens first, then any Kontext reference tokens), text
    /// [B, S_txt, joint_dim], pooled [B, pooled_dim], timesteps [B] = the pipeline's t/1000, guidance [B] = the
    /// pipeline's guidance_scale (dev / Kontext; empty for schnell), cos/sin [S_txt + S_img, head_dim]. Writes output
    /// [B, S_out, out_channels] for the first S_out ≤ S_img image tokens. <paramref name="trace"/> is only called for B = 1.
    /// </summary>
    /// <summary>
    /// Weight streaming for weights larger than memory: before a block runs, <c>Starting(prefix, nextPrefix)</c> (the model
    /// prefetches the next block, <see cref="Snapshot.WeightSource.Prefetch"/>); after it ran for the whole batch,
    /// <c>Done(prefix)</c> (the model drops its pages, <see cref="Snapshot.WeightSource.DropResident"/>). Prefixes are the
    /// blocks' weight names with a trailing dot ("transformer_blocks.3.").
    /// </summary>
    public (Action<string, string?> Starting, Action<string> Done)? Streaming { get; set; }
    /// <summary>Wait for the device after every block (the experiment switch <c>sync-per-block</c>; ModelOptions.SyncPerBlock).</summary>
    public bool SyncPerBlock { get; set; }
    /// <summary>The experiment switch <c>tome RATIO</c> (null = off): as FLUX.2 klein's (<see cref="Flux2.Flux2Transformer.TokenMergeRatio"/>),
    /// the single-stream blocks' branch runs on the joint sequence with ⌊ratio · N⌋ generated image tokens merged, matched by
    /// the keys of the last double block; one plan per sample and forward. FLUX.1 has 19 double and 38 single blocks, so
    /// two thirds of the blocks merge.</summary>
    public double? TokenMergeRatio { get; init; }

    private string BlockPrefix(int i) => i < _double.Length ? $"transformer_blocks.{i}." : $"single_transformer_blocks.{i - _double.Length}.";
    // After the last block comes the first one of the next model call.
    private string NextBlockPrefix(int i) => BlockPrefix((i + 1) % (_double.Length + _single.Length));

    public void Forward(Tensor hidden, Tensor text, Tensor pooled, ReadOnlySpan<float> timesteps, ReadOnlySpan<float> guidance,
        Tensor cos, Tensor sin, Tensor output, Action<string, Tensor>? trace = null, (int Rows, int Cols)? tokenGrid = null)
    {
        const string op = nameof(Flux1Transformer);
        var dev = hidden.Device;
        int d = Config.InnerDim;
        Check.Rank(op, "hidden_states", hidden, 3);
        Check.Rank(op, "encoder_hidden_states", text, 3);
        Check.Rank(op, "pooled_projections", pooled, 2);
        Check.Rank(op, "output", output, 3);
        int batch = hidden.Shape[0], imgLen = hidden.Shape[1], textLen = text.Shape[1], s = imgLen + textLen, outLen = output.Shape[1];
        Check.LastDim(op, "hidden_states", hidden, Config.InChannels);
        Check.LastDim(op, "encoder_hidden_states", text, Config.JointAttentionDim);
        Check.LastDim(op, "pooled_projections", pooled, Config.PooledProjectionDim);
        Check.That(text.Shape[0] == batch && pooled.Shape[0] == batch, op,
            $"encoder_hidden_states {text.Shape} and pooled_projections {pooled.Shape} must have batch {batch} like hidden_states {hidden.Shape}");
        Check.That(timesteps.Length == batch, op, $"{timesteps.Length} timesteps for a batch of {batch}");
        Check.That(Config.GuidanceEmbeds ? guidance.Length == batch : guidance.Length == 0, op,
            Config.GuidanceEmbeds ? $"{guidance.Length} guidance values for a batch of {batch} (this transformer embeds guidance)"
                                  : "guidance given, but this transformer has no guidance embedding (guidance_embeds false)");
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

        using var siluTemb = Conditioning(dev, pooled, timesteps, guidance, trace);

        using var x = Tensor.Empty(dev, DType.F32, batch, s, d);
        for (int b = 0; b < batch; b++)
        {
            var xb = x.Slice(b, 1).Reshape(s, d);
            _ctxEmbed.Forward(text.Slice(b, 1).Reshape(textLen, Config.JointAttentionDim), xb.Slice(0, textLen));
            _xEmbed.Forward(hidden.Slice(b, 1).Reshape(imgLen, Config.InChannels), xb.Slice(textLen, imgLen));
            trace?.Invoke("embed.context", xb.Slice(0, textLen));
            trace?.Invoke("embed.x", xb.Slice(textLen, imgLen));
        }

        // Double-stream blocks keep separate text / image weights, so they run per sample; single-stream blocks take
        // the whole batch in each GEMM. Streaming hears each block start and finish.
        using var keys = TokenMergeRatio is null ? null : Tensor.Empty(dev, DType.F32, batch, outLen, d);
        for (int i = 0; i < _double.Length; i++)
        {
            int block = i;
            Streaming?.Starting(BlockPrefix(i), NextBlockPrefix(i));
            var (mImg, mTxt) = _double[i].Modulation(siluTemb);
            using (mImg)
            using (mTxt)
            {
                if (trace is not null && i == 0)
                {
                    trace("double.0.mod_img", mImg.Reshape(1, 6 * d));
                    trace("double.0.mod_txt", mTxt.Reshape(1, 6 * d));
                }
                for (int b = 0; b < batch; b++)
                    _double[i].Forward(x.Slice(b, 1).Reshape(s, d), textLen, mImg.Slice(b, 1).Reshape(6, d), mTxt.Slice(b, 1).Reshape(6, d), cos, sin,
                        trace is null || block != 0 ? null : (n, t) => trace($"double.0.{n}", t),
                        i == _double.Length - 1 ? keys?.Slice(b, 1).Reshape(outLen, d) : null);
            }
            if (trace is not null)
            {
                trace($"double.{block}.txt", x.Reshape(s, d).Slice(0, textLen));
                trace($"double.{block}.img", x.Reshape(s, d).Slice(textLen, imgLen));
            }
            if (SyncPerBlock) x.Device.Synchronize();
            Streaming?.Done(BlockPrefix(i));
        }
        // Token merging: one plan per sample (its own keys), so the single blocks then run per sample.
        var plans = new TokenMergePlan?[keys is null ? 0 : batch];
        try
        {
            for (int b = 0; b < plans.Length; b++)
                plans[b] = TokenMerging.Plan(keys!.Slice(b, 1).Reshape(outLen, d), grid.Rows, grid.Cols, TokenMergeRatio!.Value, textLen, s, cos, sin);
            for (int i = 0; i < _single.Length; i++)
            {
                int block = i;
                Streaming?.Starting(BlockPrefix(_double.Length + i), NextBlockPrefix(_double.Length + i));
                var blockTrace = trace is null || block != 0 ? null : (Action<string, Tensor>)((n, t) => trace($"single.0.{n}", t));
                if (plans.Length == 0) _single[i].Forward(x, siluTemb, cos, sin, blockTrace);
                else
                    // Block-major even per sample, so a streamed block's weights are read once per forward.
                    for (int b = 0; b < batch; b++) _single[i].Forward(x.Slice(b, 1), siluTemb.Slice(b, 1), cos, sin, blockTrace, plans[b]);
                if (trace is not null)
                {
                    trace($"single.{block}.txt", x.Reshape(s, d).Slice(0, textLen));
                    trace($"single.{block}.img", x.Reshape(s, d).Slice(textLen, imgLen));
                }
                if (SyncPerBlock) x.Device.Synchronize();
                Streaming?.Done(BlockPrefix(_double.Length + i));
            }
        }
        finally
        {
            foreach (var p in plans) p?.Dispose();
        }

        using var mod = Tensor.Empty(dev, DType.F32, batch, 2, d);
        _normOut.Forward(siluTemb, mod.Reshape(batch, 2 * d));
        trace?.Invoke("norm_out.mod", mod.Reshape(1, 2 * d));
        using var norm = Tensor.Empty(dev, DType.F32, batch, outLen, d);
        for (int b = 0; b < batch; b++)
        {
            var img = x.Slice(b, 1).Reshape(s, d).Slice(textLen, outLen);
            var m = mod.Slice(b, 1).Reshape(2, d);
            // norm_out's linear gives (scale, shift) — the reverse of the blocks' (shift, scale).
            LayerNormModulate.Forward(img, ModulationRows.Row(m, 1), ModulationRows.Row(m, 0), norm.Slice(b, 1).Reshape(outLen, d), Flux1TransformerConfig.Eps);
        }
        trace?.Invoke("norm_out", norm.Reshape(outLen, d));
        _projOut.Forward(norm.Reshape(batch * outLen, d), output.Reshape(batch * outLen, Config.OutputChannels));
        trace?.Invoke("proj_out", output.Reshape(outLen, Config.OutputChannels));
        trace?.Invoke("output", output.Reshape(outLen, Config.OutputChannels));
    }

    /// <summary>silu(temb) [B, D]: what every modulation linear reads (diffusers applies SiLU inside each AdaLN).</summary>
    private Tensor Conditioning(Device dev, Tensor pooled, ReadOnlySpan<float> timesteps, ReadOnlySpan<float> guidance, Action<string, Tensor>? trace)
    {
        int batch = timesteps.Length;
        // The model scales t/1000 and the guidance scale by 1000 in float32, as diffusers does.
        Tensor Embed(ReadOnlySpan<float> values, Linear linear1, Linear linear2, string name)
        {
            var scaled = new float[batch];
            for (int b = 0; b < batch; b++) scaled[b] = values[b] * 1000f;
            using var tIn = Tensor.FromSpan<float>(dev, scaled, new Shape(batch));
            using var proj = Tensor.Empty(dev, DType.F32, batch, Flux1TransformerConfig.TimeProjChannels);
            TimestepEmbedding.Forward(tIn, proj);
            trace?.Invoke($"temb.time_proj.{name}", proj);
            using var h = linear1.Forward(proj);
            Silu.Forward(h, h);
            var emb = linear2.Forward(h);
            trace?.Invoke($"temb.{name}_embedder", emb);
            return emb;
        }

        var temb = Embed(timesteps, _timeLinear1, _timeLinear2, "timestep");
        try
        {
            if (_guidanceLinear1 is not null)
                using (var g = Embed(guidance, _guidanceLinear1, _guidanceLinear2!, "guidance"))
                    Elementwise.Add(temb, g, temb);
            using (var h = _textLinear1.Forward(pooled))
            {
                Silu.Forward(h, h);
                using var p = _textLinear2.Forward(h);
                trace?.Invoke("temb.text_embedder", p);
                Elementwise.Add(temb, p, temb);
            }
            trace?.Invoke("temb.out", temb);
            Silu.Forward(temb, temb);
            return temb;
        }
        catch
        {
            temb.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var l in new[] { _timeLinear1, _timeLinear2, _textLinear1, _textLinear2, _xEmbed, _ctxEmbed, _normOut, _projOut, _guidanceLinear1, _guidanceLinear2 }) l?.Dispose();
        foreach (var b in _double) b.Dispose();
        foreach (var b in _single) b.Dispose();
    }
}
