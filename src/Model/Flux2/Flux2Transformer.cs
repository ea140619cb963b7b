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
    private readonly Flux2DoubleBlock[] _double;
    private readonly Flux2SingleBlock[] _single;

    public Flux2Transformer(Flux2TransformerConfig config, WeightLoader load, QuantMode quant = QuantMode.None)
    {
        if (config.PatchSize != 1) throw new ArgumentException($"transformer config: patch_size {config.PatchSize} is not supported (FLUX.2 klein uses 1)");
        if (config.GuidanceEmbeds) throw new ArgumentException("transformer config: guidance_embeds = true (guidance-distilled FLUX.2 dev) is not supported; klein has none");
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
            .Select(i => new Flux2DoubleBlock(load, $"transformer_blocks.{i}", d, dims.NumAttentionHeads, dims.AttentionHeadDim, dims.MlpHiddenDim, eps, quant)).ToArray();
        _single = Enumerable.Range(0, dims.NumSingleLayers)
            .Select(i => new Flux2SingleBlock(load, $"single_transformer_blocks.{i}", d, dims.NumAttentionHeads, dims.AttentionHeadDim, dims.MlpHiddenDim, eps, quant)).ToArray();
    }

    public Flux2TransformerConfig Config { get; }

    /// <summary>
    /// RoPE tables for [text; image] positions: text ids (0,0,0,i), image ids (0,h,w,0). Returns cos/sin [S, head_dim].
    /// </summary>
    public (float[] Cos, float[] Sin) RopeTables(int textLen, int latentH, int latentW)
    {
        var ids = PositionIds(textLen, latentH, latentW);
        return PureFlux.Kernels.RopeTables.Flux2(ids, Config.AxesDimsRope, Config.RopeTheta);
    }

    /// <summary>Position ids [S_txt + S_img, 4] in (t, h, w, l) order, text first.</summary>
    public static long[] PositionIds(int textLen, int latentH, int latentW)
    {
        var ids = new long[(textLen + latentH * latentW) * 4];
        for (int i = 0; i < textLen; i++) ids[i * 4 + 3] = i;
        for (int h = 0; h < latentH; h++)
            for (int w = 0; w < latentW; w++)
            {
                int r = textLen + h * latentW + w;
                ids[r * 4 + 1] = h;
                ids[r * 4 + 2] = w;
            }
        return ids;
    }

    /// <summary>
    /// One forward. hidden [S_img, in_channels], text [S_txt, joint_dim], timestep = the pipeline's t/1000,
    /// cos/sin [S_txt + S_img, head_dim] (on the device). Writes output [S_img, out_channels].
    /// </summary>
    public void Forward(Tensor hidden, Tensor text, float timestep, Tensor cos, Tensor sin, Tensor output, Action<string, Tensor>? trace = null)
    {
        const string op = nameof(Flux2Transformer);
        var dev = hidden.Device;
        int d = Config.InnerDim;
        int imgLen = (int)hidden.Shape.Rows, textLen = (int)text.Shape.Rows, s = imgLen + textLen;
        Check.LastDim(op, "hidden_states", hidden, Config.InChannels);
        Check.LastDim(op, "encoder_hidden_states", text, Config.JointAttentionDim);
        Check.Shape(op, "rope cos", cos, s, Config.AttentionHeadDim);
        Check.Shape(op, "output", output, imgLen, Config.OutputChannels);

        using var mod = Modulation(dev, timestep, trace);

        using var x = Tensor.Empty(dev, DType.F32, s, d);
        _ctxEmbed.Forward(text.Reshape(textLen, Config.JointAttentionDim), x.Slice(0, textLen));
        _xEmbed.Forward(hidden.Reshape(imgLen, Config.InChannels), x.Slice(textLen, imgLen));
        trace?.Invoke("embed.context", x.Slice(0, textLen));
        trace?.Invoke("embed.x", x.Slice(textLen, imgLen));

        for (int i = 0; i < _double.Length; i++)
        {
            int block = i;
            _double[i].Forward(x, textLen, mod, cos, sin, trace is null ? null : (n, t) => trace($"double.{block}.{n}", t));
        }
        for (int i = 0; i < _single.Length; i++)
        {
            int block = i;
            _single[i].Forward(x, mod, cos, sin, trace is null ? null : (n, t) => trace($"single.{block}.{n}", t));
            trace?.Invoke($"single.{block}", x);
        }

        var img = x.Slice(textLen, imgLen);
        using var norm = Tensor.Empty(dev, DType.F32, imgLen, d);
        // norm_out's linear gives (scale, shift) — the reverse of the blocks' (shift, scale).
        LayerNormModulate.Forward(img, Flux2Modulation.Row(mod.Final, 1), Flux2Modulation.Row(mod.Final, 0), norm, (float)Config.Eps);
        trace?.Invoke("norm_out", norm);
        _projOut.Forward(norm, output.Reshape(imgLen, Config.OutputChannels));
        trace?.Invoke("output", output);
    }

    private Flux2Modulation Modulation(Device dev, float timestep, Action<string, Tensor>? trace)
    {
        int d = Config.InnerDim;
        // The model scales t/1000 back by 1000 in float32, as diffusers does.
        float t = timestep * 1000f;
        using var tIn = Tensor.FromSpan<float>(dev, [t], new Shape(1));
        using var proj = Tensor.Empty(dev, DType.F32, 1, Config.TimestepGuidanceChannels);
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
            DoubleImg = Tensor.Empty(dev, DType.F32, 6, d),
            DoubleTxt = Tensor.Empty(dev, DType.F32, 6, d),
            Single = Tensor.Empty(dev, DType.F32, 3, d),
            Final = Tensor.Empty(dev, DType.F32, 2, d),
        };
        _modImg.Forward(temb, mod.DoubleImg.Reshape(1, 6 * d));
        _modTxt.Forward(temb, mod.DoubleTxt.Reshape(1, 6 * d));
        _modSingle.Forward(temb, mod.Single.Reshape(1, 3 * d));
        _normOut.Forward(temb, mod.Final.Reshape(1, 2 * d));
        trace?.Invoke("mod.double_img", mod.DoubleImg);
        trace?.Invoke("mod.double_txt", mod.DoubleTxt);
        trace?.Invoke("mod.single", mod.Single);
        return mod;
    }

    public void Dispose()
    {
        foreach (var l in new[] { _timeLinear1, _timeLinear2, _modImg, _modTxt, _modSingle, _normOut, _xEmbed, _ctxEmbed, _projOut }) l.Dispose();
        foreach (var b in _double) b.Dispose();
        foreach (var b in _single) b.Dispose();
    }
}
