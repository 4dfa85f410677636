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

    /// <summary>
    /// Generates captions as transformers' <c>generate</c>: the decoder starts from <c>[DEC]</c>; with a prompt,
    /// <paramref name="inputIds"/> are the processor's ids (<c>[CLS] prompt [SEP]</c>) whose first column becomes
    /// <c>[DEC]</c> and whose last column (the <c>[SEP]</c>) is dropped. The caller's tensor is not modified
    /// (transformers overwrites it). Returned rows include the start token and prompt.
    /// </summary>
    /// <param name="pixelValues">(B, C, S, S) preprocessed images.</param>
    /// <param name="inputIds">(B, T) or (1, T) prompt ids from the processor, or null for no prompt.</param>
    /// <param name="attentionMask">(B, T) or (1, T) mask of <paramref name="inputIds"/>, or null.</param>
    /// <param name="options">Decoding settings; null for transformers' defaults.</param>
    /// <param name="interpolatePositionEncoding">Interpolate the vision position embeddings to the image size.</param>
    public Generation.GeneratedSequences Generate(Tensor pixelValues, Tensor? inputIds = null, Tensor? attentionMask = null,
        Generation.GenerationOptions? options = null, bool interpolatePositionEncoding = false)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var image = EncodeImage(pixelValues, interpolatePositionEncoding);
        var (prompt, promptMask) = DecoderPrompt(inputIds, attentionMask, image.shape[0], image.device);
        return GenerateFromImageEmbeds(image, prompt, promptMask, options);
    }

    /// <summary>Generates from already encoded image states (B, 1+N, Dv) and decoder start ids (B or 1, P) that begin with <c>[DEC]</c>.</summary>
    public Generation.GeneratedSequences GenerateFromImageEmbeds(Tensor imageEmbeds, Tensor decoderInputIds, Tensor? decoderAttentionMask, Generation.GenerationOptions? options) =>
        Generation.TextGenerator.Generate(text_decoder, imageEmbeds, encoderAttentionMask: null, decoderInputIds, decoderAttentionMask, options);

    /// <summary>
    /// The decoder start ids transformers builds from processor prompt ids: <c>[DEC]</c> in column 0 and the last
    /// column dropped; without a prompt, one <c>[DEC]</c> per image.
    /// </summary>
    public (Tensor Ids, Tensor? Mask) DecoderPrompt(Tensor? inputIds, Tensor? attentionMask, long batch, Device device)
    {
        long bos = Config.TextConfig.BosTokenId;
        if (inputIds is null) return (full(batch, 1, bos, dtype: ScalarType.Int64, device: device), null);
        if (inputIds.dim() != 2 || inputIds.shape[1] < 2)
            throw new ArgumentException($"prompt ids must be (batch, length >= 2) as the processor returns them ([CLS] ... [SEP]), got ({string.Join(", ", inputIds.shape)}).", nameof(inputIds));
        long t = inputIds.shape[1];
        using var head = inputIds.narrow(1, 0, t - 1);                          // (B, T-1): the trailing [SEP] dropped
        var ids = head.to(ScalarType.Int64, device).clone();
        using (var first = ids.select(1, 0)) first.fill_(KeptScalars.Of(bos));
        Tensor? mask = null;
        if (attentionMask is not null)
        {
            using var maskHead = attentionMask.narrow(1, 0, t - 1);             // (B, T-1)
            mask = maskHead.to(ScalarType.Int64, device).clone();
        }
        return (ids, mask);
    }
}
