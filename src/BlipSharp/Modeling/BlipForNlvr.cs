using BlipSharp.Configuration;
using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling;

/// <summary>
/// NLVR2, salesforce/BLIP's <c>BLIP_NLVR</c>: is a sentence true of a pair of images? Both images go through the ViT
/// in one batch; the sentence, with <c>[ENC]</c> first, goes through a text encoder whose every layer cross-attends to
/// each image with its own attention (<see cref="BlipTextTwoImageModel"/>); a two-layer head
/// (<c>cls_head</c>: Linear, ReLU, Linear) maps the first token's state to [False, True] logits. Field names are the
/// keys of BLIP's NLVR checkpoints after the ViT rename (<c>visual_encoder</c> -&gt; <c>vision_model</c>).
/// </summary>
public sealed class BlipForNlvr : Module
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipNlvrConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Image encoder, shared by both images.</summary>
    public BlipVisionModel vision_model;
    /// <summary>Text encoder with two cross-attentions per layer.</summary>
    public BlipTextTwoImageModel text_encoder;
    /// <summary>Classifier: <c>0</c> Linear (H -&gt; H), <c>1</c> ReLU, <c>2</c> Linear (H -&gt; 2).</summary>
    public Sequential cls_head;
#pragma warning restore IDE1006

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>.</summary>
    public BlipForNlvr(BlipNlvrConfig config) : base(nameof(BlipForNlvr))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config.Normalized();
        Config.Validate();
        var text = Config.Blip.TextConfig;
        vision_model = new BlipVisionModel(Config.Blip.VisionConfig);
        text_encoder = new BlipTextTwoImageModel(text, Config.MergeFromLayer);
        cls_head = Sequential(
            ("0", Linear(text.HiddenSize, text.HiddenSize)),
            ("1", ReLU()),
            ("2", Linear(text.HiddenSize, 2)));
        RegisterComponents();
    }

    /// <summary>
    /// Classifies B (sentence, image pair) items as BLIP_NLVR's forward does: <c>cat([image0, image1])</c> through the
    /// ViT, split back into halves; column 0 of <paramref name="inputIds"/> replaced by <c>[ENC]</c>
    /// (<see cref="BlipNlvrConfig.EncTokenId"/>; the caller's tensor is not changed); the text encoded against both
    /// images; <c>cls_head</c> on the first token's state.
    /// </summary>
    /// <param name="pixelValues0">(B, 3, S, S) the first image of each pair.</param>
    /// <param name="pixelValues1">(B, 3, S, S) the second image of each pair.</param>
    /// <param name="inputIds">(B, T) token ids as the tokenizer gives them (<c>[CLS] ... [SEP] [PAD]*</c>).</param>
    /// <param name="attentionMask">(B, T) 1 for tokens, 0 for padding; null means all ones.</param>
    public NlvrOutput Forward(Tensor pixelValues0, Tensor pixelValues1, Tensor inputIds, Tensor? attentionMask = null)
    {
        long b = pixelValues0.shape[0];
        if (pixelValues1.shape[0] != b || inputIds.shape[0] != b)
            throw new ArgumentException($"NLVR needs one sentence per image pair: {pixelValues0.shape[0]} first images, {pixelValues1.shape[0]} second images, {inputIds.shape[0]} sentences.");
        using var pixels = cat([pixelValues0, pixelValues1], dim: 0);              // (2B, 3, S, S)
        var imageEmbeds = vision_model.Encode(pixels);                             // (2B, 1+N, Dv)
        using var image0 = imageEmbeds.narrow(0, 0, b);                            // (B, 1+N, Dv)
        using var image1 = imageEmbeds.narrow(0, b, b);                            // (B, 1+N, Dv)
        using var ids = EncoderInputIds(inputIds);                                 // (B, T)
        using var states = text_encoder.Forward(ids, attentionMask, image0, image1); // (B, T, H)
        var hidden = states.select(1, 0);                                          // (B, H)
        var logits = cls_head.forward(hidden);                                     // (B, 2)
        return new NlvrOutput(logits, hidden, imageEmbeds);
    }

    /// <summary>Predicted labels (B): 1 where the True logit is the larger (BLIP's <c>prediction.max(1)</c>; a tie gives 0).</summary>
    public static Tensor Predictions(Tensor logits) => logits.argmax(1);

    /// <summary>The text as the encoder reads it: a copy of <paramref name="inputIds"/> (B, T) with column 0 set to <c>[ENC]</c>.</summary>
    public Tensor EncoderInputIds(Tensor inputIds)
    {
        var ids = inputIds.to_type(ScalarType.Int64, copy: true);
        using var first = ids.select(1, 0);
        first.fill_(Config.EncTokenId);
        return ids;
    }
}
