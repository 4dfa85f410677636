using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>A pre-LayerNorm ViT block: x + attn(ln1(x)), then x + mlp(ln2(x)); transformers' <c>BlipEncoderLayer</c>.</summary>
public sealed class BlipEncoderLayer : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>Self-attention.</summary>
    public BlipAttention self_attn;
    /// <summary>LayerNorm before attention.</summary>
    public LayerNorm layer_norm1;
    /// <summary>Feed-forward block.</summary>
    public BlipMLP mlp;
    /// <summary>LayerNorm before the MLP.</summary>
    public LayerNorm layer_norm2;
#pragma warning restore IDE1006

    /// <summary>Creates the block for <paramref name="config"/>.</summary>
    public BlipEncoderLayer(BlipVisionConfig config) : base(nameof(BlipEncoderLayer))
    {
        self_attn = new BlipAttention(config);
        layer_norm1 = LayerNorm(config.HiddenSize, config.LayerNormEps);
        mlp = new BlipMLP(config);
        layer_norm2 = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor x) => Forward(x, x.shape[1]);

    /// <summary>(B, T, D) -> (B, T, D), attending only to the first <paramref name="keyTokens"/> tokens (the rest are padding).</summary>
    public Tensor Forward(Tensor x, long keyTokens)
    {
        Tensor h;
        using (var n1 = layer_norm1.forward(x))
        using (var a = self_attn.Forward(n1, keyTokens))
            h = x + a;
        using (h)
        using (var n2 = layer_norm2.forward(h))
        using (var m = mlp.forward(n2))
            return h + m;
    }
}
