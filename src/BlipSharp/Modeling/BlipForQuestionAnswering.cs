using BlipSharp.Configuration;
using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling;

/// <summary>
/// Visual question answering, as transformers' <c>BlipForQuestionAnswering</c>: the question goes through the
/// image-grounded text encoder; the answer decoder cross-attends to the question's multimodal states.
/// </summary>
public sealed class BlipForQuestionAnswering : Module, IBlipTaskModel
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Image encoder.</summary>
    public BlipVisionModel vision_model;
    /// <summary>Question encoder (image-grounded).</summary>
    public BlipTextModel text_encoder;
    /// <summary>Answer decoder with its LM head.</summary>
    public BlipTextLMHeadModel text_decoder;
#pragma warning restore IDE1006

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>.</summary>
    public BlipForQuestionAnswering(BlipConfig config) : base(nameof(BlipForQuestionAnswering))
    {
        Config = config.Normalized();
        vision_model = new BlipVisionModel(Config.VisionConfig);
        text_encoder = new BlipTextModel(Config.TextConfig, addPoolingLayer: false);
        text_decoder = new BlipTextLMHeadModel(Config.TextConfig);
        RegisterComponents();
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c> or <c>pytorch_model.bin</c>)
    /// strictly, in evaluation mode; see <see cref="Checkpoints.BlipCheckpoint"/>. A Hub repo id instead of a folder
    /// is downloaded into the huggingface_hub cache (<see cref="Checkpoints.BlipLoadOptions.Hub"/>).
    /// </summary>
    public static BlipForQuestionAnswering FromPretrained(string pathOrRepoId, Checkpoints.BlipLoadOptions? options = null) =>
        Checkpoints.BlipCheckpoint.LoadForQuestionAnswering(pathOrRepoId, options);

    /// <summary>Pixels (B, C, S, S) -> image states (B, 1+N, Dv).</summary>
    public Tensor EncodeImage(Tensor pixelValues, bool interpolatePositionEncoding = false) =>
        vision_model.Encode(pixelValues, interpolatePositionEncoding);

    /// <summary>Image-grounded question states (B, Tq, H); the question starts with [CLS] as in transformers.</summary>
    public Tensor EncodeQuestion(Tensor imageEmbeds, Tensor inputIds, Tensor? attentionMask = null)
    {
        using var output = text_encoder.Forward(inputIds, attentionMask, imageEmbeds);
        return output.LastHiddenState.alias();
    }

    /// <summary>Decodes answers (B, Ta) against question states; loss with labels.</summary>
    /// <param name="questionEmbeds">(B, Tq, H).</param>
    /// <param name="questionMask">(B, Tq) question mask for the cross-attention, or null for all ones (as generation does).</param>
    /// <param name="decoderInputIds">(B, Ta) answer ids.</param>
    /// <param name="decoderAttentionMask">(B, Ta) answer padding mask, or null.</param>
    /// <param name="labels">(B, Ta) targets (-100 ignored), or null.</param>
    /// <param name="reduction">Token-mean or per-sequence sum.</param>
    /// <param name="labelSmoothing">Overrides <c>text_config.label_smoothing</c>.</param>
    public CausalLMOutput DecodeAnswer(Tensor questionEmbeds, Tensor? questionMask, Tensor decoderInputIds, Tensor? decoderAttentionMask = null,
        Tensor? labels = null, LossReduction reduction = LossReduction.Mean, double? labelSmoothing = null) =>
        text_decoder.Forward(decoderInputIds, decoderAttentionMask, questionEmbeds, questionMask, labels, reduction, labelSmoothing);

    /// <summary>
    /// transformers' forward: with <paramref name="labels"/> and no <paramref name="decoderInputIds"/>, the labels are
    /// the decoder input; the answer decoder's cross-attention uses the question's attention mask.
    /// </summary>
    public QuestionAnsweringOutput Forward(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null, Tensor? decoderInputIds = null,
        Tensor? decoderAttentionMask = null, Tensor? labels = null, double? labelSmoothing = null)
    {
        var image = EncodeImage(pixelValues);
        var question = EncodeQuestion(image, inputIds, attentionMask);
        Tensor decoderInput = decoderInputIds ?? labels ?? full(inputIds.shape[0], 1, Config.TextConfig.BosTokenId, dtype: ScalarType.Int64, device: inputIds.device);
        using var decoded = DecodeAnswer(question, attentionMask, decoderInput, decoderAttentionMask, labels, LossReduction.Mean, labelSmoothing);
        if (decoderInputIds is null && labels is null) decoderInput.Dispose();
        return new QuestionAnsweringOutput(decoded.Loss?.alias(), decoded.Logits.alias(), question, image);
    }
}
