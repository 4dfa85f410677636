using System.Globalization;
using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Pipelines;

/// <summary>How <see cref="ZeroShotClassifier"/> turns labels into prompts and ranks them.</summary>
public sealed record ZeroShotOptions
{
    /// <summary>The prompt of a label: <c>{0}</c> is replaced by the label (BLIP's captions start "a picture of").</summary>
    public string Template { get; init; } = "a picture of {0}";

    /// <summary>
    /// Re-rank the best <c>RerankTopK</c> labels by ITC (by cosine) with the ITM head, scoring them ITM logit + cosine as
    /// BLIP's retrieval evaluation does; the rest keep their ITC order below them. 0 ranks by ITC alone.
    /// </summary>
    public int RerankTopK { get; init; } = 16;

    /// <summary>Throws when a setting is out of range, naming it.</summary>
    public void Validate()
    {
        if (string.IsNullOrEmpty(Template) || !Template.Contains("{0}", StringComparison.Ordinal))
            throw new ArgumentException($"Template must contain {{0}} where the label goes, got '{Template}'.", nameof(Template));
        if (RerankTopK < 0) throw new ArgumentOutOfRangeException(nameof(RerankTopK), RerankTopK, "must be 0 (no re-ranking) or more.");
    }
}

/// <summary>One label's scores for one image.</summary>
/// <param name="Label">The label.</param>
/// <param name="Cosine">ITC cosine similarity of the image and the label's prompt.</param>
/// <param name="MatchLogit">The ITM head's "matched" logit for the pair, when the label was re-ranked; else null.</param>
/// <param name="Score">What the ranking sorts by: <c>MatchLogit + Cosine</c> for re-ranked labels, else <c>Cosine</c> (re-ranked labels always come first).</param>
public sealed record LabelScore(string Label, float Cosine, float? MatchLogit, float Score);

/// <summary>The labels of one image, best first.</summary>
/// <param name="Image">The image's name.</param>
/// <param name="Ranked">Every label, best first.</param>
public sealed record ZeroShotResult(string Image, IReadOnlyList<LabelScore> Ranked)
{
    /// <summary>The best label.</summary>
    public string Label => Ranked[0].Label;
}

/// <summary>
/// Zero-shot image classification with a BLIP retrieval model: each label becomes a prompt ("a picture of {label}"),
/// labels are ranked by the ITC cosine of image and prompt, and the best <see cref="ZeroShotOptions.RerankTopK"/> are
/// re-ranked with the ITM head (score = ITM logit + cosine), exactly as BLIP ranks texts for an image in retrieval.
/// Not thread-safe: use one instance per thread.
/// </summary>
public sealed class ZeroShotClassifier : IDisposable
{
    /// <summary>The model a bare <see cref="FromPretrained"/> loads.</summary>
    public const string DefaultModel = "Salesforce/blip-itm-base-coco";

    private readonly Device _device;

    private ZeroShotClassifier(BlipForImageTextRetrieval model, BlipProcessor processor)
    {
        Model = model;
        Processor = processor;
        _device = PipelineModel.DeviceOf(model);
    }

    /// <summary>The retrieval model (ITC and ITM heads).</summary>
    public BlipForImageTextRetrieval Model { get; }

    /// <summary>The tokenizer and image processor.</summary>
    public BlipProcessor Processor { get; }

    /// <summary>Images encoded together.</summary>
    public int ImageBatchSize { get; init; } = 16;

    /// <summary>Prompts encoded together, and image-prompt pairs run through the ITM head together.</summary>
    public int TextBatchSize { get; init; } = 64;

    /// <summary>Loads a retrieval checkpoint (a local folder or a Hugging Face hub id) with its processor.</summary>
    public static ZeroShotClassifier FromPretrained(string pathOrRepoId = DefaultModel, BlipLoadOptions? options = null)
    {
        string dir = PipelineModel.Resolve(pathOrRepoId, options);
        return new ZeroShotClassifier(BlipCheckpoint.LoadForImageTextRetrieval(dir, options), BlipProcessor.FromPretrained(dir));
    }

    /// <summary>Wraps a loaded model and processor.</summary>
    public static ZeroShotClassifier Create(BlipForImageTextRetrieval model, BlipProcessor processor)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(processor);
        model.eval();
        return new ZeroShotClassifier(model, processor);
    }

    /// <summary>Ranks <paramref name="labels"/> for every image.</summary>
    public IReadOnlyList<ZeroShotResult> Classify(IReadOnlyList<ImageSource> images, IReadOnlyList<string> labels, ZeroShotOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        return Classify(images.Select(i => i.Decode(Processor.ImageProcessor)).ToList(), labels, images.Select(i => i.Name).ToList(), options);
    }

    /// <summary>Ranks <paramref name="labels"/> for every decoded image; <paramref name="names"/> name the results.</summary>
    public IReadOnlyList<ZeroShotResult> Classify(IReadOnlyList<RgbImage> images, IReadOnlyList<string> labels, IReadOnlyList<string>? names = null, ZeroShotOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        options ??= new ZeroShotOptions();
        options.Validate();
        if (labels.Count == 0) throw new ArgumentException("give at least one label.", nameof(labels));
        var duplicate = labels.GroupBy(l => l, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"label '{duplicate.Key}' is given more than once.", nameof(labels));
        if (names is not null && names.Count != images.Count) throw new ArgumentException($"{names.Count} names for {images.Count} images.", nameof(names));

        var prompts = labels.Select(l => string.Format(CultureInfo.InvariantCulture, options.Template, l)).ToList();
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        // Every prompt once: token ids (for ITM) and normalised features (for ITC).
        var tokens = Processor.Tokenizer.EncodeToTensors(prompts, new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }, _device);
        var textFeatureBatches = new List<Tensor>();
        foreach (var (start, count) in PipelineModel.Batches(prompts.Count, TextBatchSize))
        {
            var ids = tokens.InputIds.narrow(0, start, count);
            var mask = tokens.AttentionMask.narrow(0, start, count);
            textFeatureBatches.Add(Model.TextFeatures(Model.EncodeText(ids, mask)));        // (t, P)
        }
        var textFeatures = cat(textFeatureBatches, 0);                                       // (L, P)

        int k = Math.Min(options.RerankTopK, labels.Count);
        var results = new List<ZeroShotResult>(images.Count);
        foreach (var (start, count) in PipelineModel.Batches(images.Count, ImageBatchSize))
        {
            using var batchScope = NewDisposeScope();
            var pixels = PipelineModel.Pixels(Processor, images.Skip(start).Take(count).ToList(), _device);
            var imageEmbeds = Model.EncodeImage(pixels);                                     // (b, 1+N, Dv)
            var cosine = Model.ImageFeatures(imageEmbeds).matmul(textFeatures.t());           // (b, L)
            var cosineRows = PipelineModel.Rows(cosine);
            for (int i = 0; i < count; i++)
            {
                var row = cosineRows[i];
                var order = Enumerable.Range(0, labels.Count).OrderByDescending(j => row[j]).ThenBy(j => j).ToArray();
                var logits = new Dictionary<int, float>();
                if (k > 0)
                {
                    var top = order.Take(k).ToArray();
                    foreach (var (pairStart, pairCount) in PipelineModel.Batches(k, TextBatchSize))
                    {
                        using var pairScope = NewDisposeScope();
                        var index = tensor(top.Skip(pairStart).Take(pairCount).Select(j => (long)j).ToArray(), device: _device);
                        var image = imageEmbeds.narrow(0, i, 1);
                        var repeated = image.expand(pairCount, image.shape[1], image.shape[2]);   // (n, 1+N, Dv)
                        using var itm = Model.ImageTextMatchingFromEmbeds(repeated, tokens.InputIds.index_select(0, index), tokens.AttentionMask.index_select(0, index));
                        var matched = itm.Logits.select(1, 1).to(ScalarType.Float32, CPU).data<float>().ToArray();
                        for (int p = 0; p < pairCount; p++) logits[top[pairStart + p]] = matched[p];
                    }
                }
                var reranked = order.Take(k).Select(j => new LabelScore(labels[j], row[j], logits[j], logits[j] + row[j]))
                    .OrderByDescending(s => s.Score);
                var rest = order.Skip(k).Select(j => new LabelScore(labels[j], row[j], null, row[j]));
                string name = names?[start + i] ?? $"image {start + i}";
                results.Add(new ZeroShotResult(name, reranked.Concat(rest).ToList()));
            }
        }
        return results;
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Model.Dispose();
}
