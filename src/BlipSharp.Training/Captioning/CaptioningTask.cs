using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Losses;
using BlipSharp.Training.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Captioning;

/// <summary>Options of <see cref="CaptioningTask"/>; the defaults are salesforce/BLIP's caption fine-tuning (<c>BLIP_Decoder</c>, COCO).</summary>
public sealed record CaptioningTaskOptions
{
    /// <summary>BLIP's caption prompt.</summary>
    public const string BlipPrompt = "a picture of ";

    /// <summary>
    /// Text put before every caption (BLIP: <c>"a picture of "</c>, with its trailing space; BLIP's COCO dataset
    /// prepends it). Its tokens are inputs but never targets. May be empty.
    /// </summary>
    public string Prompt { get; init; } = BlipPrompt;

    /// <summary>Prompt plus caption is cut to this many tokens, <c>[CLS]</c>/<c>[SEP]</c> included (BLIP: 40).</summary>
    public int MaxTextLength { get; init; } = 40;

    /// <summary>Label smoothing of the LM loss (BLIP's <c>BertLMHeadModel</c> hard-codes 0.1).</summary>
    public double LabelSmoothing { get; init; } = 0.1;

    /// <summary>Throws when a setting is out of range, naming it.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Prompt, nameof(Prompt));
        if (MaxTextLength < 3) throw new ArgumentOutOfRangeException(nameof(MaxTextLength), MaxTextLength, "must leave room for [DEC], one caption token and [SEP] (at least 3).");
        if (LabelSmoothing is < 0 or > 1 || double.IsNaN(LabelSmoothing)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, "must lie in [0, 1].");
    }
}

/// <summary>The decoder inputs and targets of one caption batch (<see cref="CaptioningTask.Tokenize"/>).</summary>
/// <param name="DecoderInputIds">(B, T) int64: <c>[DEC] prompt caption [SEP] [PAD]*</c>.</param>
/// <param name="AttentionMask">(B, T) int64: 1 for tokens, 0 for padding.</param>
/// <param name="Labels">(B, T) int64: the input ids, with -100 at padding and at the first <see cref="CaptioningTask.PromptLength"/> columns.</param>
public sealed record CaptioningText(Tensor DecoderInputIds, Tensor AttentionMask, Tensor Labels) : IDisposable
{
    /// <summary>Disposes the three tensors.</summary>
    public void Dispose()
    {
        DecoderInputIds.Dispose();
        AttentionMask.Dispose();
        Labels.Dispose();
    }
}

/// <summary>The loss of one caption batch and the values it was computed from (tensors of the caller's dispose scope).</summary>
/// <param name="Loss">Scalar: label-smoothed cross-entropy averaged over every supervised caption token of the batch.</param>
/// <param name="PerToken">(B, T-1): the smoothed cross-entropy of position t predicting token t+1, 0 where ignored.</param>
/// <param name="Logits">(B, T, V) next-token logits.</param>
/// <param name="ImageEmbeds">(B, 1+N, Dv) the ViT output the decoder cross-attends to.</param>
/// <param name="SequenceOutput">(B, T, H) the decoder's last hidden state (before the LM head).</param>
/// <param name="Text">The decoder inputs and labels.</param>
public sealed record CaptioningLosses(Tensor Loss, Tensor PerToken, Tensor Logits, Tensor ImageEmbeds, Tensor SequenceOutput, CaptioningText Text);

/// <summary>
/// BLIP's caption fine-tuning objective (<c>BLIP_Decoder.forward</c>) on a <see cref="BlipForConditionalGeneration"/>:
/// the text is <c>prompt + caption</c> (captions cleaned by the dataset with <c>pre_caption(caption, 30)</c>),
/// tokenised with padding to the longest, truncation at <see cref="CaptioningTaskOptions.MaxTextLength"/>; column 0
/// becomes <c>[DEC]</c>; labels are the ids with <c>[PAD]</c> and the first <see cref="PromptLength"/> columns
/// (<c>[DEC]</c> and the prompt) set to -100; the loss is the label-smoothed next-token cross-entropy
/// (<see cref="LanguageModelingLoss"/>). The constructor ties the LM head to the word embeddings
/// (<see cref="Modeling.Text.BlipTextLMHeadModel.TieWeights"/>) as BLIP's decoder has them, so their
/// gradients add up and the optimizer updates one tensor. As an <see cref="ITrainingTask{TBatch}"/> it trains on
/// <see cref="ImageTextBatch"/>es and logs <c>loss_lm</c>.
/// </summary>
public sealed class CaptioningTask : ITrainingTask<ImageTextBatch>
{
    private readonly LanguageModelingLoss _loss;
    private readonly TokenizerEncodeOptions _textOptions;

    /// <summary>Wraps a captioning model (disposed with the task) and the tokenizer its vocabulary comes from.</summary>
    /// <param name="model">The model; its LM head is tied to its word embeddings here (load weights before).</param>
    /// <param name="tokenizer">The BERT tokenizer with <c>[DEC]</c> as its bos token.</param>
    /// <param name="options">Prompt, text length and label smoothing (default: BLIP's).</param>
    public CaptioningTask(BlipForConditionalGeneration model, BlipTokenizer tokenizer, CaptioningTaskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        Options = options ?? new CaptioningTaskOptions();
        Options.Validate();
        CaptionModel = model;
        Tokenizer = tokenizer;
        _loss = new LanguageModelingLoss(Options.LabelSmoothing);
        _textOptions = new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest, Truncation = true, MaxLength = Options.MaxTextLength };
        PromptLength = PromptTokenCount(tokenizer, Options.Prompt);
        if (PromptLength + 2 > Options.MaxTextLength)
            throw new ArgumentException($"the prompt '{Options.Prompt}' takes {PromptLength} tokens with [DEC]: nothing of a caption fits in max length {Options.MaxTextLength}.", nameof(options));
        model.text_decoder.TieWeights();
    }

    /// <summary>The captioning model.</summary>
    public BlipForConditionalGeneration CaptionModel { get; }

    /// <inheritdoc />
    public nn.Module Model => CaptionModel;

    /// <summary>The tokenizer.</summary>
    public BlipTokenizer Tokenizer { get; }

    /// <summary>The options.</summary>
    public CaptioningTaskOptions Options { get; }

    /// <summary>
    /// Leading columns that are never targets: <c>len(tokenizer(prompt).input_ids) - 1</c>, i.e. <c>[DEC]</c> plus the
    /// prompt's tokens (BLIP: 4 for <c>[DEC] a picture of</c>). The first supervised token is the caption's first.
    /// </summary>
    public int PromptLength { get; }

    /// <summary><c>len(tokenizer(prompt).input_ids) - 1</c>: the start token plus the prompt's word pieces.</summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="prompt">The prompt ("" gives 1: only the start token).</param>
    public static int PromptTokenCount(BlipTokenizer tokenizer, string prompt)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        return tokenizer.Encode(prompt).Length - 1;
    }

    /// <summary>
    /// The decoder inputs and labels of <paramref name="captions"/> (already cleaned, without the prompt): the prompt
    /// is prepended to each, then tokenised (padding longest, truncation, max length), column 0 set to <c>[DEC]</c>.
    /// </summary>
    /// <param name="captions">One caption per image.</param>
    /// <param name="device">Where the tensors go (default CPU).</param>
    public CaptioningText Tokenize(IReadOnlyList<string> captions, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(captions);
        if (captions.Count == 0) throw new ArgumentException("no captions.", nameof(captions));
        for (int i = 0; i < captions.Count; i++)
            if (captions[i] is null) throw new ArgumentException($"caption {i} is null.", nameof(captions));
        using var scope = NewDisposeScope();
        var texts = captions.Select(c => Options.Prompt + c).ToList();
        var encoded = Tokenizer.EncodeToTensors(texts, _textOptions, device);              // (B, T) [CLS] ... [SEP] [PAD]*
        var ids = encoded.InputIds.clone();
        using (var first = ids.select(1, 0)) first.fill_(Tokenizer.BosTokenId);             // column 0: [CLS] -> [DEC]
        var labels = LanguageModelingLoss.Targets(ids, Tokenizer.PadTokenId);               // (B, T), [PAD] -> -100
        int prompt = (int)Math.Min(PromptLength, labels.shape[1]);
        using (var head = labels.narrow(1, 0, prompt)) head.fill_(LanguageModelingLoss.IgnoreIndex); // [DEC] + prompt: inputs only
        return new CaptioningText(ids.MoveToOuterDisposeScope(), encoded.AttentionMask.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The loss of one batch (<c>BLIP_Decoder.forward(image, caption)</c>). Call inside the step's dispose scope
    /// with autograd on; the returned tensors belong to it.
    /// </summary>
    /// <param name="pixelValues">(B, 3, S, S) normalised images, in the model's dtype.</param>
    /// <param name="captions">B cleaned captions without the prompt.</param>
    public CaptioningLosses Forward(Tensor pixelValues, IReadOnlyList<string> captions)
    {
        ArgumentNullException.ThrowIfNull(pixelValues);
        ArgumentNullException.ThrowIfNull(captions);
        if (pixelValues.dim() != 4 || pixelValues.shape[0] != captions.Count)
            throw new ArgumentException($"pixel values ({string.Join(", ", pixelValues.shape)}) must be (B, 3, S, S) with B = {captions.Count} captions.", nameof(pixelValues));
        var text = Tokenize(captions, pixelValues.device);
        var imageEmbeds = CaptionModel.EncodeImage(pixelValues);                                            // (B, 1+N, Dv)
        var decoded = CaptionModel.text_decoder.Forward(text.DecoderInputIds, text.AttentionMask, imageEmbeds); // logits (B, T, V)
        var loss = _loss.Forward(decoded.Logits, text.Labels);
        return new CaptioningLosses(loss.Loss, loss.PerToken, decoded.Logits, imageEmbeds, decoded.LastHiddenState, text);
    }

    /// <inheritdoc />
    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(context);
        var pixels = batch.Pixels.to_type(context.ComputeType);                                          // (B, 3, S, S)
        var losses = Forward(pixels, batch.Captions);
        return TrainingStepOutput.Of(losses.Loss, ("loss_lm", losses.Loss.detach()));
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => CaptionModel.Dispose();
}
