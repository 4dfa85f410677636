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
        TruncatedNormal(vision.embeddings.position_embedding, VisionStd);
        TruncatedNormal(vision.embeddings.class_embedding, VisionStd);
        foreach (var (_, module) in vision.named_modules())
        {
            switch (module)
            {
                case Linear linear:
                    TruncatedNormal(linear.weight!, VisionStd);
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
    /// Fills <paramref name="tensor"/> from N(0, <paramref name="std"/>) truncated to [<paramref name="a"/>,
    /// <paramref name="b"/>] by inverse-CDF sampling, as PyTorch's and timm's <c>trunc_normal_</c> (whose default
    /// bounds, -2 and 2, are absolute values). TorchSharp 0.107's <c>nn.init.trunc_normal_</c> cannot be used: it fills
    /// the tensor with the constant <paramref name="std"/> (measured: std 0 and every value 0.02), which made every ViT
    /// block's output and the class token's state zero (a constant vector through LayerNorm).
    /// </summary>
    /// <param name="tensor">The tensor to fill in place (under <c>no_grad</c>).</param>
    /// <param name="std">The standard deviation before truncation.</param>
    /// <param name="a">Lower bound.</param>
    /// <param name="b">Upper bound.</param>
    public static void TruncatedNormal(Tensor tensor, double std, double a = -2.0, double b = 2.0)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(std);
        if (!(a < b)) throw new ArgumentException($"the lower bound ({a}) must be below the upper bound ({b}).", nameof(a));
        double lower = NormalCdf(a / std), upper = NormalCdf(b / std);
        using var _ = no_grad();
        tensor.uniform_(2 * lower - 1, 2 * upper - 1);
        tensor.erfinv_();
        tensor.mul_(std * Math.Sqrt(2.0));
        tensor.clamp_(a, b); // erfinv(-1) is -inf
    }

    private static double NormalCdf(double x)
    {
        using var scaled = tensor(x / Math.Sqrt(2.0), dtype: ScalarType.Float64);
        using var erf = scaled.erf();
        return (1.0 + erf.item<double>()) / 2.0;
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
