using BlipSharp.Training.Losses;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>
/// One retrieval fine-tuning batch: images, their tokenized captions (BLIP: <c>padding='max_length',
/// truncation=True, max_length=35</c>) and the image id of each pair (pairs with the same id are positives of each
/// other, in the batch and in the id queue). The batch does not own the tensors.
/// </summary>
/// <param name="PixelValues">(B, 3, S, S) normalised pixels.</param>
/// <param name="InputIds">(B, T) int64 token ids, [CLS] first.</param>
/// <param name="AttentionMask">(B, T) 1 for tokens, 0 for padding.</param>
/// <param name="ImageIds">(B) int64 image ids (BLIP's <c>idx</c>).</param>
public sealed record RetrievalBatch(Tensor PixelValues, Tensor InputIds, Tensor AttentionMask, Tensor ImageIds);

/// <summary>
/// BLIP's retrieval fine-tuning objective (salesforce/BLIP <c>BLIP_Retrieval.forward(image, caption, alpha, idx)</c>
/// with <c>negative_all_rank</c> on one process) on a <see cref="BlipPretrainingModel"/> built with
/// <see cref="BlipPretrainingConfig.ForRetrieval"/>: clamp the temperature; online features; momentum update;
/// momentum features; ITC against the queues where every candidate with the batch row's image id is a positive
/// (<see cref="ContrastiveLoss.Positives"/>); enqueue features and ids; ITM with hard negatives drawn from the
/// in-batch online similarities <c>softmax(image_feat @ text_feat.T / temp)</c> with every same-id pair masked out
/// and no epsilon. No LM loss. The caller backpropagates <see cref="RetrievalLosses.Total"/> (ITC + ITM, as
/// <c>train_retrieval.py</c>) and steps the optimizer.
/// </summary>
public sealed class RetrievalTask
{
    private readonly ContrastiveLoss _contrastive = new();
    private readonly MatchingLoss _matching = new();

    /// <summary>Creates the task.</summary>
    /// <param name="model">A model with an id queue (<see cref="BlipPretrainingConfig.ForRetrieval"/>); its momentum encoders and queues are updated by every step.</param>
    /// <param name="sampler">Draws the ITM hard negatives (default: multinomial with torch's generator); tests inject recorded draws.</param>
    public RetrievalTask(BlipPretrainingModel model, IHardNegativeSampler? sampler = null)
    {
        if (model.idx_queue is null)
            throw new ArgumentException("retrieval fine-tuning needs a model with an id queue (config id_queue: true, see BlipPretrainingConfig.ForRetrieval).", nameof(model));
        Model = model;
        Sampler = sampler ?? new MultinomialNegativeSampler();
    }

    /// <summary>The model.</summary>
    public BlipPretrainingModel Model { get; }

    /// <summary>The hard-negative sampler (replaceable, e.g. to replay recorded draws).</summary>
    public IHardNegativeSampler Sampler { get; set; }

    /// <summary>
    /// The forward pass of one training step with its side effects on the model's state (temperature clamp,
    /// momentum update, enqueue of features and ids). The returned tensors are moved to the caller's dispose scope.
    /// </summary>
    /// <param name="batch">Images, captions and image ids.</param>
    /// <param name="alpha">Weight of the momentum soft targets (train_retrieval.py: 0.4, ramped over the first epoch).</param>
    public RetrievalLosses Step(RetrievalBatch batch, double alpha)
    {
        var model = Model;
        long b = batch.PixelValues.shape[0];
        if (batch.InputIds.shape[0] != b || batch.AttentionMask.shape[0] != b || batch.ImageIds.numel() != b)
            throw new ArgumentException(
                $"the batch has {b} images but {batch.InputIds.shape[0]} captions, {batch.AttentionMask.shape[0]} masks and {batch.ImageIds.numel()} image ids.", nameof(batch));
        using var scope = NewDisposeScope();
        var ids = batch.ImageIds.to(ScalarType.Int64, batch.PixelValues.device).view(-1); // (B)

        // ITC with id positives (the id queue as it is before this batch is enqueued).
        model.ClampTemperature();
        var imageEmbeds = model.EncodeImage(batch.PixelValues);                         // (B, 1+N, Dv)
        var imageFeatures = model.ImageFeatures(imageEmbeds);                           // (B, E)
        var textStates = model.EncodeText(batch.InputIds, batch.AttentionMask);         // (B, T, H)
        var textFeatures = model.TextFeatures(textStates);                              // (B, E)
        var positives = ContrastiveLoss.Positives(b, b + model.Config.QueueSize, ids, model.idx_queue, imageFeatures.dtype, imageFeatures.device); // (B, B+Q)
        model.MomentumUpdate();
        var momentum = model.EncodeMomentum(batch.PixelValues, batch.InputIds, batch.AttentionMask);
        var contrastive = _contrastive.Forward(imageFeatures, textFeatures, momentum.ImageFeatures, momentum.TextFeatures,
            model.image_queue, model.text_queue, model.temp, alpha, ids, model.idx_queue);
        model.DequeueAndEnqueue(momentum.ImageFeatures, momentum.TextFeatures, ids);

        // ITM: negatives from the in-batch ONLINE similarities (BLIP_Retrieval; BLIP_Pretrain uses the ITC logits
        // against the momentum features), same-id pairs masked, no epsilon.
        var encoderIds = PretrainingTask.ReplaceFirstToken(batch.InputIds, model.Config.EncTokenId);
        Tensor simI2T, simT2I, sameImage, weightsT2I, weightsI2T;
        using (no_grad())
        {
            var t = model.temp.detach();
            simI2T = imageFeatures.matmul(textFeatures.t()) / t;                         // (B, B)
            simT2I = textFeatures.matmul(imageFeatures.t()) / t;                         // (B, B)
            sameImage = ids.view(-1, 1).eq(ids.view(1, -1));                             // (B, B)
            weightsT2I = HardNegativeMining.SamplingWeights(simT2I, ids, epsilon: 0);
            weightsI2T = HardNegativeMining.SamplingWeights(simI2T, ids, epsilon: 0);
        }
        var (matching, matchLoss) = PretrainingTask.MatchWithHardNegatives(model, _matching, Sampler, encoderIds, batch.AttentionMask, imageEmbeds, weightsT2I, weightsI2T);

        var total = contrastive.Loss + matchLoss;
        var result = new RetrievalLosses(total, contrastive.Loss, matchLoss,
            new PretrainingFeatures(imageEmbeds, imageFeatures, textFeatures, momentum.ImageFeatures, momentum.TextFeatures),
            positives, contrastive, encoderIds, simI2T, simT2I, sameImage, matching);
        result.MoveToOuterDisposeScope();
        return result;
    }
}

/// <summary>The result of <see cref="RetrievalTask.Step"/>: the total BLIP backpropagates, each loss and the values behind them.</summary>
/// <param name="Total">Scalar ITC + ITM.</param>
/// <param name="Itc">Scalar contrastive loss.</param>
/// <param name="Itm">Scalar matching loss.</param>
/// <param name="Features">Online and momentum features.</param>
/// <param name="Positives">(B, B+Q) ground-truth targets: same-id candidates (batch, then the id queue before this step's enqueue), each row summing to 1.</param>
/// <param name="Contrastive">Similarities, soft targets and both ITC directions.</param>
/// <param name="EncoderInputIds">(B, T) caption ids with [ENC] first (the ITM inputs).</param>
/// <param name="MatchSimImageToText">(B, B) in-batch online image-to-text similarities / temp, the source of the negative-text weights.</param>
/// <param name="MatchSimTextToImage">(B, B) in-batch online text-to-image similarities / temp.</param>
/// <param name="SameImage">(B, B) bool: pairs that share an image id (never drawn as negatives).</param>
/// <param name="Matching">ITM logits, labels, sampling weights and the drawn negatives.</param>
public sealed record RetrievalLosses(Tensor Total, Tensor Itc, Tensor Itm, PretrainingFeatures Features, Tensor Positives,
    ContrastiveLossOutput Contrastive, Tensor EncoderInputIds, Tensor MatchSimImageToText, Tensor MatchSimTextToImage, Tensor SameImage,
    MatchingDetails Matching) : IDisposable
{
    /// <summary>The scalars to log: <c>loss</c>, <c>loss_ita</c>, <c>loss_itm</c> (BLIP's names).</summary>
    public IReadOnlyDictionary<string, double> ToLogValues() => new Dictionary<string, double>
    {
        ["loss"] = Total.ToDouble(),
        ["loss_ita"] = Itc.ToDouble(),
        ["loss_itm"] = Itm.ToDouble(),
    };

    private IEnumerable<Tensor> Tensors() =>
        new[] { Total, Itc, Itm, Positives, EncoderInputIds, MatchSimImageToText, MatchSimTextToImage, SameImage }
            .Concat(Features.Tensors())
            .Concat([Contrastive.LossImageToText, Contrastive.LossTextToImage, Contrastive.SimImageToText, Contrastive.SimTextToImage,
                Contrastive.SimImageToTextM, Contrastive.SimTextToImageM, Contrastive.TargetsImageToText, Contrastive.TargetsTextToImage])
            .Concat(Matching.Tensors())
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
