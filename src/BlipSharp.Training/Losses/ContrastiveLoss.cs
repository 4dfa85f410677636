using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Losses;

/// <summary>
/// Image-text contrastive loss with momentum distillation (BLIP's <c>loss_ita</c>, from ALBEF). The online features
/// of the batch are compared with the momentum features of the batch followed by the queued ones (B + Q
/// candidates per row); the targets mix the momentum model's own softmax with the ground truth:
/// <c>alpha * softmax(sim_m) + (1 - alpha) * positives</c>. Positives are the diagonal (pretraining) or, when image
/// ids are given, every candidate with the same id, each row normalised to sum 1 (retrieval fine-tuning).
/// The loss is the mean of the image-to-text and text-to-image soft cross-entropies.
/// </summary>
public sealed class ContrastiveLoss
{
    /// <summary>Computes the loss.</summary>
    /// <param name="imageFeatures">(B, E) normalised online image features (gradients flow).</param>
    /// <param name="textFeatures">(B, E) normalised online text features (gradients flow).</param>
    /// <param name="imageFeaturesM">(B, E) normalised momentum image features.</param>
    /// <param name="textFeaturesM">(B, E) normalised momentum text features.</param>
    /// <param name="imageQueue">(E, Q) queued momentum image features, as they were before this batch is enqueued.</param>
    /// <param name="textQueue">(E, Q) queued momentum text features.</param>
    /// <param name="temperature">The scalar temperature parameter (gradients flow through the online similarities only).</param>
    /// <param name="alpha">Weight of the momentum model's soft targets, in [0, 1].</param>
    /// <param name="imageIds">(B) image ids, or null for one positive per row (the diagonal).</param>
    /// <param name="idQueue">(1, Q) or (Q) ids of the queued entries; required with <paramref name="imageIds"/>.</param>
    public ContrastiveLossOutput Forward(Tensor imageFeatures, Tensor textFeatures, Tensor imageFeaturesM, Tensor textFeaturesM,
        Tensor imageQueue, Tensor textQueue, Tensor temperature, double alpha, Tensor? imageIds = null, Tensor? idQueue = null)
    {
        if (alpha is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "alpha must lie in [0, 1].");
        if (imageIds is not null && idQueue is null)
            throw new ArgumentNullException(nameof(idQueue), "image ids need the id queue of the queued features.");
        using var scope = NewDisposeScope();
        long b = imageFeatures.shape[0];
        Tensor imageAll, textAll, simI2TM, simT2IM, targetsI2T, targetsT2I;
        using (no_grad())
        {
            imageAll = cat([imageFeaturesM.t(), imageQueue], 1);                       // (E, B+Q)
            textAll = cat([textFeaturesM.t(), textQueue], 1);                          // (E, B+Q)
            var t = temperature.detach();
            simI2TM = imageFeaturesM.matmul(textAll) / t;                               // (B, B+Q)
            simT2IM = textFeaturesM.matmul(imageAll) / t;                               // (B, B+Q)
            var positives = Positives(b, simI2TM.shape[1], imageIds, idQueue, simI2TM.dtype, simI2TM.device);
            targetsI2T = alpha * simI2TM.softmax(1) + (1 - alpha) * positives;
            targetsT2I = alpha * simT2IM.softmax(1) + (1 - alpha) * positives;
        }
        var simI2T = imageFeatures.matmul(textAll) / temperature;                       // (B, B+Q)
        var simT2I = textFeatures.matmul(imageAll) / temperature;                       // (B, B+Q)
        var lossI2T = -(simI2T.log_softmax(1) * targetsI2T).sum(1).mean();
        var lossT2I = -(simT2I.log_softmax(1) * targetsT2I).sum(1).mean();
        var loss = (lossI2T + lossT2I) / 2;
        return new ContrastiveLossOutput(loss, lossI2T, lossT2I, simI2T, simT2I, simI2TM, simT2IM, targetsI2T, targetsT2I).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The ground-truth target rows (B, B+Q): the identity on the first B columns, or with ids
    /// <c>eq(ids, [ids, id_queue]) / row sum</c>, so that every same-id candidate shares the probability mass.
    /// </summary>
    public static Tensor Positives(long batch, long candidates, Tensor? imageIds, Tensor? idQueue, ScalarType dtype, Device device)
    {
        if (imageIds is null) return eye(batch, candidates, dtype: dtype, device: device);
        using var scope = NewDisposeScope();
        var ids = imageIds.to(ScalarType.Int64, device).view(-1, 1);                   // (B, 1)
        var all = cat([ids.view(1, -1), idQueue!.to(ScalarType.Int64, device).view(1, -1)], 1); // (1, B+Q)
        if (all.shape[1] != candidates)
            throw new ArgumentException($"{batch} ids plus {idQueue.numel()} queued ids do not match {candidates} candidates.");
        var positive = ids.eq(all).to_type(dtype);                                     // (B, B+Q)
        return (positive / positive.sum(1, keepdim: true)).MoveToOuterDisposeScope();
    }
}

/// <summary>Output of <see cref="ContrastiveLoss"/>.</summary>
/// <param name="Loss">Scalar: (image-to-text + text-to-image) / 2.</param>
/// <param name="LossImageToText">Scalar image-to-text soft cross-entropy.</param>
/// <param name="LossTextToImage">Scalar text-to-image soft cross-entropy.</param>
/// <param name="SimImageToText">(B, B+Q) online image features against momentum text features and queue, divided by the temperature.</param>
/// <param name="SimTextToImage">(B, B+Q) online text features against momentum image features and queue, divided by the temperature.</param>
/// <param name="SimImageToTextM">(B, B+Q) the same with momentum image features (no gradient).</param>
/// <param name="SimTextToImageM">(B, B+Q) the same with momentum text features (no gradient).</param>
/// <param name="TargetsImageToText">(B, B+Q) soft targets of the image-to-text rows (no gradient).</param>
/// <param name="TargetsTextToImage">(B, B+Q) soft targets of the text-to-image rows (no gradient).</param>
public sealed record ContrastiveLossOutput(Tensor Loss, Tensor LossImageToText, Tensor LossTextToImage, Tensor SimImageToText,
    Tensor SimTextToImage, Tensor SimImageToTextM, Tensor SimTextToImageM, Tensor TargetsImageToText, Tensor TargetsTextToImage) : IDisposable
{
    internal ContrastiveLossOutput MoveToOuterDisposeScope()
    {
        foreach (var t in Tensors()) t.MoveToOuterDisposeScope();
        return this;
    }

    private IEnumerable<Tensor> Tensors() =>
        [Loss, LossImageToText, LossTextToImage, SimImageToText, SimTextToImage, SimImageToTextM, SimTextToImageM, TargetsImageToText, TargetsTextToImage];

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors()) t.Dispose();
    }
}
