using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Losses;

/// <summary>
/// One hard negative per batch row for ITM: for each text the index of a negative image, and for each image the
/// index of a negative text, both into the batch.
/// </summary>
/// <param name="ImageIndices">(B) int64: negative image of text b.</param>
/// <param name="TextIndices">(B) int64: negative text of image b.</param>
public sealed record HardNegatives(Tensor ImageIndices, Tensor TextIndices) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        ImageIndices.Dispose();
        TextIndices.Dispose();
    }
}

/// <summary>Draws hard negatives from sampling weights. Tests inject one that returns recorded draws.</summary>
public interface IHardNegativeSampler
{
    /// <summary>Draws one negative per row.</summary>
    /// <param name="weightsTextToImage">(B, B) non-negative weights over images for each text (positives are 0).</param>
    /// <param name="weightsImageToText">(B, B) non-negative weights over texts for each image.</param>
    HardNegatives Sample(Tensor weightsTextToImage, Tensor weightsImageToText);
}

/// <summary>
/// The weights BLIP samples ITM hard negatives with: the in-batch ITC similarities turned into probabilities,
/// <c>softmax(sim, 1) + epsilon</c>, with the positives set to 0 (the diagonal, or every pair that shares an image
/// id). Pretraining uses epsilon 1e-4 on the online-vs-momentum similarities; retrieval fine-tuning uses 0 and ids.
/// </summary>
public static class HardNegativeMining
{
    /// <summary>BLIP_Pretrain's epsilon.</summary>
    public const double PretrainingEpsilon = 1e-4;

    /// <summary>Sampling weights (B, B) from in-batch similarities (B, B); computed without gradients.</summary>
    /// <param name="similarities">(B, B) row b: similarity of item b with every candidate of the other modality.</param>
    /// <param name="imageIds">(B) image ids (same id = positive), or null for the diagonal only.</param>
    /// <param name="epsilon">Added to every probability before the positives are zeroed.</param>
    public static Tensor SamplingWeights(Tensor similarities, Tensor? imageIds, double epsilon)
    {
        long b = similarities.shape[0];
        if (similarities.dim() != 2 || similarities.shape[1] != b)
            throw new ArgumentException($"similarities must be square (B, B), got ({string.Join(", ", similarities.shape)}).", nameof(similarities));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var weights = similarities.softmax(1);
        if (epsilon != 0) weights = weights + epsilon;
        var positive = imageIds is null
            ? eye(b, dtype: ScalarType.Bool, device: similarities.device)
            : imageIds.view(-1, 1).eq(imageIds.view(1, -1));                          // (B, B) same id
        return weights.masked_fill(positive, 0.0).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Draws every row's negative at once with <c>torch.multinomial(weights, 1)</c> (BLIP draws row by row; the
/// distribution is the same). Seed the optional generator for reproducible draws.
/// </summary>
public sealed class MultinomialNegativeSampler : IHardNegativeSampler
{
    private readonly Generator? _generator;

    /// <summary>Creates the sampler; <paramref name="generator"/> null uses torch's default generator.</summary>
    public MultinomialNegativeSampler(Generator? generator = null) => _generator = generator;

    /// <inheritdoc />
    public HardNegatives Sample(Tensor weightsTextToImage, Tensor weightsImageToText) =>
        new(Draw(weightsTextToImage, "image"), Draw(weightsImageToText, "text"));

    private Tensor Draw(Tensor weights, string what)
    {
        using var _ = no_grad();
        using var rowSums = weights.sum(1);
        if (rowSums.le(0).any().ToBoolean())
            throw new InvalidOperationException(
                $"a batch row has no possible negative {what} (every candidate is a positive): ITM hard negatives need at least two different images per batch.");
        using var drawn = weights.multinomial(1, replacement: false, generator: _generator);  // (B, 1)
        return drawn.squeeze(1);                                                               // (B)
    }
}

/// <summary>Returns fixed draws (e.g. the ones a reference run recorded); checks that each is an allowed negative.</summary>
public sealed class FixedNegativeSampler : IHardNegativeSampler
{
    private readonly long[] _images;
    private readonly long[] _texts;

    /// <summary>Creates the sampler.</summary>
    /// <param name="imageIndices">Negative image of each text.</param>
    /// <param name="textIndices">Negative text of each image.</param>
    public FixedNegativeSampler(IReadOnlyList<long> imageIndices, IReadOnlyList<long> textIndices)
    {
        _images = imageIndices.ToArray();
        _texts = textIndices.ToArray();
    }

    /// <inheritdoc />
    public HardNegatives Sample(Tensor weightsTextToImage, Tensor weightsImageToText) =>
        new(Check(_images, weightsTextToImage, "image"), Check(_texts, weightsImageToText, "text"));

    private static Tensor Check(long[] indices, Tensor weights, string what)
    {
        long b = weights.shape[0];
        if (indices.Length != b)
            throw new ArgumentException($"{indices.Length} fixed negative {what}s for a batch of {b}.");
        var cpu = weights.detach().cpu().to_type(ScalarType.Float64);
        using (cpu)
        {
            for (int row = 0; row < b; row++)
            {
                if (indices[row] < 0 || indices[row] >= b || cpu[row, indices[row]].ToDouble() <= 0)
                    throw new ArgumentException($"negative {what} {indices[row]} for row {row} has sampling weight 0 (a positive, or out of range).");
            }
        }
        return tensor(indices, dtype: ScalarType.Int64, device: weights.device);
    }
}
