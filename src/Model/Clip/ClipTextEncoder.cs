using PureFlux.Model.Config;
using PureFlux.Model.Layers;

namespace PureFlux.Model.Clip;

/// <summary>
/// The CLIP text transformer (transformers CLIPTextModel; FLUX.1's text_encoder, CLIP-L) as the FLUX.1 pipelines
/// run it: token + learned position embedding → pre-LN layers (<c>x += out_proj(attn(LN1(x)))</c> with causal
/// attention scaled 1/√head_dim, then <c>x += fc2(quick_gelu(fc1(LN2(x))))</c>) → final LayerNorm. FLUX reads only the
/// pooled vector: the final hidden state at the first EOS (<see cref="ClipTextConfig.EosTokenId"/>). No padding mask:
/// the pipelines pass only the ids, so every position is computed and none sees a later one.
/// </summary>
public sealed class ClipTextEncoder : IDisposable
{
    private const string Prefix = "text_model.";

    private readonly ClipTextConfig _c;
    private readonly Tensor _tokenEmbedding, _positionEmbedding, _finalNormWeight, _finalNormBias;
    private readonly Layer[] _layers;

    public ClipTextEncoder(ClipTextConfig config, WeightLoader load, QuantMode quant = QuantMode.None)
    {
        _c = config;
        var owned = new List<IDisposable>();
        try
        {
            _tokenEmbedding = Keep(load(Prefix + "embeddings.token_embedding.weight", config.VocabSize, config.HiddenSize));
            _positionEmbedding = Keep(load(Prefix + "embeddings.position_embedding.weight", config.MaxPositionEmbeddings, config.HiddenSize));
            _layers = new Layer[config.NumHiddenLayers];
            for (int i = 0; i < _layers.Length; i++) _layers[i] = Keep(new Layer(load, $"{Prefix}encoder.layers.{i}", config, quant));
            _finalNormWeight = Keep(load(Prefix + "final_layer_norm.weight", config.HiddenSize));
            _finalNormBias = Keep(load(Prefix + "final_layer_norm.bias", config.HiddenSize));
        }
        catch
        {
            foreach (var d in owned) d.Dispose();
            throw;
        }

        T Keep<T>(T d) where T : IDisposable
        {
            owned.Add(d);
            return d;
        }
    }

    public int HiddenSize => _c.HiddenSize;

    /// <summary>
    /// The position the pooled vector is read at (transformers CLIPTextTransformer): with the legacy eos_token_id 2 the
    /// first occurrence of the highest id (the first &lt;|endoftext|&gt; with CLIP's vocabulary); otherwise the first
    /// occurrence of eos_token_id, or 0 when there is none (argmax of an all-false row).
    /// </summary>
    public static int PooledIndex(ClipTextConfig config, ReadOnlySpan<int> ids)
    {
        if (config.EosTokenId == ClipTextConfig.LegacyEosTokenId)
        {
            int best = 0;
            for (int i = 1; i < ids.Length; i++) if (ids[i] > ids[best]) best = i;
            return best;
        }
        int at = ids.IndexOf(config.EosTokenId);
        return at < 0 ? 0 : at;
    }

    /// <summary>
    /// ids [S] (S ≤ max_position_embeddings; FLUX: 77) → last_hidden_state [S, hidden] and the pooled vector [hidden]
    /// (F32, on <paramref name="dev"/>; the caller disposes the result). Trace names follow the golden set:
    /// embeddings.token, embeddings, layer.0.* internals, layer.{i}.out, final_layer_norm, last_hidden_state,
    /// pooled_output.
    /// </summary>
    public ClipTextOutput Encode(Device dev, int[] ids, Action<string, Tensor>? trace = null)
    {
        int s = ids.Length;
        if (s == 0 || s > _c.MaxPositionEmbeddings)
            throw new ArgumentException($"CLIP text encoder: {s} tokens; expected 1 to max_position_embeddings = {_c.MaxPositionEmbeddings}", nameof(ids));
        foreach (int id in ids)
            if (id < 0 || id >= _c.VocabSize)
                throw new ModelConfigException($"text_encoder/config.json: token id {id} from the tokenizer is outside the encoder's vocabulary (vocab_size {_c.VocabSize}): tokenizer and text encoder do not match");

        int d = _c.HiddenSize;
        var x = Tensor.Empty(dev, DType.F32, s, d);
        try
        {
            using (var idsT = Tensor.FromSpan<int>(dev, ids, new Shape(s)))
            using (var positionsT = Tensor.FromSpan<int>(dev, Enumerable.Range(0, s).ToArray(), new Shape(s)))
            using (var positions = Tensor.Empty(dev, DType.F32, s, d))
            {
                Embedding.Lookup(_tokenEmbedding, idsT, x);
                trace?.Invoke("embeddings.token", x);
                Embedding.Lookup(_positionEmbedding, positionsT, positions);
                Elementwise.Add(x, positions, x);
            }
            trace?.Invoke("embeddings", x);

            for (int i = 0; i < _layers.Length; i++)
            {
                _layers[i].Forward(x, i == 0 ? trace : null);
                trace?.Invoke($"layer.{i}.out", x);
            }
            LayerNorm.Forward(x, _finalNormWeight, _finalNormBias, x, (float)_c.LayerNormEps);
            trace?.Invoke("final_layer_norm", x);
            trace?.Invoke("last_hidden_state", x);

            int p = PooledIndex(_c, ids);
            var pooled = Tensor.Empty(dev, DType.F32, d);
            x.Slice(p, 1).CopyTo(pooled);
            trace?.Invoke("pooled_output", pooled);
            return new ClipTextOutput(x, pooled, p);
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var t in new[] { _tokenEmbedding, _positionEmbedding, _finalNormWeight, _finalNormBias }) t.Dispose();
        foreach (var l in _layers) l.Dispose();
    }

    private sealed class Layer : IDisposable
    {
        private readonly ClipTextConfig _c;
        private readonly Tensor _ln1Weight, _ln1Bias, _ln2Weight, _ln2Bias;
        private readonly Linear _q, _k, _v, _out, _fc1, _fc2;

        public Layer(WeightLoader load, string p, ClipTextConfig c, QuantMode quant)
        {
            _c = c;
            int d = c.HiddenSize;
            _ln1Weight = load(p + ".layer_norm1.weight", d);
            _ln1Bias = load(p + ".layer_norm1.bias", d);
            _q = new Linear(load, p + ".self_attn.q_proj", d, d, bias: true, quant: quant);
            _k = new Linear(load, p + ".self_attn.k_proj", d, d, bias: true, quant: quant);
            _v = new Linear(load, p + ".self_attn.v_proj", d, d, bias: true, quant: quant);
            _out = new Linear(load, p + ".self_attn.out_proj", d, d, bias: true, quant: quant);
            _ln2Weight = load(p + ".layer_norm2.weight", d);
            _ln2Bias = load(p + ".layer_norm2.bias", d);
            _fc1 = new Linear(load, p + ".mlp.fc1", d, c.IntermediateSize, bias: true, quant: quant);
            _fc2 = new Linear(load, p + ".mlp.fc2", c.IntermediateSize, d, bias: true, quant: quant);
        }

        /// <summary>x [S, hidden] updated in place.</summary>
        public void Forward(Tensor x, Action<string, Tensor>? trace)
        {
            var dev = x.Device;
            int s = x.Shape[0], d = _c.HiddenSize, heads = _c.NumAttentionHeads, hd = _c.HeadDim;
            float eps = (float)_c.LayerNormEps;
            using var h = Tensor.Empty(dev, DType.F32, s, d);
            LayerNorm.Forward(x, _ln1Weight, _ln1Bias, h, eps);
            trace?.Invoke("layer.0.layer_norm1", h);

            using (var q = Tensor.Empty(dev, DType.F32, s, heads, hd))
            using (var k = Tensor.Empty(dev, DType.F32, s, heads, hd))
            using (var v = Tensor.Empty(dev, DType.F32, s, heads, hd))
            using (var o = Tensor.Empty(dev, DType.F32, s, heads, hd))
            {
                _q.Forward(h, q.Reshape(s, d));
                _k.Forward(h, k.Reshape(s, d));
                _v.Forward(h, v.Reshape(s, d));
                trace?.Invoke("layer.0.attn.q_proj", q);
                trace?.Invoke("layer.0.attn.k_proj", k);
                trace?.Invoke("layer.0.attn.v_proj", v);
                Attention.Forward(q, k, v, o, new AttentionOptions { Causal = true }); // scale 1/√head_dim
                _out.Forward(o.Reshape(s, d), h);
            }
            trace?.Invoke("layer.0.attn.out", h);
            Elementwise.Add(x, h, x);

            LayerNorm.Forward(x, _ln2Weight, _ln2Bias, h, eps);
            trace?.Invoke("layer.0.layer_norm2", h);
            using (var mid = Tensor.Empty(dev, DType.F32, s, _c.IntermediateSize))
            {
                _fc1.Forward(h, mid);
                trace?.Invoke("layer.0.mlp.fc1", mid);
                QuickGelu.Forward(mid, mid);
                trace?.Invoke("layer.0.mlp.act", mid);
                _fc2.Forward(mid, h);
            }
            trace?.Invoke("layer.0.mlp", h);
            Elementwise.Add(x, h, x);
        }

        public void Dispose()
        {
            foreach (var t in new[] { _ln1Weight, _ln1Bias, _ln2Weight, _ln2Bias }) t.Dispose();
            foreach (var l in new[] { _q, _k, _v, _out, _fc1, _fc2 }) l.Dispose();
        }
    }
}

/// <summary>
/// CLIP's outputs: last_hidden_state [S, hidden] (after the final LayerNorm) and the pooled vector [hidden] read at
/// <see cref="PooledIndex"/> (FLUX.1's pooled_prompt_embeds). Disposing frees both.
/// </summary>
public sealed class ClipTextOutput(Tensor lastHiddenState, Tensor pooled, int pooledIndex) : IDisposable
{
    public Tensor LastHiddenState { get; } = lastHiddenState;
    public Tensor Pooled { get; } = pooled;
    public int PooledIndex { get; } = pooledIndex;

    public void Dispose()
    {
        LastHiddenState.Dispose();
        Pooled.Dispose();
    }
}
