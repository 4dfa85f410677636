using BlipSharp.Configuration;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// A text layer of the NLVR2 encoder (salesforce/BLIP <c>nlvr_encoder.BertLayer</c>): self-attention, then
/// <see cref="BlipTextTwoImageCrossAttention"/> to both images, then the feed-forward block. The self-attention and
/// feed-forward blocks are the ones of <see cref="BlipTextLayer"/>; only the cross-attention differs, so it has the
/// same keys (<c>attention</c>, <c>crossattention</c>, <c>intermediate</c>, <c>output</c>).
/// </summary>
public sealed class BlipTextTwoImageLayer : Module
{
#pragma warning disable IDE1006
    /// <summary>Self-attention (bidirectional; the mask hides padding).</summary>
    public BlipTextAttention attention;
    /// <summary>Cross-attention to the two images.</summary>
    public BlipTextTwoImageCrossAttention crossattention;
    /// <summary>Feed-forward up-projection.</summary>
    public BlipTextIntermediate intermediate;
    /// <summary>Feed-forward down-projection with residual LayerNorm.</summary>
    public BlipTextSelfOutput output;
#pragma warning restore IDE1006

    /// <summary>Creates the layer; <paramref name="merge"/>: its cross-attention output has a <c>merge_layer</c>.</summary>
    public BlipTextTwoImageLayer(BlipTextConfig config, bool merge) : base(nameof(BlipTextTwoImageLayer))
    {
        attention = new BlipTextAttention(config, isCrossAttention: false);
        crossattention = new BlipTextTwoImageCrossAttention(config, merge);
        intermediate = new BlipTextIntermediate(config);
        output = new BlipTextSelfOutput(config, config.IntermediateSize);
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> (B, T, H).</summary>
    /// <param name="hiddenStates">Input states.</param>
    /// <param name="selfMask">Additive self-attention mask broadcastable to (B, nh, T, T), or null.</param>
    /// <param name="image0States">(B, S, E) states of the first images.</param>
    /// <param name="image1States">(B, S, E) states of the second images.</param>
    public Tensor Forward(Tensor hiddenStates, Tensor? selfMask, Tensor image0States, Tensor image1States)
    {
        using var attended = attention.Forward(hiddenStates, hiddenStates, selfMask);
        using var cross = crossattention.Forward(attended, image0States, image1States);
        using var inner = intermediate.forward(cross);
        return output.forward(inner, cross);
    }
}
