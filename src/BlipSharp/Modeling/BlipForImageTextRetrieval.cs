using BlipSharp.Configuration;
using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling;

/// <summary>
/// Image-text matching (ITM head over the image-grounded encoder) and contrastive similarity (ITC projections
/// of the unimodal features), as transformers' <c>BlipForImageTextRetrieval</c>.
/// </summary>
public sealed class BlipForImageTextRetrieval : Module, IBlipTaskModel
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Image encoder.</summary>
    public BlipVisionModel vision_model;
    /// <summary>Text encoder (unimodal without image states, image-grounded with them).</summary>
    public BlipTextModel text_encoder;
    /// <summary>Image class token -> ITC space (Dv -> image_text_hidden_size).</summary>
    public Linear vision_proj;
    /// <summary>Text first token -> ITC space (H -> image_text_hidden_size).</summary>
    public Linear text_proj;
    /// <summary>Image-grounded first token -> [no match, match] (H -> 2).</summary>
    public Linear itm_head;
#pragma warning restore IDE1006

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>.</summary>
    public BlipForImageTextRetrieval(BlipConfig config) : base(nameof(BlipForImageTextRetrieval))
    {
        Config = config.Normalized();
        vision_model = new BlipVisionModel(Config.VisionConfig);
        text_encoder = new BlipTextModel(Config.TextConfig, addPoolingLayer: false);
        vision_proj = Linear(Config.VisionConfig.HiddenSize, Config.ImageTextHiddenSize);
        text_proj = Linear(Config.TextConfig.HiddenSize, Config.ImageTextHiddenSize);
        itm_head = Linear(Config.TextConfig.HiddenSize, 2);
        RegisterComponents();
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c> or <c>pytorch_model.bin</c>)
    /// strictly, in evaluation mode; see <see cref="Checkpoints.BlipCheckpoint"/>. A Hub repo id instead of a folder
    /// is downloaded into the huggingface_hub cache (<see cref="Checkpoints.BlipLoadOptions.Hub"/>).
    /// </summary>
    public static BlipForImageTextRetrieval FromPretrained(string pathOrRepoId, Checkpoints.BlipLoadOptions? options = null) =>
        Checkpoints.BlipCheckpoint.LoadForImageTextRetrieval(pathOrRepoId, options);

    /// <summary>Pixels (B, C, S, S) -> image states (B, 1+N, Dv).</summary>
    public Tensor EncodeImage(Tensor pixelValues, bool interpolatePositionEncoding = false) =>
        vision_model.Encode(pixelValues, interpolatePositionEncoding);

    /// <summary>Unimodal text states (B, T, H): bidirectional, no cross-attention.</summary>
    public Tensor EncodeText(Tensor inputIds, Tensor? attentionMask = null)
    {
        using var output = text_encoder.Forward(inputIds, attentionMask);
        return output.LastHiddenState.alias();
    }

    /// <summary>Image-grounded text states (B, T, H): each text cross-attends to its image's states.</summary>
    public Tensor EncodeMultimodal(Tensor inputIds, Tensor? attentionMask, Tensor imageEmbeds)
    {
        using var output = text_encoder.Forward(inputIds, attentionMask, imageEmbeds);
        return output.LastHiddenState.alias();
    }

    /// <summary>L2-normalised ITC image features (B, P) from image states.</summary>
    public Tensor ImageFeatures(Tensor imageEmbeds)
    {
        using var cls = imageEmbeds[.., 0, ..];
        using var projected = vision_proj.forward(cls);
        return nn.functional.normalize(projected, dim: -1);
    }

    /// <summary>L2-normalised ITC text features (B, P) from unimodal text states.</summary>
    public Tensor TextFeatures(Tensor textStates)
    {
        using var cls = textStates[.., 0, ..];
        using var projected = text_proj.forward(cls);
        return nn.functional.normalize(projected, dim: -1);
    }

    /// <summary>ITM: text i against image i. Logits and probabilities (B, 2).</summary>
    public ItmOutput ImageTextMatching(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null)
    {
        using var image = EncodeImage(pixelValues);
        return ImageTextMatchingFromEmbeds(image, inputIds, attentionMask);
    }

    /// <summary>ITM from image states already computed (one image state per text row).</summary>
    public ItmOutput ImageTextMatchingFromEmbeds(Tensor imageEmbeds, Tensor inputIds, Tensor? attentionMask = null)
    {
        using var states = EncodeMultimodal(inputIds, attentionMask, imageEmbeds);
        using var cls = states[.., 0, ..];
        var logits = itm_head.forward(cls);
        return new ItmOutput(logits, logits.softmax(1));
    }

    /// <summary>ITC: cosine similarity of every image (I) with every text (T), (I, T).</summary>
    public ItcOutput ContrastiveSimilarity(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null)
    {
        using var image = EncodeImage(pixelValues);
        using var text = EncodeText(inputIds, attentionMask);
        var imageFeat = ImageFeatures(image);
        var textFeat = TextFeatures(text);
        using var textFeatT = textFeat.t();                          // (P, T)
        return new ItcOutput(imageFeat.matmul(textFeatT), imageFeat, textFeat);
    }
}
