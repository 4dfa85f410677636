using BlipSharp.Modeling;
using BlipSharp.Training.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Nlvr;

/// <summary>
/// One NLVR2 batch: B sentences, each with its pair of images, and whether the sentence is true of the pair. The
/// batch does not own the tensors. BLIP's NLVR training set swaps the two images (and left/right in the sentence) at
/// random; that belongs to the data pipeline, not here.
/// </summary>
/// <param name="PixelValues0">(B, 3, S, S) the first (left) image of each pair.</param>
/// <param name="PixelValues1">(B, 3, S, S) the second (right) image of each pair.</param>
/// <param name="InputIds">(B, T) int64 token ids (BLIP: <c>padding='longest'</c>); column 0 becomes <c>[ENC]</c> in the model.</param>
/// <param name="AttentionMask">(B, T) 1 for tokens, 0 for padding.</param>
/// <param name="Targets">(B) int64: 1 when the sentence is true ('True' in NLVR2's labels), else 0.</param>
public sealed record NlvrBatch(Tensor PixelValues0, Tensor PixelValues1, Tensor InputIds, Tensor AttentionMask, Tensor Targets);

/// <summary>The loss of one NLVR2 batch and the model output it came from.</summary>
/// <param name="Loss">Scalar cross-entropy of the logits with the targets (mean over the batch).</param>
/// <param name="Output">The model's logits, [ENC] states and image states.</param>
public sealed record NlvrLoss(Tensor Loss, NlvrOutput Output) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Loss.Dispose();
        Output.Dispose();
    }
}

/// <summary>
/// NLVR2 fine-tuning on a <see cref="BlipForNlvr"/>, as salesforce/BLIP's <c>train_nlvr.py</c>: the loss is
/// <c>F.cross_entropy(prediction, targets)</c>, and the evaluation metric the share of items whose arg-max prediction
/// equals the target (<see cref="Accuracy"/>). As an <see cref="ITrainingTask{TBatch}"/> it logs the batch accuracy as
/// <c>acc</c>.
/// </summary>
public sealed class NlvrTask : ITrainingTask<NlvrBatch>
{
    /// <summary>Creates the task around <paramref name="model"/> (disposed with the task).</summary>
    public NlvrTask(BlipForNlvr model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Network = model;
    }

    /// <summary>The model being trained.</summary>
    public BlipForNlvr Network { get; }

    /// <inheritdoc/>
    public nn.Module Model => Network;

    /// <summary>
    /// The forward pass and loss of one batch (BLIP_NLVR's <c>forward(image, text, targets, train=True)</c>). Call inside
    /// the caller's dispose scope; the returned tensors belong to it.
    /// </summary>
    /// <exception cref="ArgumentException">The batch's parts disagree on B, or a target is not 0 or 1.</exception>
    public NlvrLoss Forward(NlvrBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long b = batch.PixelValues0.shape[0];
        if (batch.Targets.dim() != 1 || batch.Targets.shape[0] != b)
            throw new ArgumentException($"the batch has {b} image pairs but targets of shape [{string.Join(", ", batch.Targets.shape)}] (expected [{b}]).", nameof(batch));
        using var targets = batch.Targets.to_type(ScalarType.Int64);               // (B)
        using (var below = targets.lt(0))
        using (var above = targets.gt(1))
        using (var outside = below.logical_or(above))
        using (var any = outside.any())
        {
            if (any.ToBoolean())
                throw new ArgumentException($"NLVR targets must be 0 (False) or 1 (True); got [{string.Join(", ", targets.data<long>().ToArray())}].", nameof(batch));
        }
        var output = Network.Forward(batch.PixelValues0, batch.PixelValues1, batch.InputIds, batch.AttentionMask);
        using var logits = output.Logits.to_type(ScalarType.Float32);             // (B, 2)
        var loss = nn.functional.cross_entropy(logits, targets);
        return new NlvrLoss(loss, output);
    }

    /// <summary>One training step for the <see cref="Trainer{TBatch}"/>: the loss, and the batch accuracy as <c>acc</c>.</summary>
    public TrainingStepOutput Step(NlvrBatch batch, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var converted = batch with
        {
            PixelValues0 = batch.PixelValues0.to_type(context.ComputeType),
            PixelValues1 = batch.PixelValues1.to_type(context.ComputeType),
        };
        var result = Forward(converted);
        using var logits = result.Output.Logits.detach();
        var accuracy = Accuracy(logits, batch.Targets);
        return TrainingStepOutput.Of(result.Loss, ("acc", accuracy));
    }

    /// <summary>
    /// NLVR2 accuracy: the mean over items of <c>argmax(logits) == target</c> (BLIP's <c>train_nlvr.evaluate</c>:
    /// <c>prediction.max(1)</c>, <c>(pred_class == targets).sum() / targets.size(0)</c>), as a float32 scalar.
    /// </summary>
    /// <param name="logits">(B, 2) [False, True] logits.</param>
    /// <param name="targets">(B) 0/1 targets.</param>
    public static Tensor Accuracy(Tensor logits, Tensor targets)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        if (logits.dim() != 2 || targets.dim() != 1 || logits.shape[0] != targets.shape[0] || logits.shape[0] == 0)
            throw new ArgumentException($"accuracy needs (B, 2) logits and (B) targets with B > 0; got [{string.Join(", ", logits.shape)}] and [{string.Join(", ", targets.shape)}].");
        using var predictions = BlipForNlvr.Predictions(logits);                  // (B)
        using var targets64 = targets.to_type(ScalarType.Int64);
        using var correct = predictions.eq(targets64);
        using var asFloat = correct.to_type(ScalarType.Float32);
        return asFloat.mean();
    }

    /// <inheritdoc/>
    public void Dispose() => Network.Dispose();
}
