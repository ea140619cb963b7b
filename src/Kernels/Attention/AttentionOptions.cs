namespace PureFlux.Kernels;

/// <summary>Which implementation <see cref="Attention.Forward"/> runs.</summary>
public enum AttentionAlgorithm
{
    /// <summary>The fast path: tiled flash attention (CPU: SIMD, multithreaded; ILGPU: grouped kernel for D ≤ 128).</summary>
    Auto,
    /// <summary>The straightforward reference (ladder step 0): one query row at a time, two passes over the keys.
    /// Slow; for tests and for checking the fast path.</summary>
    Reference,
    /// <summary>The full S_q × S_k score matrix per head, formed and multiplied with the packed GEMM (CPU only; what
    /// <see cref="CpuAttentionKernel.Materialized"/> selects for Auto on a device). The baseline flash attention is measured against.</summary>
    Materialized,
}

/// <summary>
/// Options of <see cref="Attention.Forward"/>. All masks combine (a key is attended only when every mask allows it);
/// a query row whose keys are all masked outputs zeros (PyTorch would give NaN).
/// </summary>
public sealed record AttentionOptions
{
    /// <summary>Logit scale; null means 1/sqrt(D).</summary>
    public float? Scale { get; init; }

    /// <summary>
    /// Causal mask, aligned bottom-right: query i attends key j only when j ≤ i + (S_k − S_q). With S_q == S_k this is
    /// the usual lower triangle (PyTorch is_causal); with S_q &lt; S_k the queries are the last S_q positions of the
    /// key sequence (a KV cache), as in flash-attention ≥ 2.1. PyTorch's is_causal aligns top-left instead when S_q ≠ S_k.
    /// </summary>
    public bool Causal { get; init; }

    /// <summary>U8 [S_k] (any shape with S_k elements): 1 = attend, 0 = masked for every query and head (key padding).</summary>
    public Tensor? KeyMask { get; init; }

    /// <summary>U8 [S_q, S_k] (or [1, 1, S_q, S_k]): 1 = attend, 0 = masked; the same for every head.</summary>
    public Tensor? Mask { get; init; }

    /// <summary>
    /// F32 added to the scaled logits; −∞ masks. [S_q, S_k] (or [1, 1, S_q, S_k]): the same for every head; or
    /// [H_q, S_q, S_k] (or [1, H_q, S_q, S_k]): one per query head (T5's relative position bias).
    /// </summary>
    public Tensor? Bias { get; init; }

    public AttentionAlgorithm Algorithm { get; init; } = AttentionAlgorithm.Auto;
}
