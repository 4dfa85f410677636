using BlipSharp.Configuration;
using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling;

/// <summary>
/// The CLIP-style contrastive model, as transformers' <c>BlipModel</c>: pooled image and text outputs are
/// projected (no bias), normalised and compared with a learned temperature.
/// </summary>
public sealed class BlipModel : Module, IBlipTaskModel
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Text model with a pooler.</summary>
    public BlipTextModel text_model;
    /// <summary>Image encoder.</summary>
    public BlipVisionModel vision_model;
    /// <summary>(P, Dv), no bias.</summary>
    public Linear visual_projection;
    /// <summary>(P, H), no bias.</summary>
    public Linear text_projection;
    /// <summary>Log inverse temperature, 0-dim.</summary>
    public Parameter logit_scale;
#pragma warning restore IDE1006

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>.</summary>
    public BlipModel(BlipConfig config) : base(nameof(BlipModel))
    {
        Config = config.Normalized();
        text_model = new BlipTextModel(Config.TextConfig, addPoolingLayer: true);
        vision_model = new BlipVisionModel(Config.VisionConfig);
        visual_projection = Linear(Config.VisionConfig.HiddenSize, Config.ProjectionDim, hasBias: false);
        text_projection = Linear(Config.TextConfig.HiddenSize, Config.ProjectionDim, hasBias: false);
        logit_scale = Parameter(tensor((float)Config.LogitScaleInitValue));
        RegisterComponents();
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c> or <c>pytorch_model.bin</c>)
    /// strictly, in evaluation mode; see <see cref="Checkpoints.BlipCheckpoint"/>. A Hub repo id instead of a folder
    /// is downloaded into the huggingface_hub cache (<see cref="Checkpoints.BlipLoadOptions.Hub"/>).
    /// </summary>
    public static BlipModel FromPretrained(string pathOrRepoId, Checkpoints.BlipLoadOptions? options = null) =>
        Checkpoints.BlipCheckpoint.LoadModel(pathOrRepoId, options);

    /// <summary>Unnormalised text features (T, P): text_projection(pooler_output).</summary>
    public Tensor GetTextFeatures(Tensor inputIds, Tensor? attentionMask = null)
    {
        using var output = text_model.Forward(inputIds, attentionMask);
        return text_projection.forward(output.PoolerOutput!);
    }

    /// <summary>Unnormalised image features (I, P): visual_projection(pooler_output).</summary>
    public Tensor GetImageFeatures(Tensor pixelValues)
    {
        using var output = vision_model.Forward(pixelValues);
        return visual_projection.forward(output.PoolerOutput);
    }

    /// <summary>Similarity logits of every image with every text; with <paramref name="returnLoss"/> the symmetric contrastive loss (I must equal T).</summary>
    public BlipOutput Forward(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null, bool returnLoss = false)
    {
        using var image = GetImageFeatures(pixelValues);
        using var text = GetTextFeatures(inputIds, attentionMask);
        using var imageNorm = image.norm(-1, keepdim: true, p: 2);
        using var textNorm = text.norm(-1, keepdim: true, p: 2);
        var imageEmbeds = image / imageNorm;                              // (I, P)
        var textEmbeds = text / textNorm;                                 // (T, P)
        using var imageEmbedsT = imageEmbeds.t();                         // (P, I)
        using var scale = logit_scale.exp();
        using var cosine = textEmbeds.matmul(imageEmbedsT);               // (T, I)
        var logitsPerText = cosine * scale;                               // (T, I)
        var logitsPerImage = logitsPerText.t();                           // (I, T)
        Tensor? loss = null;
        if (returnLoss)
        {
            if (logitsPerText.shape[0] != logitsPerText.shape[1])
                throw new ArgumentException($"the contrastive loss needs as many texts as images, got {logitsPerText.shape[0]} texts and {logitsPerText.shape[1]} images.");
            using var targets = arange(logitsPerText.shape[0], dtype: ScalarType.Int64, device: logitsPerText.device);
            using var textLoss = nn.functional.cross_entropy(logitsPerText, targets);
            using var imageLoss = nn.functional.cross_entropy(logitsPerImage, targets);
            using var sum = textLoss + imageLoss;
            loss = sum / 2.0;
        }
        return new BlipOutput(logitsPerImage, logitsPerText, imageEmbeds, textEmbeds, loss);
    }
}
