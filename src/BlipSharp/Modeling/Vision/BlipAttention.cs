using BlipSharp.Configuration;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>Multi-head self-attention with a fused q/k/v projection and no mask, as transformers' <c>BlipAttention</c>.</summary>
public sealed class BlipAttention : Module<Tensor, Tensor>
{
    private readonly int _numHeads;
    private readonly int _headDim;
    private readonly int _intermediateSize;
    private readonly double _scale;
    private readonly double _dropout;

#pragma warning disable IDE1006
    /// <summary>Fused projection: output rows are q, k, v, (3D, D).</summary>
    public Linear qkv;
    /// <summary>Output projection (D, D).</summary>
    public Linear projection;
#pragma warning restore IDE1006

    /// <summary>Creates the attention block for <paramref name="config"/>.</summary>
    public BlipAttention(BlipVisionConfig config) : base(nameof(BlipAttention))
    {
        _numHeads = config.NumAttentionHeads;
        _headDim = config.HiddenSize / config.NumAttentionHeads;
        _intermediateSize = config.IntermediateSize;
        _scale = 1.0 / Math.Sqrt(_headDim);
        _dropout = config.AttentionDropout;
        qkv = Linear(config.HiddenSize, 3 * config.HiddenSize);
        projection = Linear(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>How softmax(q kᵀ / √hd) v is computed; <see cref="AttentionKernel.Auto"/> by default.</summary>
    public AttentionKernel Kernel { get; set; } = AttentionKernel.Auto;

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor hiddenStates) => Forward(hiddenStates, hiddenStates.shape[1]);

    /// <summary>
    /// (B, T, D) -> (B, T, D), attending only to the first <paramref name="keyTokens"/> tokens: the rest are
    /// padding (see <see cref="BlipEncoder.PadTokens"/>), computed for but never read by the real tokens.
    /// </summary>
    public Tensor Forward(Tensor hiddenStates, long keyTokens)
    {
        long b = hiddenStates.shape[0], t = hiddenStates.shape[1];
        using var projected = qkv.forward(hiddenStates);                    // (B, T, 3D)
        using var split = projected.view(b, t, 3, _numHeads, _headDim);     // (B, T, 3, nh, hd)
        using var mixed = split.permute(2, 0, 3, 1, 4);                      // (3, B, nh, T, hd)
        using var q = mixed[0];                                              // (B, nh, T, hd)
        using var allKeys = mixed[1];
        using var allValues = mixed[2];
        using var k = allKeys.narrow(2, 0, keyTokens);                       // (B, nh, S, hd)
        using var v = allValues.narrow(2, 0, keyTokens);                     // (B, nh, S, hd)
        using var context = Attend(q, k, v);                                 // (B, nh, T, hd)
        using var transposed = context.transpose(1, 2);                      // (B, T, nh, hd)
        using var merged = transposed.reshape(b, t, _numHeads * _headDim);   // (B, T, D)
        return projection.forward(merged);
    }

    /// <summary>
    /// softmax(q kᵀ / √hd) v for queries (B, nh, T, hd) and keys and values (B, nh, S, hd), with the
    /// <see cref="Kernel"/> chosen. Returns (B, nh, T, hd).
    /// </summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v)
    {
        double dropout = training ? _dropout : 0.0;
        long tokens = k.shape[2], heads = q.shape[1];
        if (!UseExplicit(q, tokens))
            return nn.functional.scaled_dot_product_attention(q, k, v, p: dropout); // (B, nh, T, hd)

        // Heads go in groups whose (B, g, T, S) scores are no larger than the MLP's (B, T, I) activation. glibc's
        // allocator keeps blocks of that size in the process, so the scores reuse them; larger ones are mapped
        // fresh and page-faulted in every layer (16 MB float32 score matrices: 90k faults, 1.7x slower encoder).
        long group = Math.Clamp(_intermediateSize / tokens, 1, heads);
        long groups = (heads + group - 1) / group;
        group = (heads + groups - 1) / groups;                               // balanced: 12 heads -> 3 x 4
        if (groups == 1) return ExplicitAttention(q, k, v, dropout);
        var parts = new List<Tensor>((int)groups);
        try
        {
            for (long h = 0; h < heads; h += group)
            {
                long n = Math.Min(group, heads - h);
                using var qg = q.narrow(1, h, n);                            // (B, g, T, hd)
                using var kg = k.narrow(1, h, n);
                using var vg = v.narrow(1, h, n);
                parts.Add(ExplicitAttention(qg, kg, vg, dropout));
            }
            return cat(parts, 1);                                            // (B, nh, T, hd)
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    // transformers' eager attention. Scaling q costs T*hd multiplications per head instead of T*T for the
    // scores; for hd = 64 the scale is 1/8 and both orders round identically.
    private Tensor ExplicitAttention(Tensor q, Tensor k, Tensor v, double dropout)
    {
        using var scaled = q * KeptScalars.Of(_scale);                                       // (B, g, T, hd)
        using var keys = k.transpose(-2, -1);                                // (B, g, hd, S)
        using var scores = scaled.matmul(keys);                              // (B, g, T, S)
        using var probs = scores.softmax(-1);                                // (B, g, T, S)
        if (dropout == 0.0) return probs.matmul(v);                          // (B, g, T, hd)
        using var dropped = nn.functional.dropout(probs, dropout, training: true);
        return dropped.matmul(v);                                            // (B, g, T, hd)
    }

    // Auto is the fused kernel: the explicit one is faster in a bfloat16-only process but up to 1.7x slower when
    // other models share the process (bench/RESULTS.md), while the fused one is steady in both.
    private bool UseExplicit(Tensor q, long tokens) => Kernel == AttentionKernel.Explicit;
}
