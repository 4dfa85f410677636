using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Losses;

/// <summary>
/// The decoder's next-token loss as BLIP's <c>BertLMHeadModel</c> computes it: cross-entropy with label smoothing
/// (BLIP: 0.1) of <c>logits[:, :-1]</c> against <c>labels[:, 1:]</c>, ignoring -100 (padding), averaged over every
/// supervised token of the batch.
/// </summary>
public sealed class LanguageModelingLoss
{
    /// <summary>The label that is never a target.</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Creates the loss.</summary>
    /// <param name="labelSmoothing">Mass spread uniformly over the vocabulary (BLIP: 0.1).</param>
    public LanguageModelingLoss(double labelSmoothing = 0.1)
    {
        if (labelSmoothing is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "must lie in [0, 1].");
        LabelSmoothing = labelSmoothing;
    }

    /// <summary>The label smoothing.</summary>
    public double LabelSmoothing { get; }

    /// <summary>Computes the loss of <paramref name="logits"/> (B, T, V) for <paramref name="labels"/> (B, T).</summary>
    public LanguageModelingLossOutput Forward(Tensor logits, Tensor labels)
    {
        long b = logits.shape[0], t = logits.shape[1], v = logits.shape[2];
        if (!labels.shape.SequenceEqual(new[] { b, t }))
            throw new ArgumentException($"labels ({string.Join(", ", labels.shape)}) must be (B, T) = ({b}, {t}).", nameof(labels));
        using var scope = NewDisposeScope();
        var shifted = logits.narrow(1, 0, t - 1).reshape(-1, v);                        // (B*(T-1), V)
        var targets = labels.narrow(1, 1, t - 1).reshape(-1).to_type(ScalarType.Int64);  // (B*(T-1))
        var perToken = nn.functional.cross_entropy(shifted, targets, ignore_index: IgnoreIndex,
            reduction: nn.Reduction.None, label_smoothing: LabelSmoothing).view(b, t - 1); // (B, T-1), 0 where ignored
        var count = targets.ne(IgnoreIndex).sum();
        if (count.ToInt64() == 0) throw new ArgumentException("every label is -100: there is no token to supervise.", nameof(labels));
        var loss = perToken.sum() / count.to_type(perToken.dtype);
        return new LanguageModelingLossOutput(loss.MoveToOuterDisposeScope(), perToken.MoveToOuterDisposeScope());
    }

    /// <summary>Decoder labels from decoder input ids: [PAD] -> -100 (BLIP's pretraining masks nothing else).</summary>
    public static Tensor Targets(Tensor decoderInputIds, long padTokenId)
    {
        using var pad = decoderInputIds.eq(padTokenId);
        return decoderInputIds.masked_fill(pad, IgnoreIndex);
    }
}

/// <summary>Output of <see cref="LanguageModelingLoss"/>.</summary>
/// <param name="Loss">Scalar mean over supervised tokens.</param>
/// <param name="PerToken">(B, T-1): the smoothed cross-entropy of position t predicting token t+1, 0 where ignored.</param>
public sealed record LanguageModelingLossOutput(Tensor Loss, Tensor PerToken) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        Loss.Dispose();
        PerToken.Dispose();
    }
}
