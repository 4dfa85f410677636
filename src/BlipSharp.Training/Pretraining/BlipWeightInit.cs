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
    /// <summary>Position embeddings from N(0, 0.02), as BLIP.</summary>
    public const string TruncNormalPositions = "trunc_normal";

    /// <summary>Position embeddings set to 2-D sine-cosine values (MAE's <c>get_2d_sincos_pos_embed</c>, the class token's row 0).</summary>
    public const string SinCosPositions = "sincos";

    /// <summary>
    /// Writes MAE's <c>get_2d_sincos_pos_embed</c> into (1, 1+G*G, D): row 0 (the class token) is 0; patch (r, c)
    /// gets the 1-D embedding of c in its first D/2 values and of r in the rest, each 1-D embedding being
    /// sin(p w_k) then cos(p w_k) with w_k = 10000^(-k / (D/4)), k = 0..D/4-1. D must be a multiple of 4.
    /// </summary>
    /// <param name="positionEmbedding">(1, 1+G*G, D) parameter, filled in place.</param>
    public static void SinCos2D(Tensor positionEmbedding)
    {
        ArgumentNullException.ThrowIfNull(positionEmbedding);
        long tokens = positionEmbedding.shape[1], dim = positionEmbedding.shape[2];
        long grid = (long)Math.Round(Math.Sqrt(tokens - 1));
        if (grid * grid != tokens - 1) throw new ArgumentException($"{tokens} position rows are not 1 + a square grid", nameof(positionEmbedding));
        if (dim % 4 != 0) throw new ArgumentException($"sine-cosine position embeddings need a width divisible by 4, not {dim}", nameof(positionEmbedding));
        long quarter = dim / 4;
        var values = new float[tokens * dim];
        for (long r = 0; r < grid; r++)
            for (long c = 0; c < grid; c++)
            {
                long row = (1 + r * grid + c) * dim;
                for (long k = 0; k < quarter; k++)
                {
                    double omega = Math.Pow(10000.0, -(double)k / quarter);
                    values[row + k] = (float)Math.Sin(c * omega);
                    values[row + quarter + k] = (float)Math.Cos(c * omega);
                    values[row + 2 * quarter + k] = (float)Math.Sin(r * omega);
                    values[row + 3 * quarter + k] = (float)Math.Cos(r * omega);
                }
            }
        using var filled = tensor(values, new long[] { 1, tokens, dim }, dtype: positionEmbedding.dtype);
        positionEmbedding.copy_(filled);
    }

    /// <summary>The standard deviation of BLIP's ViT init (<c>trunc_normal_(std=.02)</c>).</summary>
    public const double VisionStd = 0.02;

    /// <summary>
    /// BLIP's <c>VisionTransformer.__init__</c>: <c>trunc_normal_(std=.02)</c> for the position embeddings and the
    /// class token, then <c>apply(_init_weights)</c>: every Linear weight <c>trunc_normal_(std=.02)</c> with a zero
    /// bias, every LayerNorm weight 1 and bias 0. The patch-embedding convolution keeps PyTorch's default init,
    /// as in BLIP (timm's <c>trunc_normal_</c> cuts at -2 and 2 absolute, i.e. +-100 std here).
    /// </summary>
    /// <param name="vision">The ViT to initialise in place.</param>
    /// <param name="positionInit"><see cref="TruncNormalPositions"/> (BLIP) or <see cref="SinCosPositions"/>.</param>
    public static void VisionTransformer(BlipVisionModel vision, string positionInit = TruncNormalPositions)
    {
        ArgumentNullException.ThrowIfNull(vision);
        using var _ = no_grad();
        switch (positionInit)
        {
            case TruncNormalPositions:
                TruncatedNormal(vision.embeddings.position_embedding, VisionStd);
                break;
            case SinCosPositions:
                SinCos2D(vision.embeddings.position_embedding);
                break;
            default:
                throw new ArgumentException($"unknown vision_position_init '{positionInit}': use '{TruncNormalPositions}' or '{SinCosPositions}'", nameof(positionInit));
        }
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
