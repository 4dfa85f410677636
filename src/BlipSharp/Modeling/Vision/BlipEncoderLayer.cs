using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>
/// A pre-LayerNorm ViT block: x + drop_path(attn(ln1(x))), then x + drop_path(mlp(ln2(x))); transformers'
/// <c>BlipEncoderLayer</c> with salesforce/BLIP's stochastic depth (<see cref="DropPathRate"/>, 0 by default).
/// </summary>
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

    /// <summary>
    /// The probability that, in training mode, a sample's attention and MLP branches are each dropped
    /// (<see cref="DropPath"/>); 0 (no drop path) unless the encoder sets it from <c>drop_path_rate</c>. Eval mode ignores it.
    /// </summary>
    public double DropPathRate
    {
        get => _dropPathRate;
        set
        {
            if (!(value >= 0.0 && value < 1.0)) throw new ArgumentOutOfRangeException(nameof(value), value, "the drop path rate must lie in [0, 1)");
            _dropPathRate = value;
        }
    }

    private double _dropPathRate;

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor x) => Forward(x, x.shape[1]);

    /// <summary>(B, T, D) -> (B, T, D), attending only to the first <paramref name="keyTokens"/> tokens (the rest are padding).</summary>
    public Tensor Forward(Tensor x, long keyTokens)
    {
        Tensor h;
        using (var n1 = layer_norm1.forward(x))
        using (var a = self_attn.Forward(n1, keyTokens))
            h = Residual(x, a);
        using (h)
        using (var n2 = layer_norm2.forward(h))
        using (var m = mlp.forward(n2))
            return Residual(h, m);
    }

    /// <summary>x + drop_path(branch); just x + branch when drop path is off.</summary>
    private Tensor Residual(Tensor x, Tensor branch)
    {
        if (!training || _dropPathRate == 0.0) return x + branch;
        using var dropped = DropPath.Apply(branch, _dropPathRate, training: true);   // (B, T, D)
        return x + dropped;
    }
}
