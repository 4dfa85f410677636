using System.Text.Json.Nodes;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Nlvr;

/// <summary>
/// <c>blip finetune nlvr</c> / <c>blip evaluate nlvr</c>: NLVR2 as salesforce/BLIP's <c>train_nlvr.py</c>. A
/// <see cref="Modeling.BlipForNlvr"/> starts from a pretraining checkpoint (<c>model.init</c>, through
/// <see cref="NlvrCheckpoint.FromPretraining(Modeling.BlipForNlvr, IReadOnlyDictionary{string, Tensor}, string, Action{string}?)"/>)
/// and learns cross-entropy on the statements of <c>data.train_files</c> (BLIP's NLVR format; each pair through the
/// fine-tuning train transform, swapped at random with "left"/"right" in the sentence: <see cref="NlvrExamples"/>).
/// The evaluation classifies the statements of one split and reports the accuracy in percent.
/// </summary>
/// <remarks>
/// Recipe: <c>model</c> as <see cref="NlvrRecipe"/>; <c>data.max_words</c> is <c>pre_caption</c>'s limit (BLIP: 40);
/// <c>evaluation.batch_size</c> (BLIP: 64) and <c>evaluation.splits.SPLIT</c> =
/// <c>{"annotation": FILE, "image_root": FOLDER|null}</c> (null: the annotation file's folder). The result file
/// <c>nlvr_SPLIT_predictions.json</c> lists, per statement in file order, <c>index</c>, <c>images</c>, <c>sentence</c>
/// (as written in the file), <c>prediction</c> and <c>label</c> (<c>"True"</c>/<c>"False"</c>, the file's spelling) and
/// <c>true_probability</c>. Metrics: <c>accuracy</c> (percent, as the BLIP paper reports NLVR2; <c>train_nlvr.py</c> logs
/// the fraction), <c>correct</c>, <c>total</c>, <c>predicted_true</c>, <c>label_true</c>.
/// </remarks>
public sealed class NlvrFinetuneTask : IFinetuneTask
{
    /// <summary>The task's name on the command line and in recipes.</summary>
    public const string TaskName = "nlvr";

    /// <summary>The primary metric.</summary>
    public const string AccuracyMetric = "accuracy";

    /// <summary>BLIP's <c>batch_size_test</c> for NLVR2.</summary>
    public const int DefaultEvaluationBatchSize = 64;

    private static readonly string[] EvaluationKeys = ["batch_size", "splits"];
    private static readonly string[] SplitKeys = ["annotation", "image_root"];

    /// <inheritdoc />
    public string Name => TaskName;

    /// <inheritdoc />
    public string Summary => "NLVR2: is a sentence true of a pair of images? BLIP_NLVR trained with cross-entropy; reports accuracy (%).";

    /// <inheritdoc />
    public TrainingResult Train(TrainingConfig config, FinetuneContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        var recipe = NlvrRecipe.Read(config);
        CheckEvaluationSection(config);
        var items = new List<NlvrItem>();
        foreach (string file in config.Data.TrainFiles)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"data.train_files: annotation file not found: {file}", file);
            items.AddRange(LoadStatements(file, config.Data.ImageRoot));
        }
        context.Log($"{TaskName}: {items.Count} training statements ({items.Count(i => i.Label)} true) from {string.Join(", ", config.Data.TrainFiles)}");
        var tokenizer = recipe.LoadTokenizer();
        using var task = new NlvrTrainingTask(new NlvrTask(recipe.CreateModel(context.Log)));
        var source = NlvrBatches.TrainingSource(items, config.Data, config.Seed, tokenizer,
            NlvrBatches.TextOptions(recipe.Config.Blip.TextConfig.MaxPositionEmbeddings));
        return FinetuneTraining.Run(task, source, config, context);
    }

    /// <inheritdoc />
    public EvaluationReport Evaluate(TrainingConfig config, EvaluationRequest request)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(request);
        var recipe = NlvrRecipe.Read(config);
        CheckEvaluationSection(config);
        var split = EvaluationOutput.Split(config, request.Split);
        string prefix = $"evaluation.splits.{request.Split}";
        string annotation = EvaluationOutput.RequiredString(split, "annotation", prefix);
        string? imageRoot = EvaluationOutput.Read(split, "image_root", (string?)null, prefix);
        int batchSize = EvaluationOutput.Read(config.Evaluation, "batch_size", DefaultEvaluationBatchSize, "evaluation");
        if (batchSize < 1) throw new TrainingConfigException("evaluation.batch_size", $"must be at least 1 (got {batchSize})");
        if (!File.Exists(annotation)) throw new FileNotFoundException($"{prefix}.annotation: annotation file not found: {annotation}", annotation);
        var items = LoadStatements(annotation, imageRoot);
        if (items.Count == 0) throw new InvalidDataException($"{annotation}: no statements to evaluate ({prefix}.annotation)");

        var tokenizer = recipe.LoadTokenizer();
        // Without fine-tuned weights the model is the recipe's starting point, head included: seed the generator as
        // blip finetune does before it builds the model, so the pretrained-only baseline is the one training starts from.
        if (request.Weights is null) manual_seed(config.Seed);
        using var model = recipe.CreateModel(request.Log);
        string? weightsFile = request.Weights is null ? null : FinetuneWeights.LoadTrained(model, request.Weights);
        var result = NlvrEvaluator.Evaluate(model, tokenizer, items, config.Data.MaxWords, batchSize, request.Progress, request.CancellationToken);

        var rows = new JsonArray();
        foreach (var p in result.Predictions)
        {
            rows.Add(new JsonObject
            {
                ["index"] = p.Index,
                ["images"] = new JsonArray(p.Example.Item.Left.Name, p.Example.Item.Right.Name),
                ["sentence"] = p.Example.Item.Sentence,
                ["prediction"] = Label(p.Prediction),
                ["label"] = Label(p.Label),
                ["true_probability"] = Math.Round(p.TrueProbability, 6),
            });
        }
        string resultsFile = Path.Combine(request.OutputDirectory, $"nlvr_{request.Split}_predictions.json");
        EvaluationOutput.WriteJson(resultsFile, rows, indented: true);
        var metrics = new Dictionary<string, double>(StringComparer.Ordinal)
        {
            [AccuracyMetric] = result.AccuracyPercent,
            ["correct"] = result.Correct,
            ["total"] = result.Total,
            ["predicted_true"] = result.PredictedTrue,
            ["label_true"] = result.LabelTrue,
        };
        request.Log($"{TaskName} on {request.Split}: accuracy {result.AccuracyPercent:F2} % ({result.Correct} of {result.Total}; {result.PredictedTrue} predicted true, {result.LabelTrue} true)");
        return EvaluationOutput.Finish(TaskName, request, metrics, AccuracyMetric, resultsFile, weightsFile);
    }

    /// <summary>NLVR2's label spelling.</summary>
    private static string Label(bool value) => value ? "True" : "False";

    /// <summary>Reads an annotation file strictly: a malformed record is an error naming the file and the record.</summary>
    private static IReadOnlyList<NlvrItem> LoadStatements(string file, string? imageRoot)
    {
        try
        {
            return NlvrAnnotations.Load(file, imageRoot, new AnnotationOptions { Strict = true });
        }
        catch (DataFormatException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
    }

    /// <summary>The <c>evaluation</c> section and each split may hold only the keys this task reads.</summary>
    private static void CheckEvaluationSection(TrainingConfig config)
    {
        foreach (var (key, _) in config.Evaluation)
            if (!EvaluationKeys.Contains(key, StringComparer.Ordinal))
                throw new TrainingConfigException("evaluation." + key, $"is not a known key of the nlvr task (known: {string.Join(", ", EvaluationKeys)})");
        if (config.Evaluation["splits"] is not JsonObject splits) return;
        foreach (var (name, node) in splits)
        {
            if (node is not JsonObject split) continue;
            foreach (var (key, _) in split)
                if (!SplitKeys.Contains(key, StringComparer.Ordinal))
                    throw new TrainingConfigException($"evaluation.splits.{name}.{key}", $"is not a known key of an nlvr split (known: {string.Join(", ", SplitKeys)})");
        }
    }
}

/// <summary>
/// The <see cref="NlvrTask"/> on built batches, for the <see cref="Trainer{TBatch}"/>: the loss of
/// <see cref="NlvrSampleBatch.Batch"/>, the batch accuracy logged as <c>acc</c>. Owns the task (and so the model).
/// </summary>
/// <param name="task">The NLVR loss (disposed with this).</param>
public sealed class NlvrTrainingTask(NlvrTask task) : ITrainingTask<NlvrSampleBatch>
{
    /// <summary>The NLVR loss.</summary>
    public NlvrTask Task { get; } = task ?? throw new ArgumentNullException(nameof(task));

    /// <inheritdoc />
    public nn.Module Model => Task.Model;

    /// <inheritdoc />
    public TrainingStepOutput Step(NlvrSampleBatch batch, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return Task.Step(batch.Batch, context);
    }

    /// <inheritdoc />
    public void Dispose() => Task.Dispose();
}
