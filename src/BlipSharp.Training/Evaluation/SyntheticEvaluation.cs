using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Generation;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Evaluation;

/// <summary>How <see cref="SyntheticEvaluation"/> runs.</summary>
public sealed record SyntheticEvaluationOptions
{
    /// <summary>Images per forward pass (and per generation call).</summary>
    public int BatchSize { get; init; } = 50;

    /// <summary>How captions are generated; BLIP's greedy settings (20 tokens at most, 5 at least) by default.</summary>
    public GenerationOptions Generation { get; init; } = GenerationOptions.Greedy;

    /// <summary>Texts are cut to this many tokens for the ITC features (BLIP's retrieval evaluation: 35).</summary>
    public int MaxTextLength { get; init; } = 35;

    /// <summary>Evaluate only the first this many images (null: all).</summary>
    public int? MaxImages { get; init; }
}

/// <summary>A colour and a shape, as a caption names an object ("red circle").</summary>
/// <param name="Color">The colour word.</param>
/// <param name="Shape">The shape word.</param>
public sealed record NamedObject(string Color, string Shape)
{
    /// <inheritdoc />
    public override string ToString() => $"{Color} {Shape}";
}

/// <summary>The generated caption of one test image, judged against the image's scene.</summary>
/// <param name="ImageId">The test record's image id.</param>
/// <param name="Caption">The generated text.</param>
/// <param name="Objects">The scene's objects.</param>
/// <param name="Named">The objects the caption names (a colour word right before a shape word).</param>
/// <param name="Correct">The caption names at least one object and every object it names is in the scene.</param>
public sealed record SyntheticCaption(string ImageId, string Caption, IReadOnlyList<NamedObject> Objects, IReadOnlyList<NamedObject> Named, bool Correct);

/// <summary>Retrieval and captioning scores on the synthetic world's test split.</summary>
/// <param name="Images">Test images evaluated.</param>
/// <param name="Texts">Their captions (the retrieval gallery of image-to-text).</param>
/// <param name="ImageToTextR1">Fraction of images whose most ITC-similar caption is one of their own.</param>
/// <param name="ImageToTextR5">Fraction of images with one of their own captions among the five most similar.</param>
/// <param name="TextToImageR1">Fraction of captions whose most similar image is theirs.</param>
/// <param name="ChanceImageToTextR1">Image-to-text R@1 of random features: captions per image / captions.</param>
/// <param name="CaptionAccuracy">Fraction of <see cref="Captions"/> that are <see cref="SyntheticCaption.Correct"/>.</param>
/// <param name="Captions">Every generated caption.</param>
public sealed record SyntheticEvaluationResult(int Images, int Texts, double ImageToTextR1, double ImageToTextR5, double TextToImageR1,
    double ChanceImageToTextR1, double CaptionAccuracy, IReadOnlyList<SyntheticCaption> Captions)
{
    /// <summary>
    /// Fraction of <see cref="Captions"/> whose first named object has the colour of an object in the scene, whatever
    /// shape it is given (colour is learned long before shape; random colours score 1 in 8).
    /// </summary>
    public double ColourAccuracy => FirstNamedShares((named, o) => named.Color == o.Color);

    /// <summary>
    /// Fraction of <see cref="Captions"/> whose first named object has the shape of an object in the scene, whatever
    /// colour it is given (random shapes score 1 in 7 on one-object scenes).
    /// </summary>
    public double ShapeAccuracy => FirstNamedShares((named, o) => named.Shape == o.Shape);

    /// <summary>
    /// Fraction of <see cref="Captions"/> whose first named object is an object of the scene, colour and shape together
    /// (what "names the right colour and shape" means for one object; <see cref="CaptionAccuracy"/> also fails a
    /// caption for any further object it names that is not there).
    /// </summary>
    public double ObjectAccuracy => FirstNamedShares((named, o) => named == o);

    /// <summary>Fraction of captions whose first named object shares <paramref name="attribute"/> with an object of the scene.</summary>
    private double FirstNamedShares(Func<NamedObject, NamedObject, bool> attribute) => Captions.Count == 0 ? 0
        : Captions.Count(c => c.Named.Count > 0 && c.Objects.Any(o => attribute(c.Named[0], o))) / (double)Captions.Count;
}

/// <summary>
/// Scores a pretraining model on the synthetic world's clean test split (<c>test.json</c>: several true captions and
/// the scene per image): image-to-text and text-to-image retrieval by ITC similarity (normalised
/// <c>vision_proj</c>/<c>text_proj</c> features of the [CLS] states, no ITM re-ranking), and the greedy caption of
/// each image from the image-grounded decoder, counted correct when it names an object of the scene by its colour
/// and shape and names no object that is not there. Images go through BLIP's test transform at the model's size.
/// </summary>
public static class SyntheticEvaluation
{
    /// <summary>Evaluates <paramref name="model"/> on a test split read with <see cref="CocoKarpathy.LoadEval"/>.</summary>
    /// <param name="model">The model (put in eval mode while evaluating; its mode is restored).</param>
    /// <param name="tokenizer">The tokenizer it was trained with.</param>
    /// <param name="testSet">One entry per image, with its captions and its <c>scene</c>.</param>
    /// <param name="options">Batch size, generation settings, image limit.</param>
    public static SyntheticEvaluationResult Evaluate(BlipPretrainingModel model, BlipTokenizer tokenizer, ImageTextDataset testSet, SyntheticEvaluationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(testSet);
        options ??= new SyntheticEvaluationOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        var entries = testSet.Take(options.MaxImages ?? testSet.Count).ToList();
        if (entries.Count == 0) throw new ArgumentException("the test set has no images.", nameof(testSet));
        var index = CocoKarpathy.BuildRetrievalIndex(new ImageTextDataset(testSet.Name, entries));

        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var (imageFeatures, captions) = EncodeImages(model, tokenizer, entries, options);       // (I, E)
            var textFeatures = EncodeTexts(model, tokenizer, index.Texts, options);                  // (T, E)
            var similarity = imageFeatures.matmul(textFeatures.t());                                // (I, T)
            var textToImage = tensor(index.TextToImage.Select(i => (long)i).ToArray());              // (T)
            double r1 = ImageToTextRecall(similarity, textToImage, 1);
            double r5 = ImageToTextRecall(similarity, textToImage, Math.Min(5, index.Texts.Count));
            var bestImage = similarity.argmax(0);                                                   // (T)
            double t2i = bestImage.eq(textToImage).to_type(ScalarType.Float64).mean().item<double>();
            double chance = 1.0 / entries.Count; // (T / I captions per image on average) / T
            return new SyntheticEvaluationResult(entries.Count, index.Texts.Count, r1, r5, t2i, chance,
                captions.Count(c => c.Correct) / (double)captions.Count, captions);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>
    /// Evaluates the newest checkpoint of a <c>blip pretrain</c> run folder (its <c>config.json</c> rebuilds the model
    /// and names the tokenizer) on a synthetic <c>test.json</c>.
    /// </summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="testAnnotationFile">The synthetic world's <c>test.json</c>.</param>
    /// <param name="options">Batch size, generation settings, image limit.</param>
    public static SyntheticEvaluationResult EvaluateRun(string runDirectory, string testAnnotationFile, SyntheticEvaluationOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(runDirectory);
        ArgumentException.ThrowIfNullOrEmpty(testAnnotationFile);
        string configPath = Path.Combine(runDirectory, Trainer<ImageTextBatch>.ConfigFile);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{runDirectory} has no {Trainer<ImageTextBatch>.ConfigFile}: not a run folder.", configPath);
        string checkpoint = new CheckpointStore(Path.Combine(runDirectory, Trainer<ImageTextBatch>.CheckpointsDirectory)).Latest()
            ?? throw new FileNotFoundException($"{runDirectory} has no complete checkpoint.");
        var testSet = CocoKarpathy.LoadEval(testAnnotationFile, options: new AnnotationOptions { Strict = true });

        using var task = PretrainingTrainingTask.LoadCheckpoint(configPath, Path.Combine(checkpoint, Trainer<ImageTextBatch>.ModelFile), _ => { });
        return Evaluate(task.PretrainingModel, task.Tokenizer, testSet, options);
    }

    /// <summary>
    /// The objects a caption names: each shape word preceded by an object colour word ("a small red circle on the
    /// left" names red circle; background colours name nothing).
    /// </summary>
    /// <param name="caption">The text (lower case, as the decoder writes it).</param>
    public static IReadOnlyList<NamedObject> NamedObjects(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        string[] words = caption.ToLowerInvariant().Split([' ', ',', '.', ':', ';', '!', '?'], StringSplitOptions.RemoveEmptyEntries);
        var named = new List<NamedObject>();
        for (int i = 1; i < words.Length; i++)
        {
            if (ShapeWords.Contains(words[i]) && ColorWords.Contains(words[i - 1]))
                named.Add(new NamedObject(words[i - 1], words[i]));
        }
        return named;
    }

    /// <summary>Whether a caption names at least one of <paramref name="objects"/> and no object outside them.</summary>
    /// <param name="caption">The text.</param>
    /// <param name="objects">The scene's objects.</param>
    public static bool IsCorrect(string caption, IReadOnlyList<NamedObject> objects)
    {
        ArgumentNullException.ThrowIfNull(objects);
        return Judge(NamedObjects(caption), objects);
    }

    private static bool Judge(IReadOnlyList<NamedObject> named, IReadOnlyList<NamedObject> objects) =>
        named.Count > 0 && named.All(objects.Contains);

    /// <summary>The objects of a synthetic test record's <c>scene</c> (as <see cref="SyntheticWorld"/> writes it).</summary>
    /// <param name="entry">An entry of <c>test.json</c> or <c>val.json</c>.</param>
    public static IReadOnlyList<NamedObject> SceneObjects(ImageTextEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (!entry.Extra.TryGetValue("scene", out var scene) || scene.ValueKind != JsonValueKind.Object
            || !scene.TryGetProperty("objects", out var objects) || objects.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{entry.Source}, {entry.Location}: no scene.objects (not a synthetic world record).");
        return objects.EnumerateArray()
            .Select(o => new NamedObject(o.GetProperty("color").GetString()!, o.GetProperty("shape").GetString()!))
            .ToList();
    }

    private static readonly HashSet<string> ColorWords = Palette.ObjectColors.Select(Palette.Word).ToHashSet(StringComparer.Ordinal);
    private static readonly HashSet<string> ShapeWords = Enum.GetValues<ShapeKind>().Select(Palette.Word).ToHashSet(StringComparer.Ordinal);

    private static (Tensor Features, List<SyntheticCaption> Captions) EncodeImages(BlipPretrainingModel model, BlipTokenizer tokenizer,
        List<ImageTextEntry> entries, SyntheticEvaluationOptions options)
    {
        var transform = new BlipEvalTransform(model.Config.VisionConfig.ImageSize);
        var dtype = model.temp.dtype;
        var features = new List<Tensor>();
        var captions = new List<SyntheticCaption>(entries.Count);
        using var start = tensor(new long[] { model.Config.DecTokenId }).view(1, 1);                       // (1, 1): [DEC]
        for (int from = 0; from < entries.Count; from += options.BatchSize)
        {
            var batch = entries.Skip(from).Take(options.BatchSize).ToList();
            using var scope = NewDisposeScope();
            var images = batch.Select(e => transform.ToTensor(e.Image.Decode(), new Random(0))).ToList();  // (3, S, S) each
            var pixels = stack(images).to_type(dtype);                                                     // (B, 3, S, S)
            var imageEmbeds = model.EncodeImage(pixels);                                                    // (B, 1+N, Dv)
            features.Add(model.ImageFeatures(imageEmbeds).to_type(ScalarType.Float32).MoveToOuterDisposeScope()); // (B, E)
            using var generated = TextGenerator.Generate(model.TextDecoder, imageEmbeds, null, start, null, options.Generation);
            for (int row = 0; row < batch.Count; row++)
            {
                string text = tokenizer.Decode(generated.GeneratedTokens(row), skipSpecialTokens: true);
                var objects = SceneObjects(batch[row]);
                var named = NamedObjects(text);
                captions.Add(new SyntheticCaption(batch[row].ImageId ?? batch[row].Image.Name, text, objects, named, Judge(named, objects)));
            }
        }
        return (cat(features, 0), captions);                                                                // (I, E)
    }

    private static Tensor EncodeTexts(BlipPretrainingModel model, BlipTokenizer tokenizer, IReadOnlyList<string> texts, SyntheticEvaluationOptions options)
    {
        var textOptions = new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest, Truncation = true, MaxLength = options.MaxTextLength };
        var features = new List<Tensor>();
        for (int from = 0; from < texts.Count; from += options.BatchSize * 4)
        {
            using var scope = NewDisposeScope();
            var encoded = tokenizer.EncodeToTensors(texts.Skip(from).Take(options.BatchSize * 4).ToList(), textOptions); // (b, T)
            var states = model.EncodeText(encoded.InputIds, encoded.AttentionMask);                        // (b, T, H)
            features.Add(model.TextFeatures(states).to_type(ScalarType.Float32).MoveToOuterDisposeScope()); // (b, E)
        }
        return cat(features, 0);                                                                            // (T, E)
    }

    private static double ImageToTextRecall(Tensor similarity, Tensor textToImage, int k)
    {
        var (_, top) = similarity.topk(k, dim: 1);                                                         // (I, k) text indices
        var owner = textToImage.index_select(0, top.flatten()).view(top.shape);                             // (I, k) their images
        var self = arange(similarity.shape[0], dtype: ScalarType.Int64).unsqueeze(1);                      // (I, 1)
        return owner.eq(self).any(1).to_type(ScalarType.Float64).mean().item<double>();
    }
}
