namespace BlipSharp.Modeling.Vision;

/// <summary>
/// How the vision encoder computes softmax(q kᵀ / √d) v, like transformers' <c>attn_implementation</c>
/// ("eager" or "sdpa"). Both give the same result up to rounding.
/// </summary>
public enum AttentionKernel
{
    /// <summary>
    /// <see cref="Explicit"/> for bfloat16 on the CPU, else <see cref="Fused"/>. Measured on 2 Zen 4 cores
    /// (bench/RESULTS.md): in bfloat16 the explicit form makes the whole encoder 1.2-1.4x faster, because
    /// libtorch's fused CPU kernel is no faster in bfloat16 than in float32; in float32 the explicit form is no
    /// faster (often slower) than the fused kernel, which also needs less memory; in float16 (no fast CPU GEMM)
    /// it is 2x slower.
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
