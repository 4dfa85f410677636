using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Losses;

/// <summary>
/// Image-text matching loss: plain cross-entropy of the ITM head's logits over positives followed by negatives
/// (BLIP: B positive pairs, then B pairs (text b, negative image), then B pairs (negative text, image b)).
/// </summary>
public sealed class MatchingLoss
{
    /// <summary>The loss over <paramref name="logits"/> (P+N, 2) whose first <paramref name="positives"/> rows are matches.</summary>
    public MatchingLossOutput Forward(Tensor logits, long positives)
    {
        long n = logits.shape[0];
        if (logits.dim() != 2 || logits.shape[1] != 2)
            throw new ArgumentException($"ITM logits must be (N, 2), got ({string.Join(", ", logits.shape)}).", nameof(logits));
        if (positives < 0 || positives > n) throw new ArgumentOutOfRangeException(nameof(positives));
        var labels = Labels(positives, n - positives, logits.device);
        var loss = nn.functional.cross_entropy(logits, labels);
        return new MatchingLossOutput(loss, labels);
    }

    /// <summary>Labels (P+N) int64: 1 for the first <paramref name="positives"/>, 0 after.</summary>
    public static Tensor Labels(long positives, long negatives, Device? device = null)
    {
        using var ones = torch.ones(positives, dtype: ScalarType.Int64, device: device);
        using var zeros = torch.zeros(negatives, dtype: ScalarType.Int64, device: device);
        return cat([ones, zeros], 0);
    }
}

/// <summary>Output of <see cref="MatchingLoss"/>.</summary>
/// <param name="Loss">Scalar mean cross-entropy.</param>
/// <param name="Labels">(P+N) int64 labels used.</param>
public sealed record MatchingLossOutput(Tensor Loss, Tensor Labels) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        Loss.Dispose();
        Labels.Dispose();
    }
}
