using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Pipelines;

/// <summary>Scores of every image against every text.</summary>
/// <param name="Images">The images' names, one per row.</param>
/// <param name="Texts">The texts, one per column.</param>
/// <param name="MatchProbability">[image][text] ITM probability that the text describes the image (softmax of the ITM head, class 1).</param>
/// <param name="Cosine">[image][text] ITC cosine similarity of the normalised image and text features.</param>
public sealed record MatchScores(IReadOnlyList<string> Images, IReadOnlyList<string> Texts, float[][] MatchProbability, float[][] Cosine);

/// <summary>
/// Image-text matching: the ITM head's probability that a text describes an image (through the image-grounded text
/// encoder) and the ITC cosine similarity of their projected features, for every image x text pair:
/// <c>ImageTextMatcher.FromPretrained("Salesforce/blip-itm-base-coco").Match("photo.jpg", "two cats on a couch")</c>.
/// Not thread-safe: use one instance per thread.
/// </summary>
public sealed class ImageTextMatcher : IDisposable
{
    /// <summary>The model a bare <see cref="FromPretrained"/> loads.</summary>
    public const string DefaultModel = "Salesforce/blip-itm-base-coco";

    private readonly Device _device;

    private ImageTextMatcher(BlipForImageTextRetrieval model, BlipProcessor processor)
    {
        Model = model;
        Processor = processor;
        _device = PipelineModel.DeviceOf(model);
    }

    /// <summary>The retrieval model (ITM and ITC heads).</summary>
    public BlipForImageTextRetrieval Model { get; }

    /// <summary>The tokenizer and image processor.</summary>
    public BlipProcessor Processor { get; }

    /// <summary>Image-text pairs run through the image-grounded encoder together.</summary>
    public int PairBatchSize { get; init; } = 32;

    /// <summary>Loads a retrieval checkpoint (a local folder or a Hugging Face hub id) with its processor.</summary>
    public static ImageTextMatcher FromPretrained(string pathOrRepoId = DefaultModel, BlipLoadOptions? options = null)
    {
        string dir = PipelineModel.Resolve(pathOrRepoId, options);
        return new ImageTextMatcher(BlipCheckpoint.LoadForImageTextRetrieval(dir, options), BlipProcessor.FromPretrained(dir));
    }

    /// <summary>Wraps a loaded model and processor.</summary>
    public static ImageTextMatcher Create(BlipForImageTextRetrieval model, BlipProcessor processor)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(processor);
        model.eval();
        return new ImageTextMatcher(model, processor);
    }

    /// <summary>Scores one image against one text.</summary>
    public (float MatchProbability, float Cosine) Match(ImageSource image, string text)
    {
        var scores = Match([image], [text]);
        return (scores.MatchProbability[0][0], scores.Cosine[0][0]);
    }

    /// <summary>Scores every image against every text.</summary>
    public MatchScores Match(IReadOnlyList<ImageSource> images, IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(images);
        var decoded = images.Select(i => i.Decode(Processor.ImageProcessor)).ToList();
        return Match(decoded, texts, images.Select(i => i.Name).ToList());
    }

    /// <summary>Scores every decoded image against every text; <paramref name="names"/> label the rows.</summary>
    public MatchScores Match(IReadOnlyList<RgbImage> images, IReadOnlyList<string> texts, IReadOnlyList<string>? names = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(texts);
        if (images.Count == 0 || texts.Count == 0) throw new ArgumentException("give at least one image and one text.");
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var pixels = PipelineModel.Pixels(Processor, images, _device);
        var imageEmbeds = Model.EncodeImage(pixels);                                            // (I, 1+N, Dv)
        var tokens = Processor.Tokenizer.EncodeToTensors(texts, new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }, _device);
        var imageFeatures = Model.ImageFeatures(imageEmbeds);                                   // (I, P)
        var textFeatures = Model.TextFeatures(Model.EncodeText(tokens.InputIds, tokens.AttentionMask)); // (T, P)
        var cosine = imageFeatures.matmul(textFeatures.t());                                    // (I, T)

        int pairs = images.Count * texts.Count;
        var probability = new float[pairs];
        foreach (var (start, count) in PipelineModel.Batches(pairs, PairBatchSize))
        {
            using var pairScope = NewDisposeScope();
            var pairIndex = arange(start, start + count, dtype: ScalarType.Int64, device: _device);
            var imageIndex = pairIndex.div(texts.Count, rounding_mode: RoundingMode.floor);      // pair p = image p / T, text p % T
            var textIndex = pairIndex.remainder(texts.Count);
            var itm = Model.ImageTextMatchingFromEmbeds(imageEmbeds.index_select(0, imageIndex),
                tokens.InputIds.index_select(0, textIndex), tokens.AttentionMask.index_select(0, textIndex));
            var matched = itm.Probabilities.select(1, 1).to(ScalarType.Float32, CPU).data<float>().ToArray();
            matched.CopyTo(probability, start);
        }
        var rows = Enumerable.Range(0, images.Count).Select(i => probability.AsSpan(i * texts.Count, texts.Count).ToArray()).ToArray();
        var rowNames = names ?? Enumerable.Range(0, images.Count).Select(i => $"image {i}").ToList();
        return new MatchScores(rowNames, texts.ToList(), rows, PipelineModel.Rows(cosine));
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Model.Dispose();
}
