using PureFlux.Model.Config;
using PureFlux.Model.Layers;

namespace PureFlux.Model.Qwen3;

/// <summary>
/// Qwen3 decoder layers as FLUX.2 klein uses them: embeddings → the first max(outLayers) decoder layers
/// (causal + key-padding attention, GQA, per-head QK RMSNorm, rotate-half RoPE) → the hidden states of
/// the chosen layers concatenated on channels: prompt_embeds [S, n·hidden]. Later layers are never run.
/// The same layers, configured by <see cref="Qwen3Config.QkNorm"/> and <see cref="Qwen3Config.QkvBias"/>, are the
/// Qwen2.5-VL language model (Qwen-Image: q/k/v biases, no QK-norm; its M-RoPE is plain RoPE for text positions).
/// With <c>finalNorm</c>, hidden state L (after the last layer) is the final RMSNorm's output, as transformers'
/// hidden_states[-1] is.
/// </summary>
public sealed class Qwen3TextEncoder : IDisposable
{
    private readonly Qwen3Config _dims;
    private readonly int[] _outLayers;
    private readonly Tensor _embed;
    private readonly Layer[] _layers;
    private readonly Tensor? _finalNorm;

    public Qwen3TextEncoder(Qwen3Config dims, WeightLoader load, int[] outLayers, QuantMode quant = QuantMode.None, bool finalNorm = false)
    {
        _dims = dims;
        _outLayers = outLayers;
        int needed = outLayers.Max();
        if (needed > dims.NumHiddenLayers)
            throw new ArgumentException($"text encoder: layer {needed} requested but the config has {dims.NumHiddenLayers} layers");
        _embed = load("model.embed_tokens.weight", dims.VocabSize, dims.HiddenSize);
        _layers = Enumerable.Range(0, needed).Select(i => new Layer(load, $"model.layers.{i}", dims, quant)).ToArray();
        if (finalNorm)
        {
            if (needed != dims.NumHiddenLayers)
                throw new ArgumentException($"text encoder: the final norm applies to hidden state {dims.NumHiddenLayers} (after the last layer); the deepest requested is {needed}");
            _finalNorm = load("model.norm.weight", dims.HiddenSize);
        }
    }

    public int OutputChannels => _outLayers.Length * _dims.HiddenSize;

    /// <summary>
    /// ids [S] (I32 values on the host), mask [S] (1 = real token) → prompt_embeds [S, n·hidden].
    /// hidden_states[0] is the embedding output; hidden_states[i] the output of layer i−1.
    /// </summary>
    public Tensor Encode(Device dev, int[] ids, byte[] attentionMask, Action<string, Tensor>? trace = null)
    {
        int s = ids.Length;
        if (attentionMask.Length != s) throw new ArgumentException($"text encoder: attention mask has {attentionMask.Length} entries for {s} tokens");
        foreach (var id in ids)
            if (id < 0 || id >= _dims.VocabSize)
                throw new ModelConfigException($"text_encoder/config.json: token id {id} from the tokenizer is outside the encoder's vocabulary (vocab_size {_dims.VocabSize}): tokenizer and text encoder do not match");

        var (cosH, sinH) = RopeTables.RotateHalf(s, _dims.HeadDim, _dims.RopeTheta);
        using var cos = Tensor.FromSpan<float>(dev, cosH, new Shape(s, _dims.HeadDim));
        using var sin = Tensor.FromSpan<float>(dev, sinH, new Shape(s, _dims.HeadDim));
        using var keyMask = Tensor.FromSpan<byte>(dev, attentionMask, new Shape(s), DType.U8);
        using var idsT = Tensor.FromSpan<int>(dev, ids, new Shape(s));

        var embeds = Tensor.Empty(dev, DType.F32, s, OutputChannels);
        using var x = Tensor.Empty(dev, DType.F32, s, _dims.HiddenSize);
        Embedding.Lookup(_embed, idsT, x);
        trace?.Invoke("hidden_states.0", x);
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i].Forward(x, cos, sin, keyMask, i == 0 ? trace : null);
            trace?.Invoke($"layer.{i}.out", x);
            if (_finalNorm is not null && i == _layers.Length - 1)
            {
                RmsNorm.Forward(x, _finalNorm, x, (float)_dims.RmsNormEps);
                trace?.Invoke("final_norm", x);
            }
            trace?.Invoke($"hidden_states.{i + 1}", x);
            int slot = Array.IndexOf(_outLayers, i + 1);
            if (slot >= 0) Elementwise.WriteColumns(x, embeds, slot * _dims.HiddenSize);
        }
        trace?.Invoke("prompt_embeds", embeds);
        return embeds;
    }

    public void Dispose()
    {
        _embed.Dispose();
        _finalNorm?.Dispose();
        foreach (var l in _layers) l.Dispose();
    }

    private sealed class Layer : IDisposable
    {
        private readonly Qwen3Config _d;
        private readonly Tensor _inNorm, _postNorm;
        private readonly Tensor? _qNorm, _kNorm;
        private readonly Linear _q, _k, _v, _o, _gate, _up, _down;

        public Layer(WeightLoader load, string p, Qwen3Config d, QuantMode quant)
        {
            _d = d;
            _inNorm = load(p + ".input_layernorm.weight", d.HiddenSize);
            _postNorm = load(p + ".post_attention_layernorm.weight", d.HiddenSize);
            if (d.QkNorm)
            {
                _qNorm = load(p + ".self_attn.q_norm.weight", d.HeadDim);
                _kNorm = load(p + ".self_attn.k_norm.weight", d.HeadDim);
            }
            _q = new Linear(load, p + ".self_attn.q_proj", d.HiddenSize, d.NumAttentionHeads * d.HeadDim, bias: d.QkvBias, quant: quant);
            _k = new Linear(load, p + ".self_attn.k_proj", d.HiddenSize, d.NumKeyValueHeads * d.HeadDim, bias: d.QkvBias, quant: quant);
            _v = new Linear(load, p + ".self_attn.v_proj", d.HiddenSize, d.NumKeyValueHeads * d.HeadDim, bias: d.QkvBias, quant: quant);
            _o = new Linear(load, p + ".self_attn.o_proj", d.NumAttentionHeads * d.HeadDim, d.HiddenSize, quant: quant);
            _gate = new Linear(load, p + ".mlp.gate_proj", d.HiddenSize, d.IntermediateSize, quant: quant);
            _up = new Linear(load, p + ".mlp.up_proj", d.HiddenSize, d.IntermediateSize, quant: quant);
            _down = new Linear(load, p + ".mlp.down_proj", d.IntermediateSize, d.HiddenSize, quant: quant);
        }

        /// <summary>x [S, hidden] updated in place: x += attn(norm(x)); x += mlp(norm(x)).</summary>
        public void Forward(Tensor x, Tensor cos, Tensor sin, Tensor keyMask, Action<string, Tensor>? trace)
        {
            var dev = x.Device;
            int s = x.Shape[0];
            using var h = Tensor.Empty(dev, DType.F32, s, _d.HiddenSize);
            RmsNorm.Forward(x, _inNorm, h, (float)_d.RmsNormEps);
            trace?.Invoke("layer.0.input_layernorm", h);

            using var q = Tensor.Empty(dev, DType.F32, s, _d.NumAttentionHeads, _d.HeadDim);
            using var k = Tensor.Empty(dev, DType.F32, s, _d.NumKeyValueHeads, _d.HeadDim);
            using var v = Tensor.Empty(dev, DType.F32, s, _d.NumKeyValueHeads, _d.HeadDim);
            _q.Forward(h, q.Reshape(s, _d.NumAttentionHeads * _d.HeadDim));
            _k.Forward(h, k.Reshape(s, _d.NumKeyValueHeads * _d.HeadDim));
            _v.Forward(h, v.Reshape(s, _d.NumKeyValueHeads * _d.HeadDim));
            trace?.Invoke("layer.0.attn.q_proj", q);
            trace?.Invoke("layer.0.attn.k_proj", k);
            trace?.Invoke("layer.0.attn.v_proj", v);
            if (_qNorm is not null)
            {
                RmsNorm.Forward(q, _qNorm, q, (float)_d.RmsNormEps);
                RmsNorm.Forward(k, _kNorm!, k, (float)_d.RmsNormEps);
                trace?.Invoke("layer.0.attn.q_norm", q);
                trace?.Invoke("layer.0.attn.k_norm", k);
            }
            Rope.ApplyRotateHalf(q, cos, sin, q);
            Rope.ApplyRotateHalf(k, cos, sin, k);
            trace?.Invoke("layer.0.attn.q_rope", q);
            trace?.Invoke("layer.0.attn.k_rope", k);

            using (var o = Tensor.Empty(dev, DType.F32, s, _d.NumAttentionHeads, _d.HeadDim))
            {
                Attention.Forward(q, k, v, o, new AttentionOptions { Causal = true, KeyMask = keyMask });
                _o.Forward(o.Reshape(s, _d.NumAttentionHeads * _d.HeadDim), h);
            }
            trace?.Invoke("layer.0.attn.o_proj", h);
            Elementwise.Add(x, h, x);

            RmsNorm.Forward(x, _postNorm, h, (float)_d.RmsNormEps);
            trace?.Invoke("layer.0.post_attention_layernorm", h);
            using var gate = Tensor.Empty(dev, DType.F32, s, _d.IntermediateSize);
            using var up = Tensor.Empty(dev, DType.F32, s, _d.IntermediateSize);
            _gate.Forward(h, gate);
            _up.Forward(h, up);
            SwiGlu.Forward(gate, up, gate);
            _down.Forward(gate, h);
            trace?.Invoke("layer.0.mlp", h);
            Elementwise.Add(x, h, x);
        }

        public void Dispose()
        {
            foreach (var t in new[] { _inNorm, _postNorm, _qNorm, _kNorm }) t?.Dispose();
            foreach (var l in new[] { _q, _k, _v, _o, _gate, _up, _down }) l.Dispose();
        }
    }
}
