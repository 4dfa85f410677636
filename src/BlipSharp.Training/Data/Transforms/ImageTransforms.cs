using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Data;

/// <summary>What a transform did to one image that the text may need to know.</summary>
/// <param name="Flipped">The image was mirrored left to right (a caption's "left" and "right" now swap).</param>
public readonly record struct TransformInfo(bool Flipped);

/// <summary>
/// Turns a decoded image into normalised CHW float32 values of a fixed square size. Implementations are
/// immutable and thread-safe; all randomness comes from the <see cref="Random"/> passed in, so the same seed gives
/// the same output.
/// </summary>
public interface IImageTransform
{
    /// <summary>The output side S: <see cref="Apply(RgbImage, Random, Span{float})"/> writes 3 x S x S values.</summary>
    int OutputSize { get; }

    /// <summary>Transforms <paramref name="image"/> into <paramref name="chw"/> (3 planes of S x S, R then G then B).</summary>
    /// <param name="image">The decoded image.</param>
    /// <param name="random">The random source (unused by deterministic transforms).</param>
    /// <param name="chw">Destination of exactly 3 * S * S floats.</param>
    TransformInfo Apply(RgbImage image, Random random, Span<float> chw);
}

/// <summary>Per-channel normalisation as torchvision's <c>ToTensor()</c> + <c>Normalize(mean, std)</c>: <c>(float32(v) / 255 - mean) / std</c> in float32.</summary>
internal sealed class Normalizer
{
    private readonly float[][] _tables = new float[3][];

    public Normalizer(IReadOnlyList<double> mean, IReadOnlyList<double> std)
    {
        if (mean is not { Count: 3 } || std is not { Count: 3 }) throw new ArgumentException("mean and std need three values (R, G, B)");
        for (int c = 0; c < 3; c++)
        {
            float m = (float)mean[c], s = (float)std[c];
            if (s == 0f || !float.IsFinite(s)) throw new ArgumentException($"std must be finite and non-zero, got {std[c]}");
            var table = new float[256];
            for (int v = 0; v < 256; v++) table[v] = ((float)v / 255f - m) / s;
            _tables[c] = table;
        }
    }

    public void Write(RgbImage image, Span<float> chw)
    {
        int plane = image.Width * image.Height;
        if (chw.Length != 3 * plane) throw new ArgumentException($"the destination holds {chw.Length} floats, the image needs {3 * plane}", nameof(chw));
        var src = image.Pixels;
        for (int c = 0; c < 3; c++)
        {
            var table = _tables[c];
            var dst = chw.Slice(c * plane, plane);
            for (int i = 0, s = c; i < plane; i++, s += 3) dst[i] = table[src[s]];
        }
    }
}

/// <summary>Settings of <see cref="BlipTrainTransform"/>; the defaults are BLIP's pretraining transform at 224 pixels.</summary>
public sealed record BlipTrainTransformOptions
{
    /// <summary>Output side (BLIP: 224 for pretraining, 384 for captioning and retrieval, 480 for VQA).</summary>
    public int ImageSize { get; init; } = 224;

    /// <summary>Smallest crop area fraction (BLIP's <c>min_scale</c>, 0.5).</summary>
    public double MinScale { get; init; } = 0.5;

    /// <summary>Largest crop area fraction.</summary>
    public double MaxScale { get; init; } = 1.0;

    /// <summary>Smallest crop aspect ratio.</summary>
    public double MinRatio { get; init; } = 3.0 / 4.0;

    /// <summary>Largest crop aspect ratio.</summary>
    public double MaxRatio { get; init; } = 4.0 / 3.0;

    /// <summary>
    /// Chance of a left-right mirror (BLIP: 0.5). Set 0 when captions name left and right and the loader does not
    /// swap those words (see <see cref="DataLoaderOptions.SwapLeftRightOnFlip"/>).
    /// </summary>
    public double FlipProbability { get; init; } = 0.5;

    /// <summary>The RandAugment stage; null skips it.</summary>
    public RandomAugmentOptions? RandAugment { get; init; } = new();

    /// <summary>Normalisation mean (OpenAI CLIP's, as BLIP).</summary>
    public IReadOnlyList<double> Mean { get; init; } = BlipImageProcessorOptions.OpenAIClipMean;

    /// <summary>Normalisation standard deviation.</summary>
    public IReadOnlyList<double> Std { get; init; } = BlipImageProcessorOptions.OpenAIClipStd;
}

/// <summary>
/// BLIP's <c>transform_train</c>: <see cref="RandomResizedCrop"/> (scale 0.5-1, bicubic) -> random horizontal flip
/// (<c>torch.rand(1) &lt; p</c>) -> <see cref="RandomAugment"/>(2, 5) -> <c>ToTensor</c> -> <c>Normalize</c>. Random
/// numbers are drawn in that order from the source passed in.
/// </summary>
public sealed class BlipTrainTransform : IImageTransform
{
    private readonly Normalizer _normalizer;

    /// <summary>Creates the transform.</summary>
    /// <param name="options">Settings; BLIP's at 224 px when null.</param>
    public BlipTrainTransform(BlipTrainTransformOptions? options = null)
    {
        Options = options ?? new BlipTrainTransformOptions();
        if (!(Options.FlipProbability >= 0 && Options.FlipProbability <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), Options.FlipProbability, "FlipProbability must be within 0..1");
        Crop = new RandomResizedCrop(Options.ImageSize, Options.MinScale, Options.MaxScale, Options.MinRatio, Options.MaxRatio);
        RandAugment = Options.RandAugment is { } ra ? new RandomAugment(ra) : null;
        _normalizer = new Normalizer(Options.Mean, Options.Std);
    }

    /// <summary>The settings.</summary>
    public BlipTrainTransformOptions Options { get; }

    /// <summary>The crop stage.</summary>
    public RandomResizedCrop Crop { get; }

    /// <summary>The RandAugment stage, or null.</summary>
    public RandomAugment? RandAugment { get; }

    /// <inheritdoc />
    public int OutputSize => Options.ImageSize;

    /// <summary>The augmented uint8 image before normalisation (for inspection and tests).</summary>
    /// <param name="image">The decoded image.</param>
    /// <param name="random">The random source.</param>
    /// <param name="info">Whether it was flipped.</param>
    public RgbImage Augment(RgbImage image, Random random, out TransformInfo info)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(random);
        var x = Crop.Apply(image, random);
        // Flip when the draw is below p (torchvision); with p = 0 no number is drawn, so enabling flips is the only change.
        bool flip = Options.FlipProbability > 0 && random.NextDouble() < Options.FlipProbability;
        if (flip) x = AugmentOps.FlipHorizontal(x);
        if (RandAugment != null) x = RandAugment.Apply(x, random);
        info = new TransformInfo(flip);
        return x;
    }

    /// <inheritdoc />
    public TransformInfo Apply(RgbImage image, Random random, Span<float> chw)
    {
        var x = Augment(image, random, out var info);
        _normalizer.Write(x, chw);
        return info;
    }

    /// <summary>Transforms one image into a new float32 CPU tensor (3, S, S).</summary>
    /// <param name="image">The decoded image.</param>
    /// <param name="random">The random source.</param>
    public Tensor ToTensor(RgbImage image, Random random) => ImageTransforms.ToTensor(this, image, random);
}

/// <summary>
/// BLIP's <c>transform_test</c>: bicubic resize to S x S (PIL-exact, aspect ratio not kept) -> <c>ToTensor</c> ->
/// <c>Normalize</c>. No randomness.
/// </summary>
public sealed class BlipEvalTransform : IImageTransform
{
    private readonly Normalizer _normalizer;

    /// <summary>Creates the transform.</summary>
    /// <param name="imageSize">Output side.</param>
    /// <param name="mean">Normalisation mean; OpenAI CLIP's when null.</param>
    /// <param name="std">Normalisation standard deviation; OpenAI CLIP's when null.</param>
    public BlipEvalTransform(int imageSize = 384, IReadOnlyList<double>? mean = null, IReadOnlyList<double>? std = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, 1);
        OutputSize = imageSize;
        _normalizer = new Normalizer(mean ?? BlipImageProcessorOptions.OpenAIClipMean, std ?? BlipImageProcessorOptions.OpenAIClipStd);
    }

    /// <inheritdoc />
    public int OutputSize { get; }

    /// <inheritdoc />
    public TransformInfo Apply(RgbImage image, Random random, Span<float> chw)
    {
        ArgumentNullException.ThrowIfNull(image);
        _normalizer.Write(PilResample.Resize(image, OutputSize, OutputSize, ResampleFilter.Bicubic), chw);
        return default;
    }
}

/// <summary>Helpers over <see cref="IImageTransform"/>.</summary>
public static class ImageTransforms
{
    /// <summary>Applies a transform to one image, returning a new float32 CPU tensor (3, S, S) that the caller owns.</summary>
    /// <param name="transform">The transform.</param>
    /// <param name="image">The decoded image.</param>
    /// <param name="random">The random source.</param>
    public static Tensor ToTensor(this IImageTransform transform, RgbImage image, Random random)
    {
        ArgumentNullException.ThrowIfNull(transform);
        int s = transform.OutputSize;
        var values = new float[3 * s * s];
        transform.Apply(image, random, values);
        return torch.tensor(values, new long[] { 3, s, s }); // (3, S, S)
    }
}
