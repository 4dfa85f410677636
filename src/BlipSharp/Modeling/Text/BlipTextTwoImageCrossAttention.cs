using BlipSharp.Configuration;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// Cross-attention to two images at once, for NLVR2 (salesforce/BLIP <c>nlvr_encoder.BertAttention</c> with
/// <c>is_cross_attention</c>): the text attends to image 0 with <c>self0</c> and to image 1 with <c>self1</c>, two
/// ordinary <see cref="BlipTextSelfAttention"/> cross-attentions, and <see cref="BlipTextTwoImageCrossOutput"/> merges
/// the two contexts. Keys <c>self0.*</c>, <c>self1.*</c>, <c>output.*</c>.
/// </summary>
public sealed class BlipTextTwoImageCrossAttention : Module
{
#pragma warning disable IDE1006
    /// <summary>Cross-attention to the first image.</summary>
    public BlipTextSelfAttention self0;
    /// <summary>Cross-attention to the second image.</summary>
    public BlipTextSelfAttention self1;
    /// <summary>Per-image dense layers, merge and residual LayerNorm.</summary>
    public BlipTextTwoImageCrossOutput output;
#pragma warning restore IDE1006

    /// <summary>Creates the block; <paramref name="merge"/> gives its output a <c>merge_layer</c>.</summary>
    public BlipTextTwoImageCrossAttention(BlipTextConfig config, bool merge) : base(nameof(BlipTextTwoImageCrossAttention))
    {
        self0 = new BlipTextSelfAttention(config, isCrossAttention: true);
        self1 = new BlipTextSelfAttention(config, isCrossAttention: true);
        output = new BlipTextTwoImageCrossOutput(config, merge);
        RegisterComponents();
    }

    /// <summary>
    /// Attends from <paramref name="hiddenStates"/> (B, T, H) to <paramref name="image0States"/> and
    /// <paramref name="image1States"/> (B, S, E each; every image token visible, as BLIP's all-ones image masks);
    /// returns (B, T, H).
    /// </summary>
    public Tensor Forward(Tensor hiddenStates, Tensor image0States, Tensor image1States)
    {
        using var context0 = self0.Forward(hiddenStates, image0States, additiveMask: null); // (B, T, H)
        using var context1 = self1.Forward(hiddenStates, image1States, additiveMask: null); // (B, T, H)
        return output.Forward(context0, context1, hiddenStates);
    }
}
