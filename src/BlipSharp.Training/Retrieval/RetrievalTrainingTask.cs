using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>
/// Retrieval fine-tuning as a trainer task (salesforce/BLIP <c>train_retrieval.py</c>): each loader batch of
/// Karpathy-format pairs becomes a <see cref="RetrievalBatch"/> (captions tokenised with <c>padding='max_length',
/// truncation=True, max_length=35</c>; the image id of each pair is its entry's <see cref="ImageTextEntry.ImageIndex"/>,
/// BLIP's <c>img_ids[ann['image_id']]</c>), alpha ramps as <c>alpha * min(1, i / len(loader))</c> in the first epoch only
/// (<see cref="AlphaSchedule.FineTuning"/>), and <see cref="RetrievalTask.Step"/> computes ITC (same-id positives) +
/// ITM (id-masked hard negatives). Logs BLIP's <c>loss_ita</c> and <c>loss_itm</c>, plus <c>alpha</c> and <c>temp</c>.
/// The optimizer gets every trainable parameter (not the momentum copies), decayed, as BLIP's AdamW.
/// </summary>
public sealed class RetrievalTrainingTask : ITrainingTask<ImageTextBatch>
{
    private readonly RetrievalTask _task;
    private readonly TokenizerEncodeOptions _textOptions;

    /// <summary>Wraps a retrieval model (disposed with the task) and its tokenizer.</summary>
    /// <param name="model">A model built with <see cref="BlipPretrainingConfig.ForRetrieval"/> (id queue, no decoder).</param>
    /// <param name="tokenizer">The BERT tokenizer with <c>[ENC]</c>.</param>
    /// <param name="alpha">The final weight of the momentum soft targets (BLIP: 0.4).</param>
    /// <param name="maxTextLength">Captions are padded and cut to this many tokens (BLIP: 35).</param>
    public RetrievalTrainingTask(BlipPretrainingModel model, BlipTokenizer tokenizer, double alpha = AlphaSchedule.BlipAlpha, int maxTextLength = 35)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "must be within 0..1.");
        if (maxTextLength < 2) throw new ArgumentOutOfRangeException(nameof(maxTextLength), maxTextLength, "must leave room for [CLS] and [SEP].");
        _task = new RetrievalTask(model);
        Tokenizer = tokenizer;
        Alpha = alpha;
        _textOptions = new TokenizerEncodeOptions { Padding = PaddingStrategy.MaxLength, Truncation = true, MaxLength = maxTextLength };
    }

    /// <summary>The retrieval model.</summary>
    public BlipPretrainingModel RetrievalModel => _task.Model;

    /// <inheritdoc />
    public nn.Module Model => _task.Model;

    /// <summary>The tokenizer.</summary>
    public BlipTokenizer Tokenizer { get; }

    /// <summary>The final alpha.</summary>
    public double Alpha { get; }

    /// <summary>The batch <see cref="RetrievalTask.Step"/> reads: pixels in <paramref name="computeType"/>, token ids, image ids.</summary>
    /// <param name="batch">A loader batch whose entries carry their image index.</param>
    /// <param name="computeType">The model's float type.</param>
    public RetrievalBatch ToRetrievalBatch(ImageTextBatch batch, ScalarType computeType)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var text = Tokenizer.EncodeToTensors(batch.Captions, _textOptions);                 // (B, T) ids and mask
        var ids = tensor(batch.Entries.Select(e => (long)e.ImageIndex).ToArray());           // (B) BLIP's idx
        return new RetrievalBatch(batch.Pixels.to_type(computeType), text.InputIds, text.AttentionMask, ids);
    }

    /// <inheritdoc />
    public IReadOnlyList<ParameterGroup> ParameterGroups(double weightDecay) =>
        Optimization.ParameterGroups.Build(_task.Model.TrainableParameters(), weightDecay);

    /// <inheritdoc />
    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(context);
        double alpha = AlphaSchedule.FineTuning(context.Epoch, context.BatchInEpoch, context.BatchesPerEpoch, Alpha);
        var losses = _task.Step(ToRetrievalBatch(batch, context.ComputeType), alpha);
        return TrainingStepOutput.Of(losses.Total, ("loss_ita", losses.Itc), ("loss_itm", losses.Itm),
            ("alpha", tensor(alpha)), ("temp", _task.Model.temp.detach().clone()));
    }

    /// <inheritdoc />
    public void Dispose() => _task.Model.Dispose();
}
