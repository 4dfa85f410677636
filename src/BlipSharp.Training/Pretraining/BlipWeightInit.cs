using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Training.Pretraining;

/// <summary>
/// The initial weights of a model trained from scratch, as the reference code draws them: salesforce/BLIP's ViT
/// (<c>models/vit.py</c>) and BERT's <c>init_weights</c> (<c>models/med.py</c>, transformers'
/// <c>BertPreTrainedModel._init_weights</c>). Without them TorchSharp's defaults (Kaiming-uniform linears, N(0, 1)
/// embeddings) start the LM loss near 32 instead of ln(30524) = 10.3 and leave ITC and ITM at chance on small runs.
/// A checkpoint overwrites all of it, so loading does not depend on it.
/// </summary>
public static class BlipWeightInit
{
    /// <summary>The standard deviation of BLIP's ViT init (<c>trunc_normal_(std=.02)</c>).</summary>
    public const double VisionStd = 0.02;

    /// <summary>
    /// BLIP's <c>VisionTransformer.__init__</c>: <c>trunc_normal_(std=.02)</c> for the position embeddings and the
    /// class token, then <c>apply(_init_weights)</c>: every Linear weight <c>trunc_normal_(std=.02)</c> with a zero
    /// bias, every LayerNorm weight 1 and bias 0. The patch-embedding convolution keeps PyTorch's default init,
    /// as in BLIP (timm's <c>trunc_normal_</c> cuts at -2 and 2 absolute, i.e. +-100 std here).
    /// </summary>
    /// <param name="vision">The ViT to initialise in place.</param>
    public static void VisionTransformer(BlipVisionModel vision)
    {
        ArgumentNullException.ThrowIfNull(vision);
        using var _ = no_grad();
        nn.init.trunc_normal_(vision.embeddings.position_embedding, std: VisionStd);
        nn.init.trunc_normal_(vision.embeddings.class_embedding, std: VisionStd);
        foreach (var (_, module) in vision.named_modules())
        {
            switch (module)
            {
                case Linear linear:
                    nn.init.trunc_normal_(linear.weight!, std: VisionStd);
                    linear.bias?.zero_();
                    break;
                case LayerNorm norm:
                    norm.weight?.fill_(1.0);
                    norm.bias?.zero_();
                    break;
            }
        }
    }

    /// <summary>
    /// BERT's <c>_init_weights</c> over every submodule: Linear and Embedding weights N(0, <paramref name="std"/>)
    /// (the padding row too, as med.py's), Linear biases 0, LayerNorm weight 1 and bias 0. The LM head's own bias
    /// (<see cref="BlipTextLMPredictionHead.bias"/>) is zeros from construction, as BERT's.
    /// </summary>
    /// <param name="text">A text model or LM head model to initialise in place.</param>
    /// <param name="std">The config's <c>initializer_range</c> (0.02).</param>
    public static void Bert(nn.Module text, double std)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(std);
        using var _ = no_grad();
        foreach (var (_, module) in text.named_modules())
        {
            switch (module)
            {
                case Linear linear:
                    nn.init.normal_(linear.weight!, mean: 0.0, std: std);
                    linear.bias?.zero_();
                    break;
                case Embedding embedding:
                    nn.init.normal_(embedding.weight!, mean: 0.0, std: std);
                    break;
                case LayerNorm norm:
                    norm.weight?.fill_(1.0);
                    norm.bias?.zero_();
                    break;
                case BlipTextLMPredictionHead head:
                    head.bias.zero_();
                    break;
            }
        }
    }
}
