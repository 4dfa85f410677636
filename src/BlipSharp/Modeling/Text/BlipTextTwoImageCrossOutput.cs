using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// The output block of <see cref="BlipTextTwoImageCrossAttention"/> (salesforce/BLIP <c>nlvr_encoder.BertSelfOutput</c>
/// with <c>twin=True</c>): each image's attention context gets its own dense layer (<c>dense0</c>, <c>dense1</c>); the two
/// results are averaged, or, in layers with <c>merge_layer</c>, mapped by it from their concatenation (2H -&gt; H, no
/// activation); then dropout and LayerNorm over the residual sum, as <see cref="BlipTextSelfOutput"/>.
/// </summary>
public sealed class BlipTextTwoImageCrossOutput : Module
{
    private readonly double _dropout;

#pragma warning disable IDE1006
    /// <summary>(H, H) for the context of image 0.</summary>
    public Linear dense0;
    /// <summary>(H, H) for the context of image 1.</summary>
    public Linear dense1;
    /// <summary>(H, 2H): merges [dense0 | dense1]; null in the layers that average.</summary>
    public Linear? merge_layer;
    /// <summary>LayerNorm over the merged output + residual.</summary>
    [TorchSharp.Utils.ComponentName(Name = "LayerNorm")]
    public LayerNorm layer_norm;
#pragma warning restore IDE1006

    /// <summary>Creates the block; <paramref name="merge"/> adds <see cref="merge_layer"/>.</summary>
    public BlipTextTwoImageCrossOutput(BlipTextConfig config, bool merge) : base(nameof(BlipTextTwoImageCrossOutput))
    {
        _dropout = config.HiddenDropoutProb;
        dense0 = Linear(config.HiddenSize, config.HiddenSize);
        dense1 = Linear(config.HiddenSize, config.HiddenSize);
        merge_layer = merge ? Linear(2 * config.HiddenSize, config.HiddenSize) : null;
        layer_norm = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>LayerNorm(dropout(merge(dense0(<paramref name="context0"/>), dense1(<paramref name="context1"/>))) + <paramref name="residual"/>), all (B, T, H).</summary>
    public Tensor Forward(Tensor context0, Tensor context1, Tensor residual)
    {
        using var d0 = DecodeLinear.Forward(dense0, context0);                  // (B, T, H)
        using var d1 = DecodeLinear.Forward(dense1, context1);                  // (B, T, H)
        using var merged = Merge(d0, d1);                                       // (B, T, H)
        using var dropped = nn.functional.dropout(merged, _dropout, training);
        using var sum = dropped + residual;
        return layer_norm.forward(sum);
    }

    private Tensor Merge(Tensor d0, Tensor d1)
    {
        if (merge_layer is null)
        {
            using var both = d0 + d1;
            return both / 2;
        }
        using var joined = cat([d0, d1], dim: -1);                              // (B, T, 2H)
        return DecodeLinear.Forward(merge_layer, joined);
    }
}
