namespace BlipSharp.Modeling.Vision;

/// <summary>
/// How the vision encoder computes softmax(q kᵀ / √d) v, like transformers' <c>attn_implementation</c>
/// ("eager" or "sdpa"). Both give the same result up to rounding.
/// </summary>
public enum AttentionKernel
{
    /// <summary>
    /// <see cref="Fused"/>. On 2 Zen 4 cores (bench/RESULTS.md) the explicit form made a bfloat16 encoder 1.25x
    /// faster when it was the only model in the process (254 vs 330 ms at 384 px) but 1.7x slower when float32
    /// models ran in the same process (581 vs 336 ms); the fused kernel is steady in both, so it is the default.
    /// </summary>
    Auto,

    /// <summary>
    /// libtorch's fused <c>scaled_dot_product_attention</c>. It never materialises the (B, nh, T, T) scores. On the
    /// CPU its bfloat16 path is no faster than its float32 one (about 10 ms per ViT-B block at 577 tokens).
    /// </summary>
    Fused,

    /// <summary>
    /// Two batched matmuls and a softmax per group of heads, as transformers' eager <c>BlipAttention</c>; the
    /// matmuls run at GEMM speed. A group's scores are kept no larger than the MLP's hidden activation.
    /// </summary>
    Explicit,
}
