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
        _dropout = config.AttentionDropout;
        qkv = Linear(config.HiddenSize, 3 * config.HiddenSize);
        projection = Linear(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor hiddenStates)
    {
        long b = hiddenStates.shape[0], t = hiddenStates.shape[1];
        using var projected = qkv.forward(hiddenStates);                    // (B, T, 3D)
        using var split = projected.reshape(b, t, 3, _numHeads, _headDim);  // (B, T, 3, nh, hd)
        using var mixed = split.permute(2, 0, 3, 1, 4);                      // (3, B, nh, T, hd)
        using var q = mixed[0];
        using var k = mixed[1];
        using var v = mixed[2];
        using var context = nn.functional.scaled_dot_product_attention(q, k, v, p: training ? _dropout : 0.0); // (B, nh, T, hd)
        using var transposed = context.transpose(1, 2);                      // (B, T, nh, hd)
        using var merged = transposed.reshape(b, t, _numHeads * _headDim);   // (B, T, D)
        return projection.forward(merged);
    }
}
