using PureFlux.Model.Config;
using PureFlux.Model.Layers;

namespace PureFlux.Model.T5;

/// <summary>
/// The T5 v1.1 encoder (transformers T5EncoderModel; FLUX.1's text_encoder_2, T5-XXL) as the FLUX.1 pipelines run
/// it: token embedding (no scaling) → blocks → final norm = prompt_embeds. Each block is
/// <c>x += o(attn(norm(x)))</c> then <c>x += wo(gelu_new(wi_0(norm(x))) · wi_1(norm(x)))</c>, where norm is T5's
/// RMS-style LayerNorm (no mean subtraction, no bias) and gelu_new the tanh form. Attention logits are
/// <c>q·k + position_bias</c> with <b>no</b> 1/√d_kv scaling; the bias [heads, S, S] comes from block 0's
/// relative-position table and is shared by every block. No attention mask: FLUX passes only the ids, so padding
/// tokens are attended to (and change the real tokens' outputs).
/// </summary>
public sealed class T5Encoder : IDisposable
{
    /// <summary>The token embedding as T5EncoderModel saves it ("encoder.embed_tokens.weight" is tied to it).</summary>
    public const string EmbeddingWeight = "shared.weight";

    private const string RelativeBiasWeight = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";

    private readonly T5Config _c;
    private readonly Tensor _embed, _relativeBias, _finalNorm;
    private readonly Block[] _blocks;

    /// <param name="embeddingWeight">Name of the [vocab, d_model] token table (<see cref="EmbeddingWeight"/>; a checkpoint
    /// that kept only the tied copy names it "encoder.embed_tokens.weight").</param>
    public T5Encoder(T5Config config, WeightLoader load, QuantMode quant = QuantMode.None, string embeddingWeight = EmbeddingWeight)
    {
        _c = config;
        var owned = new List<IDisposable>();
        try
        {
            _embed = Keep(load(embeddingWeight, config.VocabSize, config.DModel));
            _relativeBias = Keep(load(RelativeBiasWeight, config.RelativeAttentionNumBuckets, config.NumHeads));
            _blocks = new Block[config.NumLayers];
            for (int i = 0; i < _blocks.Length; i++) _blocks[i] = Keep(new Block(load, $"encoder.block.{i}", config, quant));
            _finalNorm = Keep(load("encoder.final_layer_norm.weight", config.DModel));
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

    public int OutputChannels => _c.DModel;

    /// <summary>
    /// ids [S] (the tokenizer's row, padding included) → last_hidden_state [S, d_model] (F32, on <paramref name="dev"/>).
    /// Trace names follow the golden set: embed_tokens, position_bias [heads, S, S], block.0.* internals,
    /// block.{i}.out, final_layer_norm, last_hidden_state.
    /// </summary>
    public Tensor Encode(Device dev, int[] ids, Action<string, Tensor>? trace = null)
    {
        int s = ids.Length;
        if (s == 0) throw new ArgumentException("T5 encoder: no tokens to encode", nameof(ids));
        foreach (int id in ids)
            if (id < 0 || id >= _c.VocabSize)
                throw new ModelConfigException($"text_encoder_2/config.json: token id {id} from the tokenizer is outside the encoder's vocabulary (vocab_size {_c.VocabSize}): tokenizer and text encoder do not match");

        using var idsT = Tensor.FromSpan<int>(dev, ids, new Shape(s));
        var x = Tensor.Empty(dev, DType.F32, s, _c.DModel);
        try
        {
            Embedding.Lookup(_embed, idsT, x);
            trace?.Invoke("embed_tokens", x);

            // Block 0's table, expanded once for this length and reused by every block (transformers passes block 0's
            // position_bias on to the others).
            int[] buckets = T5RelativePosition.BucketsOfOffsets(s, s, _c.RelativeAttentionNumBuckets, _c.RelativeAttentionMaxDistance);
            using var bucketsT = Tensor.FromSpan<int>(dev, buckets, new Shape(buckets.Length));
            using var positionBias = Tensor.Empty(dev, DType.F32, _c.NumHeads, s, s);
            RelativePositionBias.Forward(_relativeBias, bucketsT, positionBias);
            trace?.Invoke("position_bias", positionBias);

            for (int i = 0; i < _blocks.Length; i++)
            {
                _blocks[i].Forward(x, positionBias, i == 0 ? trace : null);
                trace?.Invoke($"block.{i}.out", x);
            }
            RmsNorm.Forward(x, _finalNorm, x, (float)_c.LayerNormEpsilon);
            trace?.Invoke("final_layer_norm", x);
            trace?.Invoke("last_hidden_state", x);
            return x;
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        _embed.Dispose();
        _relativeBias.Dispose();
        _finalNorm.Dispose();
        foreach (var b in _blocks) b.Dispose();
    }

    private sealed class Block : IDisposable
    {
        private readonly T5Config _c;
        private readonly Tensor _attnNorm, _ffNorm;
        private readonly Linear _q, _k, _v, _o, _wi0, _wi1, _wo;

        public Block(WeightLoader load, string p, T5Config c, QuantMode quant)
        {
            _c = c;
            string attn = p + ".layer.0.SelfAttention", ff = p + ".layer.1.DenseReluDense";
            _attnNorm = load(p + ".layer.0.layer_norm.weight", c.DModel);
            _q = new Linear(load, attn + ".q", c.DModel, c.InnerDim, quant: quant);
            _k = new Linear(load, attn + ".k", c.DModel, c.InnerDim, quant: quant);
            _v = new Linear(load, attn + ".v", c.DModel, c.InnerDim, quant: quant);
            _o = new Linear(load, attn + ".o", c.InnerDim, c.DModel, quant: quant);
            _ffNorm = load(p + ".layer.1.layer_norm.weight", c.DModel);
            _wi0 = new Linear(load, ff + ".wi_0", c.DModel, c.DFf, quant: quant);
            _wi1 = new Linear(load, ff + ".wi_1", c.DModel, c.DFf, quant: quant);
            _wo = new Linear(load, ff + ".wo", c.DFf, c.DModel, quant: quant);
        }

        /// <summary>x [S, d_model] updated in place; positionBias [heads, S, S].</summary>
        public void Forward(Tensor x, Tensor positionBias, Action<string, Tensor>? trace)
        {
            var dev = x.Device;
            int s = x.Shape[0], heads = _c.NumHeads, dkv = _c.DKv;
            float eps = (float)_c.LayerNormEpsilon;
            using var h = Tensor.Empty(dev, DType.F32, s, _c.DModel);
            RmsNorm.Forward(x, _attnNorm, h, eps);
            trace?.Invoke("block.0.attn.layer_norm", h);

            using (var q = Tensor.Empty(dev, DType.F32, s, heads, dkv))
            using (var k = Tensor.Empty(dev, DType.F32, s, heads, dkv))
            using (var v = Tensor.Empty(dev, DType.F32, s, heads, dkv))
            using (var o = Tensor.Empty(dev, DType.F32, s, heads, dkv))
            {
                _q.Forward(h, q.Reshape(s, heads * dkv));
                _k.Forward(h, k.Reshape(s, heads * dkv));
                _v.Forward(h, v.Reshape(s, heads * dkv));
                trace?.Invoke("block.0.attn.q", q);
                trace?.Invoke("block.0.attn.k", k);
                trace?.Invoke("block.0.attn.v", v);
                // T5 folds the 1/√d_kv into its initialisation: the logits are unscaled.
                Attention.Forward(q, k, v, o, new AttentionOptions { Scale = 1f, Bias = positionBias });
                _o.Forward(o.Reshape(s, heads * dkv), h);
            }
            trace?.Invoke("block.0.attn.o", h);
            Elementwise.Add(x, h, x);
            trace?.Invoke("block.0.attn.residual_out", x);

            RmsNorm.Forward(x, _ffNorm, h, eps);
            trace?.Invoke("block.0.ff.layer_norm", h);
            using (var gate = Tensor.Empty(dev, DType.F32, s, _c.DFf))
            using (var up = Tensor.Empty(dev, DType.F32, s, _c.DFf))
            {
                _wi0.Forward(h, gate);
                trace?.Invoke("block.0.ff.wi_0", gate);
                Gelu.Forward(gate, gate, GeluApproximation.Tanh); // gelu_new: the same tanh formula
                trace?.Invoke("block.0.ff.act", gate);
                _wi1.Forward(h, up);
                trace?.Invoke("block.0.ff.wi_1", up);
                Elementwise.Multiply(gate, up, gate);
                _wo.Forward(gate, h);
            }
            trace?.Invoke("block.0.ff.wo", h);
            Elementwise.Add(x, h, x);
        }

        public void Dispose()
        {
            _attnNorm.Dispose();
            _ffNorm.Dispose();
            foreach (var l in new[] { _q, _k, _v, _o, _wi0, _wi1, _wo }) l.Dispose();
        }
    }
}
