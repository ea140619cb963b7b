namespace PureFlux.Model.Layers;

/// <summary>
/// The attention core the FLUX.1 and FLUX.2 transformers share (diffusers FluxAttnProcessor / Flux2AttnProcessor after
/// the projections): per-head RMSNorm of q and k — text rows with the added-stream weights, image rows with the image
/// ones — then interleaved RoPE on q and k, then softmax attention scaled 1/√head_dim. The joint sequence has the text
/// rows first.
/// </summary>
public static class JointAttention
{
    /// <summary>Per-head RMSNorm weights [head_dim] of one stream (norm_q, norm_k or norm_added_q, norm_added_k).</summary>
    public readonly record struct QkNorm(Tensor Q, Tensor K);

    /// <summary>
    /// q, k, v [S, H, Dh] or [B, S, H, Dh] (S = textLen + image rows), normalised and rotated in place; writes the
    /// attention output to o (same shape). <paramref name="text"/> normalises rows 0..textLen−1 (null when textLen is 0,
    /// e.g. a single-stream block that normalises every row with <paramref name="image"/>). cos/sin [S, Dh].
    /// Trace names: attn.q_normed, attn.k_normed (after the norm), attn.q_rope, attn.k_rope, attn.sdpa_out.
    /// </summary>
    public static void Forward(Tensor q, Tensor k, Tensor v, int textLen, QkNorm? text, QkNorm image, Tensor cos, Tensor sin, Tensor o,
        float eps, Action<string, Tensor>? trace = null)
    {
        if (textLen > 0 && text is null) throw new ArgumentException("JointAttention: text rows need their own q/k norm weights");
        bool batched = q.Rank == 4;
        int seq = batched ? q.Shape[1] : q.Shape[0];
        if (textLen == 0 || text is null)
        {
            RmsNorm.Forward(q, image.Q, q, eps);
            RmsNorm.Forward(k, image.K, k, eps);
        }
        else
        {
            int batch = batched ? q.Shape[0] : 1;
            for (int b = 0; b < batch; b++)
            {
                var qb = batched ? q.Slice(b, 1).Reshape(seq, q.Shape[2], q.Shape[3]) : q;
                var kb = batched ? k.Slice(b, 1).Reshape(seq, k.Shape[2], k.Shape[3]) : k;
                var (qt, kt) = (qb.Slice(0, textLen), kb.Slice(0, textLen));
                var (qi, ki) = (qb.Slice(textLen, seq - textLen), kb.Slice(textLen, seq - textLen));
                RmsNorm.Forward(qt, text.Value.Q, qt, eps);
                RmsNorm.Forward(kt, text.Value.K, kt, eps);
                RmsNorm.Forward(qi, image.Q, qi, eps);
                RmsNorm.Forward(ki, image.K, ki, eps);
            }
        }
        trace?.Invoke("attn.q_normed", q);
        trace?.Invoke("attn.k_normed", k);
        Rope.ApplyInterleaved(q, cos, sin, q);
        Rope.ApplyInterleaved(k, cos, sin, k);
        trace?.Invoke("attn.q_rope", q);
        trace?.Invoke("attn.k_rope", k);
        Attention.Forward(q, k, v, o);
        trace?.Invoke("attn.sdpa_out", o);
    }
}
