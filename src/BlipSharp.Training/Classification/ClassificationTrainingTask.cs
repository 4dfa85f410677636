using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Configuration;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Classification;

/// <summary>
/// The <c>classify</c> task of <c>blip pretrain</c>: supervised image classification of a ViT (<see cref="VisionClassifier"/>),
/// the stage that gives BLIP a pretrained vision encoder (BLIP starts from DeiT, a ViT trained on ImageNet classes).
/// The data is BLIP's annotation format with the class name as the caption (<c>{"image": ..., "caption": "circle"}</c>);
/// the classes are <c>model.classes</c> or, without it, the sorted distinct captions of the training data. Loss:
/// cross-entropy with label smoothing (<c>model.label_smoothing</c>, DeiT's 0.1); no weight decay on biases, norms and
/// embeddings, as DeiT. A trained run folder is what <c>model.vision_init</c> of the pretrain task names.
/// <code>
/// "task": "classify",
/// "model": { "vision_config": { ... }, "classes": ["circle", "square"], "label_smoothing": 0.1,
///            "vision_position_init": "trunc_normal", "vision_init": null }
/// </code>
/// </summary>
public sealed class ClassificationTrainingTask : ITrainingTask<ImageTextBatch>
{
    /// <summary>The recipe's <c>task</c> value.</summary>
    public const string Name = "classify";

    private static readonly string[] Keys = ["vision_config", "classes", "label_smoothing", "vision_position_init", "vision_init"];
    private static readonly JsonSerializerOptions JsonOptions = new() { ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    private readonly Dictionary<string, long> _labels;

    /// <summary>Creates the task around a classifier.</summary>
    /// <param name="model">The classifier; its number of outputs must equal the number of classes.</param>
    /// <param name="classes">The class names, in output order.</param>
    /// <param name="labelSmoothing">Label smoothing of the cross-entropy, within 0..1.</param>
    public ClassificationTrainingTask(VisionClassifier model, IReadOnlyList<string> classes, double labelSmoothing = 0.1)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(classes);
        if (classes.Count != model.Classes) throw new ArgumentException($"{classes.Count} class names for a classifier with {model.Classes} outputs.", nameof(classes));
        if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "must be within [0, 1)");
        Classifier = model;
        Classes = classes;
        LabelSmoothing = labelSmoothing;
        _labels = new Dictionary<string, long>(StringComparer.Ordinal);
        for (int i = 0; i < classes.Count; i++)
        {
            if (!_labels.TryAdd(classes[i], i)) throw new ArgumentException($"class '{classes[i]}' is listed twice.", nameof(classes));
        }
    }

    /// <summary>The classifier being trained.</summary>
    public VisionClassifier Classifier { get; }

    /// <inheritdoc/>
    public nn.Module Model => Classifier;

    /// <summary>The class names, in output order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>Label smoothing of the loss.</summary>
    public double LabelSmoothing { get; }

    /// <summary>The label of an annotation record: its one caption, trimmed.</summary>
    /// <exception cref="InvalidDataException">The record has no caption or several; the message names the file and record.</exception>
    public static string LabelOf(ImageTextEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.Captions.Count != 1)
            throw new InvalidDataException($"{entry.Source}, {entry.Location}: a classification record needs exactly one caption (the class name), found {entry.Captions.Count}.");
        return entry.Captions[0].Trim();
    }

    /// <summary>Builds the task from a recipe (<c>task: classify</c>).</summary>
    /// <exception cref="TrainingConfigException">An unknown or ill-typed key, a record whose class is not listed, fewer than 2 classes.</exception>
    public static ClassificationTrainingTask Create(TrainingConfig config, TrainingTaskContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        var section = config.Model;
        foreach (var (key, _) in section)
        {
            if (!Keys.Contains(key, StringComparer.Ordinal))
                throw new TrainingConfigException("model." + key, $"is not a known key of the classify task (known: {string.Join(", ", Keys)})");
        }
        BlipVisionConfig vision;
        try
        {
            vision = section["vision_config"]?.Deserialize<BlipVisionConfig>(JsonOptions)
                ?? throw new TrainingConfigException("model.vision_config", "must describe the ViT (hidden_size, num_hidden_layers, image_size, patch_size, ...)");
            vision.Validate();
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new TrainingConfigException("model.vision_config", $"is invalid: {e.Message}");
        }
        if (vision.ImageSize != config.Data.ImageSize)
            throw new TrainingConfigException("model.vision_config.image_size", $"({vision.ImageSize}) must equal data.image_size ({config.Data.ImageSize})");

        double smoothing = ModelSection.Read(section, "label_smoothing", 0.1);
        if (!(smoothing >= 0 && smoothing < 1)) throw new TrainingConfigException("model.label_smoothing", $"must be within [0, 1) (got {smoothing})");
        string positionInit = ModelSection.Read(section, "vision_position_init", BlipWeightInit.TruncNormalPositions);
        if (positionInit is not (BlipWeightInit.TruncNormalPositions or BlipWeightInit.SinCosPositions))
            throw new TrainingConfigException("model.vision_position_init", $"'{positionInit}' is unknown: use '{BlipWeightInit.TruncNormalPositions}' or '{BlipWeightInit.SinCosPositions}'");
        string? init = ModelSection.Read(section, "vision_init", (string?)null);

        var classes = ReadClasses(section, context.Dataset);
        var model = new VisionClassifier(vision, classes.Count, positionInit);
        try
        {
            if (init is not null) PretrainedVisionEncoder.LoadForRecipe(model.vision_model, init, context.Log);
            context.Log($"classify: ViT {vision.HiddenSize}x{vision.NumHiddenLayers} at {vision.ImageSize} px (patch {vision.PatchSize}), {classes.Count} classes "
                + $"({string.Join(", ", classes.Take(10))}{(classes.Count > 10 ? ", ..." : "")}), label smoothing {smoothing}");
            return new ClassificationTrainingTask(model, classes, smoothing);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static List<string> ReadClasses(JsonObject section, ImageTextDataset dataset)
    {
        var seen = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var entry in dataset)
        {
            try
            {
                seen.Add(LabelOf(entry));
            }
            catch (InvalidDataException e)
            {
                throw new TrainingConfigException(e.Message, e);
            }
        }
        List<string> classes;
        if (section["classes"] is JsonNode node)
        {
            if (node is not JsonArray array || array.Any(c => c is not JsonValue v || v.GetValueKind() != JsonValueKind.String || string.IsNullOrWhiteSpace((string?)v)))
                throw new TrainingConfigException("model.classes", $"must be a list of class names (got {node.ToJsonString()})");
            classes = array.Select(c => ((string)c!).Trim()).ToList();
            var listed = new HashSet<string>(classes, StringComparer.Ordinal);
            if (listed.Count != classes.Count) throw new TrainingConfigException("model.classes", "lists a class twice");
            foreach (var entry in dataset)
            {
                string label = LabelOf(entry);
                if (!listed.Contains(label))
                    throw new TrainingConfigException($"{entry.Source}, {entry.Location}: class '{label}' is not in model.classes ({string.Join(", ", classes)})");
            }
        }
        else
        {
            classes = seen.ToList();
        }
        if (classes.Count < 2) throw new TrainingConfigException("model.classes", $"must name at least 2 classes; the training data has {seen.Count} ({string.Join(", ", seen)})");
        return classes;
    }

    /// <inheritdoc/>
    public IReadOnlyList<ParameterGroup> ParameterGroups(double weightDecay) =>
        Optimization.ParameterGroups.Build(Classifier.named_parameters(), weightDecay, WeightDecayPolicy.NoDecayOnBiasNormAndEmbeddings);

    /// <summary>The labels (B) of a batch's records.</summary>
    public Tensor Labels(ImageTextBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var labels = new long[batch.Count];
        for (int i = 0; i < labels.Length; i++)
        {
            string label = LabelOf(batch.Entries[i]);
            if (!_labels.TryGetValue(label, out labels[i]))
                throw new InvalidDataException($"{batch.Entries[i].Source}, {batch.Entries[i].Location}: class '{label}' is not one of the task's {Classes.Count} classes.");
        }
        return tensor(labels);
    }

    /// <inheritdoc/>
    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(context);
        var labels = Labels(batch);                                                   // (B)
        var logits = Classifier.forward(batch.Pixels.to_type(context.ComputeType));   // (B, classes)
        var loss = nn.functional.cross_entropy(logits.to_type(ScalarType.Float32), labels, label_smoothing: LabelSmoothing);
        var accuracy = logits.detach().argmax(1).eq(labels).to_type(ScalarType.Float32).mean();
        return TrainingStepOutput.Of(loss, ("acc", accuracy));
    }

    /// <summary>The class names, saved with every checkpoint.</summary>
    public JsonObject? SaveState() => new() { ["classes"] = new JsonArray(Classes.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()) };

    /// <summary>Checks that the checkpoint was trained on the same classes in the same order.</summary>
    public void LoadState(JsonObject state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state["classes"] is not JsonArray saved) return;
        var names = saved.Select(c => (string?)c).ToList();
        if (!names.SequenceEqual(Classes))
            throw new TrainingException($"the checkpoint was trained on the classes {string.Join(", ", names)}, this run has {string.Join(", ", Classes)}.");
    }

    /// <inheritdoc/>
    public void Dispose() => Classifier.Dispose();
}
