using BlipSharp.Training.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Pretraining;

/// <summary>
/// One pretraining batch: images and their tokenized captions (BLIP: <c>padding='max_length', truncation=True,
/// max_length=30</c>, so rows are <c>[CLS] ... [SEP] [PAD]*</c>). The batch does not own the tensors.
/// </summary>
/// <param name="PixelValues">(B, 3, S, S) normalised pixels.</param>
/// <param name="InputIds">(B, T) int64 token ids, [CLS] first.</param>
/// <param name="AttentionMask">(B, T) 1 for tokens, 0 for padding.</param>
/// <param name="ImageIds">(B) int64 image ids (same id = positive pair), for models with an id queue; else null.</param>
public sealed record PretrainingBatch(Tensor PixelValues, Tensor InputIds, Tensor AttentionMask, Tensor? ImageIds = null);

/// <summary>Options of <see cref="PretrainingTask"/>; the defaults are BLIP_Pretrain's.</summary>
public sealed record PretrainingTaskOptions
{
    /// <summary>Added to the ITM sampling probabilities before positives are zeroed (BLIP_Pretrain: 1e-4; retrieval: 0).</summary>
    public double NegativeWeightEpsilon { get; init; } = HardNegativeMining.PretrainingEpsilon;

    /// <summary>Weight of each loss in the total (BLIP: 1, 1, 1).</summary>
    public double ItcWeight { get; init; } = 1.0;

    /// <summary>Weight of the ITM loss in the total.</summary>
    public double ItmWeight { get; init; } = 1.0;

    /// <summary>Weight of the LM loss in the total.</summary>
    public double LmWeight { get; init; } = 1.0;
}

/// <summary>
/// BLIP's pretraining objective on a <see cref="BlipPretrainingModel"/>: <see cref="Step"/> runs what
/// <c>BLIP_Pretrain.forward(image, caption, alpha)</c> runs, in its order (clamp the temperature; online features;
/// momentum update; momentum features; ITC against the queues; enqueue; ITM with hard negatives; LM), and returns
/// the three losses, their sum and the intermediate values. The caller backpropagates <see cref="PretrainingLosses.Total"/>
/// and steps the optimizer; a trainer adds scheduling, logging and checkpoints on top.
/// </summary>
public sealed class PretrainingTask
{
    private readonly ContrastiveLoss _contrastive = new();
    private readonly MatchingLoss _matching = new();
    private readonly LanguageModelingLoss _languageModeling;

    /// <summary>Creates the task.</summary>
    /// <param name="model">The model trained (its momentum encoders and queues are updated by every step).</param>
    /// <param name="sampler">Draws the ITM hard negatives (default: multinomial with torch's generator).</param>
    /// <param name="options">Loss options (default: BLIP's).</param>
    public PretrainingTask(BlipPretrainingModel model, IHardNegativeSampler? sampler = null, PretrainingTaskOptions? options = null)
    {
        if (model.text_decoder is null)
            throw new ArgumentException("the pretraining objective needs the text decoder (LM loss); this model was built with text_decoder: false (use RetrievalTask).", nameof(model));
        Model = model;
        Sampler = sampler ?? new MultinomialNegativeSampler();
        Options = options ?? new PretrainingTaskOptions();
        _languageModeling = new LanguageModelingLoss(model.Config.LabelSmoothing);
    }

    /// <summary>The model.</summary>
    public BlipPretrainingModel Model { get; }

    /// <summary>The hard-negative sampler (replaceable, e.g. to replay recorded draws).</summary>
    public IHardNegativeSampler Sampler { get; set; }

    /// <summary>The options.</summary>
    public PretrainingTaskOptions Options { get; }

    /// <summary>
    /// The forward pass of one training step with its side effects on the model's state (temperature clamp,
    /// momentum update, enqueue). Call inside the step's dispose scope; the returned tensors belong to it.
    /// </summary>
    /// <param name="batch">Images and captions.</param>
    /// <param name="alpha">Weight of the momentum soft targets (BLIP: 0.4, ramped up, see <see cref="AlphaSchedule"/>).</param>
    public PretrainingLosses Step(PretrainingBatch batch, double alpha)
    {
        var model = Model;
        long b = batch.PixelValues.shape[0];
        if (batch.InputIds.shape[0] != b || batch.AttentionMask.shape[0] != b)
            throw new ArgumentException($"the batch has {b} images but {batch.InputIds.shape[0]} captions.", nameof(batch));
        if (model.idx_queue is not null && batch.ImageIds is null)
            throw new ArgumentException("the model keeps an id queue: the batch needs image ids.", nameof(batch));
        var ids = model.idx_queue is null ? null : batch.ImageIds;
        using var scope = NewDisposeScope();

        // ITC
        model.ClampTemperature();
        var imageEmbeds = model.EncodeImage(batch.PixelValues);                         // (B, 1+N, Dv)
        var imageFeatures = model.ImageFeatures(imageEmbeds);                           // (B, E)
        var textStates = model.EncodeText(batch.InputIds, batch.AttentionMask);         // (B, T, H)
        var textFeatures = model.TextFeatures(textStates);                              // (B, E)
        model.MomentumUpdate();
        var momentum = model.EncodeMomentum(batch.PixelValues, batch.InputIds, batch.AttentionMask);
        var contrastive = _contrastive.Forward(imageFeatures, textFeatures, momentum.ImageFeatures, momentum.TextFeatures,
            model.image_queue, model.text_queue, model.temp, alpha, ids, model.idx_queue);
        model.DequeueAndEnqueue(momentum.ImageFeatures, momentum.TextFeatures, ids);

        // ITM: [ENC] first; hard negatives drawn from the in-batch columns (B, B) of the ITC logits, i.e. online
        // features against the momentum ones, as BLIP_Pretrain does (BLIP_Retrieval uses online against online).
        var encoderIds = ReplaceFirstToken(batch.InputIds, model.Config.EncTokenId);
        Tensor weightsT2I, weightsI2T;
        using (no_grad())
        {
            weightsT2I = HardNegativeMining.SamplingWeights(contrastive.SimTextToImage.narrow(1, 0, b), ids, Options.NegativeWeightEpsilon);
            weightsI2T = HardNegativeMining.SamplingWeights(contrastive.SimImageToText.narrow(1, 0, b), ids, Options.NegativeWeightEpsilon);
        }
        var (matchDetails, matchLoss) = MatchWithHardNegatives(model, _matching, Sampler, encoderIds, batch.AttentionMask, imageEmbeds, weightsT2I, weightsI2T);

        // LM: [DEC] first, padding ignored.
        var decoderIds = ReplaceFirstToken(batch.InputIds, model.Config.DecTokenId);
        var decoderTargets = LanguageModelingLoss.Targets(decoderIds, model.Config.PadTokenId);
        var logits = model.Decode(decoderIds, batch.AttentionMask, imageEmbeds);        // (B, T, V)
        var languageModeling = _languageModeling.Forward(logits, decoderTargets);

        var total = Options.ItcWeight * contrastive.Loss + Options.ItmWeight * matchLoss + Options.LmWeight * languageModeling.Loss;
        var result = new PretrainingLosses(total, contrastive.Loss, matchLoss, languageModeling.Loss,
            new PretrainingFeatures(imageEmbeds, imageFeatures, textFeatures, momentum.ImageFeatures, momentum.TextFeatures),
            contrastive, matchDetails, languageModeling);
        result.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>
    /// ITM with one drawn hard negative per row, shared by pretraining and retrieval fine-tuning: draws the negatives
    /// from the sampling weights (images for each text first, then texts for each image, BLIP's order), runs one
    /// image-grounded pass over <c>[positives; (text b, negative image); (negative text, image b)]</c> and takes the
    /// cross-entropy against <c>[1]*B + [0]*2B</c>. Returns the details and the scalar loss.
    /// </summary>
    internal static (MatchingDetails Details, Tensor Loss) MatchWithHardNegatives(BlipPretrainingModel model, MatchingLoss loss, IHardNegativeSampler sampler,
        Tensor encoderIds, Tensor attentionMask, Tensor imageEmbeds, Tensor weightsT2I, Tensor weightsI2T)
    {
        long b = encoderIds.shape[0];
        var negatives = sampler.Sample(weightsT2I, weightsI2T);
        var imageEmbedsNeg = imageEmbeds.index_select(0, negatives.ImageIndices);       // (B, 1+N, Dv)
        var textIdsNeg = encoderIds.index_select(0, negatives.TextIndices);             // (B, T)
        var textMaskNeg = attentionMask.index_select(0, negatives.TextIndices);         // (B, T)
        // One pass over [positives; (text b, negative image); (negative text, image b)], BLIP's row order.
        var matchIds = cat([encoderIds, encoderIds, textIdsNeg], 0);                    // (3B, T)
        var matchMask = cat([attentionMask, attentionMask, textMaskNeg], 0);
        var matchImages = cat([imageEmbeds, imageEmbedsNeg, imageEmbeds], 0);           // (3B, 1+N, Dv)
        var matchStates = model.EncodeMultimodal(matchIds, matchMask, matchImages);     // (3B, T, H)
        var matchLogits = model.MatchingLogits(matchStates);                            // (3B, 2)
        var matching = loss.Forward(matchLogits, b);
        return (new MatchingDetails(matchLogits, matching.Labels, weightsT2I, weightsI2T, negatives), matching.Loss);
    }

    /// <summary>A copy of <paramref name="inputIds"/> (B, T) with column 0 set to <paramref name="tokenId"/> ([ENC] or [DEC]).</summary>
    public static Tensor ReplaceFirstToken(Tensor inputIds, long tokenId)
    {
        var ids = inputIds.to_type(ScalarType.Int64).clone();
        using var first = ids.select(1, 0);
        first.fill_(tokenId);
        return ids;
    }
}

/// <summary>The features of one step.</summary>
/// <param name="ImageEmbeds">(B, 1+N, Dv) online image states.</param>
/// <param name="ImageFeatures">(B, E) normalised online image features.</param>
/// <param name="TextFeatures">(B, E) normalised online text features.</param>
/// <param name="ImageFeaturesM">(B, E) momentum image features (after this step's momentum update).</param>
/// <param name="TextFeaturesM">(B, E) momentum text features.</param>
public sealed record PretrainingFeatures(Tensor ImageEmbeds, Tensor ImageFeatures, Tensor TextFeatures, Tensor ImageFeaturesM, Tensor TextFeaturesM)
{
    internal IEnumerable<Tensor> Tensors() => [ImageEmbeds, ImageFeatures, TextFeatures, ImageFeaturesM, TextFeaturesM];
}

/// <summary>The ITM part of one step.</summary>
/// <param name="Logits">(3B, 2) ITM logits: B positives, B (text, negative image), B (negative text, image).</param>
/// <param name="Labels">(3B) int64: 1 then 0.</param>
/// <param name="WeightsTextToImage">(B, B) sampling weights of the negative images.</param>
/// <param name="WeightsImageToText">(B, B) sampling weights of the negative texts.</param>
/// <param name="Negatives">The drawn negatives.</param>
public sealed record MatchingDetails(Tensor Logits, Tensor Labels, Tensor WeightsTextToImage, Tensor WeightsImageToText, HardNegatives Negatives)
{
    internal IEnumerable<Tensor> Tensors() => [Logits, Labels, WeightsTextToImage, WeightsImageToText, Negatives.ImageIndices, Negatives.TextIndices];
}

/// <summary>
/// The result of <see cref="PretrainingTask.Step"/>: the total (what BLIP backpropagates), each loss, and the
/// values behind them. <see cref="ToLogValues"/> gives the scalars to log.
/// </summary>
/// <param name="Total">Scalar: ITC + ITM + LM (weighted by the task options).</param>
/// <param name="Itc">Scalar image-text contrastive loss.</param>
/// <param name="Itm">Scalar image-text matching loss.</param>
/// <param name="Lm">Scalar language-modelling loss.</param>
/// <param name="Features">Online and momentum features.</param>
/// <param name="Contrastive">Similarities, soft targets and both ITC directions.</param>
/// <param name="Matching">ITM logits, sampling weights and the drawn negatives.</param>
/// <param name="LanguageModeling">Per-token LM losses.</param>
public sealed record PretrainingLosses(Tensor Total, Tensor Itc, Tensor Itm, Tensor Lm, PretrainingFeatures Features,
    ContrastiveLossOutput Contrastive, MatchingDetails Matching, LanguageModelingLossOutput LanguageModeling) : IDisposable
{
    /// <summary>The scalars to log: <c>loss</c>, <c>loss_ita</c>, <c>loss_itm</c>, <c>loss_lm</c> (BLIP's names).</summary>
    public IReadOnlyDictionary<string, double> ToLogValues() => new Dictionary<string, double>
    {
        ["loss"] = Total.ToDouble(),
        ["loss_ita"] = Itc.ToDouble(),
        ["loss_itm"] = Itm.ToDouble(),
        ["loss_lm"] = Lm.ToDouble(),
    };

    private IEnumerable<Tensor> Tensors() =>
        new[] { Total, Itc, Itm, Lm }
            .Concat(Features.Tensors())
            .Concat([Contrastive.LossImageToText, Contrastive.LossTextToImage, Contrastive.SimImageToText, Contrastive.SimTextToImage,
                Contrastive.SimImageToTextM, Contrastive.SimTextToImageM, Contrastive.TargetsImageToText, Contrastive.TargetsTextToImage])
            .Concat(Matching.Tensors())
            .Concat([LanguageModeling.PerToken])
            .Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>();

    internal void MoveToOuterDisposeScope()
    {
        foreach (var t in Tensors()) t.MoveToOuterDisposeScope();
    }

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors()) t.Dispose();
    }
}
