using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Pipelines;

/// <summary>
/// Embeddings for search: L2-normalised image and text features in BLIP's shared contrastive space (256-d for the
/// released models), from the retrieval model's <c>vision_proj</c> and <c>text_proj</c>. The dot product of an
/// image and a text embedding is their ITC cosine similarity. Not thread-safe: use one instance per thread.
/// </summary>
public sealed class ImageTextEmbedder : IDisposable
{
    /// <summary>The model a bare <see cref="FromPretrained"/> loads.</summary>
    public const string DefaultModel = "Salesforce/blip-itm-base-coco";

    private readonly Device _device;

    private ImageTextEmbedder(BlipForImageTextRetrieval model, BlipProcessor processor)
    {
        Model = model;
        Processor = processor;
        _device = PipelineModel.DeviceOf(model);
    }

    /// <summary>The retrieval model.</summary>
    public BlipForImageTextRetrieval Model { get; }

    /// <summary>The tokenizer and image processor.</summary>
    public BlipProcessor Processor { get; }

    /// <summary>Size of the embeddings (<c>image_text_hidden_size</c>).</summary>
    public int Dimension => (int)Model.text_proj.weight!.shape[0];

    /// <summary>Images or texts encoded together.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Loads a retrieval checkpoint (a local folder or a Hugging Face hub id) with its processor.</summary>
    public static ImageTextEmbedder FromPretrained(string pathOrRepoId = DefaultModel, BlipLoadOptions? options = null)
    {
        string dir = PipelineModel.Resolve(pathOrRepoId, options);
        return new ImageTextEmbedder(BlipCheckpoint.LoadForImageTextRetrieval(dir, options), BlipProcessor.FromPretrained(dir));
    }

    /// <summary>Wraps a loaded model and processor.</summary>
    public static ImageTextEmbedder Create(BlipForImageTextRetrieval model, BlipProcessor processor)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(processor);
        model.eval();
        return new ImageTextEmbedder(model, processor);
    }

    /// <summary>One image's embedding.</summary>
    public float[] EmbedImage(ImageSource image) => EmbedImages([image])[0];

    /// <summary>The images' embeddings, in input order.</summary>
    public float[][] EmbedImages(IReadOnlyList<ImageSource> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        var result = new List<float[]>(images.Count);
        foreach (var (start, count) in PipelineModel.Batches(images.Count, BatchSize))
            result.AddRange(EmbedDecoded(images.Skip(start).Take(count).Select(i => i.Decode(Processor.ImageProcessor)).ToList()));
        return [.. result];
    }

    /// <summary>Decoded images' embeddings, in input order.</summary>
    public float[][] EmbedImages(IReadOnlyList<RgbImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        var result = new List<float[]>(images.Count);
        foreach (var (start, count) in PipelineModel.Batches(images.Count, BatchSize))
            result.AddRange(EmbedDecoded(images.Skip(start).Take(count).ToList()));
        return [.. result];
    }

    /// <summary>One text's embedding.</summary>
    public float[] EmbedText(string text) => EmbedTexts([text])[0];

    /// <summary>The texts' embeddings (unimodal text encoder, first token, <c>text_proj</c>, L2-normalised).</summary>
    public float[][] EmbedTexts(IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var result = new List<float[]>(texts.Count);
        foreach (var (start, count) in PipelineModel.Batches(texts.Count, BatchSize))
        {
            using var scope = NewDisposeScope();
            using var inference = inference_mode();
            var tokens = Processor.Tokenizer.EncodeToTensors(texts.Skip(start).Take(count).ToList(), new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }, _device);
            result.AddRange(PipelineModel.Rows(Model.TextFeatures(Model.EncodeText(tokens.InputIds, tokens.AttentionMask))));
        }
        return [.. result];
    }

    private float[][] EmbedDecoded(IReadOnlyList<RgbImage> images)
    {
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var pixels = PipelineModel.Pixels(Processor, images, _device);
        return PipelineModel.Rows(Model.ImageFeatures(Model.EncodeImage(pixels)));
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Model.Dispose();
}
