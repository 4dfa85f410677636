using BlipSharp.Configuration;
using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling;

/// <summary>
/// Captioning: the image encoder and the image-grounded text decoder, as transformers'
/// <c>BlipForConditionalGeneration</c> (keys <c>vision_model.*</c>, <c>text_decoder.*</c>).
/// </summary>
public sealed class BlipForConditionalGeneration : Module, IBlipTaskModel
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Image encoder.</summary>
    public BlipVisionModel vision_model;
    /// <summary>Image-grounded decoder with its LM head.</summary>
    public BlipTextLMHeadModel text_decoder;
#pragma warning restore IDE1006

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>.</summary>
    public BlipForConditionalGeneration(BlipConfig config) : base(nameof(BlipForConditionalGeneration))
    {
        Config = config.Normalized();
        vision_model = new BlipVisionModel(Config.VisionConfig);
        text_decoder = new BlipTextLMHeadModel(Config.TextConfig);
        RegisterComponents();
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c> or <c>pytorch_model.bin</c>)
    /// strictly, in evaluation mode; see <see cref="Checkpoints.BlipCheckpoint"/>. A Hub repo id instead of a folder
    /// is downloaded into the huggingface_hub cache (<see cref="Checkpoints.BlipLoadOptions.Hub"/>).
    /// </summary>
    public static BlipForConditionalGeneration FromPretrained(string pathOrRepoId, Checkpoints.BlipLoadOptions? options = null) =>
        Checkpoints.BlipCheckpoint.LoadForConditionalGeneration(pathOrRepoId, options);

    /// <summary>Pixels (B, C, S, S) -> image states (B, 1+N, Dv).</summary>
    public Tensor EncodeImage(Tensor pixelValues, bool interpolatePositionEncoding = false) =>
        vision_model.Encode(pixelValues, interpolatePositionEncoding);

    /// <summary>Decodes <paramref name="inputIds"/> (B, T) against image states; logits (B, T, V), loss with labels.</summary>
    public CausalLMOutput Decode(Tensor imageEmbeds, Tensor inputIds, Tensor? attentionMask = null, Tensor? labels = null, double? labelSmoothing = null) =>
        text_decoder.Forward(inputIds, attentionMask, imageEmbeds, encoderAttentionMask: null, labels, LossReduction.Mean, labelSmoothing);

    /// <summary>
    /// transformers' forward: encode the image, decode <paramref name="inputIds"/> exactly as given (the first token
    /// is not replaced), and compute the LM loss when <paramref name="labels"/> are given.
    /// </summary>
    public CaptioningOutput Forward(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null, Tensor? labels = null, double? labelSmoothing = null)
    {
        var image = EncodeImage(pixelValues);
        var decoded = Decode(image, inputIds, attentionMask, labels, labelSmoothing);
        return new CaptioningOutput(decoded.Logits, decoded.Loss, image, decoded.LastHiddenState);
    }
}
