using BlipSharp.Checkpoints;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Pipelines;

/// <summary>Settings of <see cref="Captioner"/>.</summary>
public sealed record CaptionOptions
{
    /// <summary>Decoding; the default is BLIP's caption setting: beam search with 3 beams, 5 to 20 tokens.</summary>
    public GenerationOptions Generation { get; init; } = GenerationOptions.BeamSearch;

    /// <summary>
    /// Conditional captioning prompt such as <c>"a picture of"</c>: the caption continues it, and the returned text
    /// is the continuation only (the original BLIP strips its prompt the same way). Null: unconditional.
    /// </summary>
    public string? Prompt { get; init; }

    /// <summary>Images encoded and decoded together.</summary>
    public int BatchSize { get; init; } = 8;
}

/// <summary>One generated caption.</summary>
/// <param name="Text">The caption, prompt excluded, special tokens removed.</param>
/// <param name="TokenIds">The generated sequence: <c>[DEC]</c>, the prompt tokens, the caption tokens and <c>[SEP]</c> when the caption ended before the length limit.</param>
/// <param name="Score">Beam search's length-normalised log-probability; null for greedy decoding and sampling.</param>
public sealed record GeneratedCaption(string Text, IReadOnlyList<long> TokenIds, float? Score);

/// <summary>The captions of one image, best first for beam search.</summary>
/// <param name="Source">The image's name (its path for files).</param>
/// <param name="Captions">One caption per returned sequence.</param>
public sealed record CaptionResult(string Source, IReadOnlyList<GeneratedCaption> Captions)
{
    /// <summary>The first (for beam search, the best) caption's text.</summary>
    public string Text => Captions[0].Text;
}

/// <summary>
/// Image captioning: <c>Captioner.FromPretrained("Salesforce/blip-image-captioning-base").Caption("photo.jpg")</c>.
/// Greedy, beam search or nucleus sampling (<see cref="CaptionOptions.Generation"/>), one or many captions per image,
/// conditional on an optional prompt. Not thread-safe: use one instance per thread.
/// </summary>
public sealed class Captioner : IDisposable
{
    /// <summary>The model a bare <see cref="FromPretrained"/> loads.</summary>
    public const string DefaultModel = "Salesforce/blip-image-captioning-base";

    private readonly Device _device;

    private Captioner(BlipForConditionalGeneration model, BlipProcessor processor)
    {
        Model = model;
        Processor = processor;
        _device = PipelineModel.DeviceOf(model);
    }

    /// <summary>The captioning model.</summary>
    public BlipForConditionalGeneration Model { get; }

    /// <summary>The tokenizer and image processor.</summary>
    public BlipProcessor Processor { get; }

    /// <summary>Loads a captioning checkpoint (a local folder or a Hugging Face hub id) with its processor.</summary>
    public static Captioner FromPretrained(string pathOrRepoId = DefaultModel, BlipLoadOptions? options = null)
    {
        string dir = PipelineModel.Resolve(pathOrRepoId, options);
        return new Captioner(BlipCheckpoint.LoadForConditionalGeneration(dir, options), BlipProcessor.FromPretrained(dir));
    }

    /// <summary>Wraps a loaded model and processor.</summary>
    public static Captioner Create(BlipForConditionalGeneration model, BlipProcessor processor)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(processor);
        model.eval();
        return new Captioner(model, processor);
    }

    /// <summary>Captions one image.</summary>
    public CaptionResult Caption(ImageSource image, CaptionOptions? options = null) => Caption([image], options)[0];

    /// <summary>Captions images in batches of <see cref="CaptionOptions.BatchSize"/>; results in input order.</summary>
    public IReadOnlyList<CaptionResult> Caption(IReadOnlyList<ImageSource> images, CaptionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        options ??= new CaptionOptions();
        var results = new List<CaptionResult>(images.Count);
        foreach (var (start, count) in PipelineModel.Batches(images.Count, options.BatchSize))
        {
            var batch = images.Skip(start).Take(count).ToList();
            var decoded = batch.Select(i => i.Decode(Processor.ImageProcessor)).ToList();
            results.AddRange(CaptionBatch(decoded, batch.Select(b => b.Name).ToList(), options));
        }
        return results;
    }

    /// <summary>Captions decoded images in batches; <paramref name="names"/> label the results (default "image i").</summary>
    public IReadOnlyList<CaptionResult> Caption(IReadOnlyList<RgbImage> images, CaptionOptions? options = null, IReadOnlyList<string>? names = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        options ??= new CaptionOptions();
        if (names is not null && names.Count != images.Count) throw new ArgumentException($"{names.Count} names for {images.Count} images.", nameof(names));
        var results = new List<CaptionResult>(images.Count);
        foreach (var (start, count) in PipelineModel.Batches(images.Count, options.BatchSize))
        {
            var batchNames = Enumerable.Range(start, count).Select(i => names?[i] ?? $"image {i}").ToList();
            results.AddRange(CaptionBatch(images.Skip(start).Take(count).ToList(), batchNames, options));
        }
        return results;
    }

    private List<CaptionResult> CaptionBatch(IReadOnlyList<RgbImage> images, IReadOnlyList<string> names, CaptionOptions options)
    {
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var pixels = PipelineModel.Pixels(Processor, images, _device);
        Tensor? promptIds = null, promptMask = null;
        if (!string.IsNullOrEmpty(options.Prompt))
        {
            var encoded = Processor.Tokenizer.EncodeToTensors([options.Prompt], device: _device); // (1, P+2): [CLS] prompt [SEP]
            promptIds = encoded.InputIds;
            promptMask = encoded.AttentionMask;
        }
        using var generated = Model.Generate(pixels, promptIds, promptMask, options.Generation);
        int perImage = generated.Sequences.Count / images.Count;
        var results = new List<CaptionResult>(images.Count);
        for (int i = 0; i < images.Count; i++)
        {
            var captions = new List<GeneratedCaption>(perImage);
            for (int j = 0; j < perImage; j++)
            {
                int row = i * perImage + j;
                var ids = PipelineModel.TrimPadding(generated.Sequences[row], generated.PromptLength, generated.EosTokenId, generated.PadTokenId);
                string text = Processor.Tokenizer.Decode(generated.GeneratedTokens(row), skipSpecialTokens: true);
                captions.Add(new GeneratedCaption(text, ids, generated.SequenceScores?[row]));
            }
            results.Add(new CaptionResult(names[i], captions));
        }
        return results;
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Model.Dispose();
}
