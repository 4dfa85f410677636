using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlipSharp.Processing;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Retrieval;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>
/// The <c>model</c> section of a retrieval recipe: a <see cref="BlipPretrainingConfig"/> (built as
/// <see cref="BlipPretrainingConfig.ForRetrieval"/>: no decoder, an id queue) plus <c>tokenizer</c>, <c>init</c> (the
/// pretraining checkpoint fine-tuning starts from), <c>alpha</c> (0.4) and <c>max_text_length</c> (35).
/// </summary>
/// <param name="Model">The architecture, with <c>text_decoder: false</c> and <c>id_queue: true</c>.</param>
/// <param name="Tokenizer">The tokenizer folder or hub id.</param>
/// <param name="Init">The starting weights (a BLIP <c>.pth</c>, a <c>.safetensors</c>, a checkpoint or run folder).</param>
/// <param name="Alpha">The final weight of the momentum soft targets.</param>
/// <param name="MaxTextLength">Captions are padded and cut to this many tokens, in training and evaluation (BLIP: 35).</param>
public sealed record RetrievalRecipe(BlipPretrainingConfig Model, string Tokenizer, string Init, double Alpha, int MaxTextLength)
{
    private static readonly string[] TaskKeys = ["tokenizer", "init", "alpha", "max_text_length"];

    /// <summary>Reads and checks the recipe's <c>model</c> section.</summary>
    /// <param name="config">The recipe.</param>
    /// <exception cref="TrainingConfigException">A key is missing, unknown or wrong; the message names it.</exception>
    public static RetrievalRecipe Read(TrainingConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = (JsonObject)config.Model.DeepClone();
        var known = typeof(BlipPretrainingConfig).GetProperties()
            .Select(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name).OfType<string>().Concat(TaskKeys).ToArray();
        foreach (var (key, _) in section)
            if (!known.Contains(key, StringComparer.Ordinal))
                throw new TrainingConfigException("model." + key, $"is not a known key of the retrieval task (known: {string.Join(", ", known)})");
        if (ModelSection.Read(section, "text_decoder", false))
            throw new TrainingConfigException("model.text_decoder", "must be false or absent: the retrieval model (BLIP_Retrieval) has no text decoder");
        if (!ModelSection.Read(section, "id_queue", true))
            throw new TrainingConfigException("model.id_queue", "must be true or absent: retrieval fine-tuning treats pairs with the same image id as positives");

        string tokenizer = ModelSection.Read(section, "tokenizer", (string?)null) is { Length: > 0 } t ? t
            : throw new TrainingConfigException("model.tokenizer", "must name the tokenizer: a folder with vocab.txt or a hub id such as Salesforce/blip-image-captioning-base");
        string init = ModelSection.Read(section, "init", (string?)null) is { Length: > 0 } i ? i
            : throw new TrainingConfigException("model.init", "must name the pretraining checkpoint fine-tuning starts from (a BLIP .pth, a .safetensors, a checkpoint folder or a blip pretrain run folder)");
        double alpha = ModelSection.Read(section, "alpha", AlphaSchedule.BlipAlpha);
        int maxTextLength = ModelSection.Read(section, "max_text_length", 35);
        if (!(alpha >= 0 && alpha <= 1)) throw new TrainingConfigException("model.alpha", $"must be within 0..1 (got {alpha})");
        if (maxTextLength < 2) throw new TrainingConfigException("model.max_text_length", $"must be at least 2 (got {maxTextLength})");
        foreach (string key in TaskKeys) section.Remove(key);

        BlipPretrainingConfig model;
        try
        {
            model = BlipPretrainingConfig.Parse(section.ToJsonString(), "model").ForRetrieval();
        }
        catch (InvalidDataException e)
        {
            throw new TrainingConfigException(e.Message, e);
        }
        if (maxTextLength > model.TextConfig.MaxPositionEmbeddings)
            throw new TrainingConfigException("model.max_text_length", $"({maxTextLength}) exceeds text_config.max_position_embeddings ({model.TextConfig.MaxPositionEmbeddings})");
        return new RetrievalRecipe(model, tokenizer, init, alpha, maxTextLength);
    }

    /// <summary>Loads the tokenizer and checks it against the model's special ids.</summary>
    public BlipTokenizer LoadTokenizer() => RecipeTokenizer.Load(Tokenizer, new TokenizerRequirements("BLIP", Model.TextConfig.VocabSize, Model.PadTokenId, EncTokenId: Model.EncTokenId));

    /// <summary>
    /// The retrieval model started from <see cref="Init"/> as salesforce/BLIP's <c>blip_retrieval(pretrained=...)</c>
    /// does: every entry of the pretraining checkpoint the model has is loaded, momentum encoders included (BLIP's
    /// <c>copy_params</c> in the constructor is overwritten by <c>load_checkpoint</c>); the decoder's entries are not
    /// used; the feature queues are loaded when their shape matches (BLIP's <c>load_checkpoint</c> drops entries of
    /// another shape, leaving the fresh random unit queues); the id queue starts empty (-100) and the pointer at 0
    /// (<c>idx_queue</c> and <c>ptr_queue</c> are new buffers of <c>BLIP_Retrieval</c>).
    /// </summary>
    /// <param name="log">Receives the loader's notes.</param>
    /// <param name="dtype">Float type of the model (null: float32).</param>
    public BlipPretrainingModel CreateModel(Action<string> log, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(log);
        var (file, stateDict) = FinetuneWeights.ReadPretrained(Init);
        try
        {
            var model = new BlipPretrainingModel(Model, dtype: dtype);
            try
            {
                bool resetQueues = false;
                if (stateDict.TryGetValue("image_queue", out var queue) && (queue.dim() != 2 || queue.shape[1] != Model.QueueSize))
                {
                    resetQueues = true;
                    log($"{file}: its queues hold {(queue.dim() == 2 ? queue.shape[1] : 0)} features, the recipe's model.queue_size is {Model.QueueSize}: "
                        + "the queues start fresh (random unit features), as BLIP's load_checkpoint drops entries whose shape differs");
                }
                OriginalBlipCheckpoint.LoadInto(model, stateDict, file, new OriginalLoadOptions { Log = log, ResetQueues = resetQueues });
                return model;
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var t in stateDict.Values) t.Dispose();
        }
    }
}

/// <summary>
/// <c>blip finetune retrieval</c> and <c>blip evaluate retrieval</c>: salesforce/BLIP's image-text retrieval
/// fine-tuning (<c>train_retrieval.py</c>, <c>BLIP_Retrieval</c>) on Karpathy-format training files (COCO's
/// <c>coco_karpathy_train.json</c>, Flickr30K's <c>flickr30k_train.json</c>), and its evaluation: ITC top-k candidates
/// reranked by ITM (<see cref="RetrievalEvaluator"/>, <c>evaluation.k_test</c>) on a Karpathy evaluation file, scored by
/// BLIP's <c>itm_eval</c> (<see cref="RetrievalRecall"/>).
/// </summary>
/// <remarks>
/// <para>Recipe: <c>model</c> is a <see cref="RetrievalRecipe"/>; <c>data.train_files</c> are Karpathy training files
/// (one record per caption with <c>image_id</c>; pairs that share an <c>image_id</c> are positives of each other);
/// <c>evaluation</c> holds <c>k_test</c> (BLIP: 256 COCO, 128 Flickr30K), <c>batch_size</c> (images per ViT forward, 64),
/// <c>text_batch_size</c> (256), <c>itm_batch_size</c> (pairs per ITM forward, 256), <c>results_top_k</c> (how many
/// candidates per query the result file lists; default all k_test) and <c>splits.SPLIT</c> = <c>{"annotation": FILE,
/// "image_root": DIR}</c> (a Karpathy evaluation file: one record per image with its captions).</para>
/// <para>BLIP's <c>negative_all_rank</c> (COCO: true) draws the ITM hard negatives from the batches of all GPUs; on one
/// process there is only the local batch, so negatives come from it, as with <c>negative_all_rank: false</c>. With
/// gradient accumulation the momentum update and the enqueue still happen per loader batch, as in BLIP's forward.</para>
/// </remarks>
public sealed class RetrievalFinetuneTask : IFinetuneTask
{
    /// <summary>The task's name.</summary>
    public const string TaskName = "retrieval";

    /// <summary>The primary metric: BLIP's <c>r_mean</c>.</summary>
    public const string PrimaryMetric = "r_mean";

    /// <inheritdoc />
    public string Name => TaskName;

    /// <inheritdoc />
    public string Summary => "image-text retrieval (BLIP_Retrieval: ITC with same-image positives + ITM with hard negatives); reports txt_r1/5/10, img_r1/5/10, r_mean";

    /// <inheritdoc />
    public TrainingResult Train(TrainingConfig config, FinetuneContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        var recipe = RetrievalRecipe.Read(config);
        var model = recipe.Model;
        if (model.VisionConfig.ImageSize != config.Data.ImageSize)
            throw new TrainingConfigException("model.vision_config.image_size", $"({model.VisionConfig.ImageSize}) must equal data.image_size ({config.Data.ImageSize})");
        if (model.QueueSize % config.Data.BatchSize != 0)
            throw new TrainingConfigException("model.queue_size", $"({model.QueueSize}) must be a multiple of data.batch_size ({config.Data.BatchSize}), as BLIP asserts");
        if (config.Data.Prompt.Length > 0)
            throw new TrainingConfigException("data.prompt", "must be empty for retrieval (BLIP's retrieval training captions have no prompt)");
        var tokenizer = recipe.LoadTokenizer();
        var dataset = LoadTrainingSet(config.Data, context.Log);
        context.Log($"{TaskName}: {dataset.Count} pairs of {dataset.Select(e => e.ImageIndex).Distinct().Count()} images from {string.Join(", ", config.Data.TrainFiles)}; "
            + $"ViT {model.VisionConfig.HiddenSize}x{model.VisionConfig.NumHiddenLayers} at {model.VisionConfig.ImageSize} px, queue {model.QueueSize}, alpha {recipe.Alpha} (ramped over the first epoch)");
        var dtype = config.Train.Precision == Precision.BFloat16 ? ScalarType.BFloat16 : (ScalarType?)null;
        using var task = new RetrievalTrainingTask(recipe.CreateModel(context.Log, dtype), tokenizer, recipe.Alpha, recipe.MaxTextLength);
        var loader = TrainingData.CreateLoader(dataset, config.Data, config.Seed, issue => context.Log($"skipped: {issue}"));
        return FinetuneTraining.Run(task, new ImageTextBatchSource(loader), config, context);
    }

    /// <summary>
    /// The Karpathy training files of <paramref name="data"/>, read with <see cref="CocoKarpathy.LoadTrain"/> (malformed
    /// records are skipped and logged); image indices are renumbered across files so that two files never share one.
    /// </summary>
    /// <param name="data">The recipe's <c>data</c> section.</param>
    /// <param name="log">Receives one line per skipped record.</param>
    public static ImageTextDataset LoadTrainingSet(DataConfig data, Action<string> log)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(log);
        var entries = new List<ImageTextEntry>();
        int offset = 0;
        foreach (string file in data.TrainFiles)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"data.train_files: annotation file not found: {file}", file);
            var part = CocoKarpathy.LoadTrain(file, data.ImageRoot, new AnnotationOptions { OnIssue = issue => log($"skipped: {issue}") });
            int images = 0;
            foreach (var entry in part)
            {
                entries.Add(entry with { ImageIndex = entry.ImageIndex + offset });
                images = Math.Max(images, entry.ImageIndex + 1);
            }
            offset += images;
        }
        if (entries.Count == 0) throw new TrainingConfigException("data.train_files", "hold no usable training pair");
        return new ImageTextDataset(string.Join(", ", data.TrainFiles), entries);
    }

    /// <inheritdoc />
    public EvaluationReport Evaluate(TrainingConfig config, EvaluationRequest request)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(request);
        var recipe = RetrievalRecipe.Read(config);
        var settings = ReadEvaluation(config, request.Split, recipe.MaxTextLength);
        var evalSet = CocoKarpathy.LoadEval(settings.Annotation, settings.ImageRoot, new AnnotationOptions { Strict = true });
        if (evalSet.Count == 0) throw new TrainingConfigException($"evaluation.splits.{request.Split}.annotation", $"({settings.Annotation}) lists no image");
        var index = CocoKarpathy.BuildRetrievalIndex(evalSet);
        var tokenizer = recipe.LoadTokenizer();

        using var scope = NewDisposeScope();
        using var model = recipe.CreateModel(request.Log);
        string? weightsFile = request.Weights is null ? null : FinetuneWeights.LoadTrained(model, request.Weights);
        request.Log($"{TaskName}: {evalSet.Count} images, {index.Texts.Count} texts of {settings.Annotation}; k_test {settings.Options.KTest}");

        var evaluator = new RetrievalEvaluator(model, settings.Options);
        var text = evaluator.Tokenize(tokenizer, index.Texts);
        var transform = new BlipEvalTransform(recipe.Model.VisionConfig.ImageSize);
        var dtype = model.temp.dtype;
        int served = 0;
        Tensor Pixels(int start, int count)
        {
            request.CancellationToken.ThrowIfCancellationRequested();
            var images = new Tensor[count];
            for (int i = 0; i < count; i++) images[i] = transform.ToTensor(evalSet[start + i].Image.Decode(), new Random(0)); // (3, S, S)
            served += count;
            bool rerank = served > evalSet.Count;
            request.Progress?.Report(new EvaluationProgress(rerank ? "ITM rerank" : "encoding images", rerank ? served - evalSet.Count : served, evalSet.Count, "images"));
            return stack(images).to_type(dtype);                                                                            // (count, 3, S, S)
        }
        using var result = evaluator.Evaluate(evalSet.Count, Pixels, text.InputIds, text.AttentionMask);

        RetrievalRecallResult recall;
        using (var i2t = result.DenseImageToText())
        using (var t2i = result.DenseTextToImage())
            recall = RetrievalRecall.Compute(i2t, t2i, index.TextToImage, index.ImageToTexts);
        var metrics = new Dictionary<string, double>(StringComparer.Ordinal)
        {
            ["txt_r1"] = recall.TxtR1,
            ["txt_r5"] = recall.TxtR5,
            ["txt_r10"] = recall.TxtR10,
            ["txt_r_mean"] = recall.TxtRMean,
            ["img_r1"] = recall.ImgR1,
            ["img_r5"] = recall.ImgR5,
            ["img_r10"] = recall.ImgR10,
            ["img_r_mean"] = recall.ImgRMean,
            ["r_mean"] = recall.RMean,
        };
        string resultsFile = Path.Combine(request.OutputDirectory, $"retrieval_{request.Split}.json");
        EvaluationOutput.WriteJson(resultsFile, ResultsJson(request.Split, settings, evalSet, index, result));
        request.Log($"{TaskName}: r_mean {recall.RMean:F2} (txt_r1 {recall.TxtR1:F2}, img_r1 {recall.ImgR1:F2}); rankings in {resultsFile}");
        return EvaluationOutput.Finish(Name, request, metrics, PrimaryMetric, resultsFile, weightsFile);
    }

    /// <summary>The evaluation settings of a split.</summary>
    /// <param name="Annotation">The Karpathy evaluation file.</param>
    /// <param name="ImageRoot">The folder its image paths are relative to (null: the file's folder).</param>
    /// <param name="Options">The evaluator's settings.</param>
    /// <param name="ResultsTopK">Candidates per query in the result file (null: all k_test).</param>
    public sealed record EvaluationSettings(string Annotation, string? ImageRoot, RetrievalEvaluatorOptions Options, int? ResultsTopK);

    /// <summary>Reads <c>evaluation</c> and <c>evaluation.splits.SPLIT</c>.</summary>
    /// <param name="config">The recipe.</param>
    /// <param name="split">The split.</param>
    /// <param name="maxTextLength">The token length texts are cut to.</param>
    /// <exception cref="TrainingConfigException">A key is missing or wrong.</exception>
    public static EvaluationSettings ReadEvaluation(TrainingConfig config, string split, int maxTextLength)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = EvaluationOutput.Split(config, split);
        string prefix = $"evaluation.splits.{split}";
        string annotation = EvaluationOutput.RequiredString(section, "annotation", prefix);
        string? imageRoot = EvaluationOutput.Read(section, "image_root", (string?)null, prefix);
        var eval = config.Evaluation;
        var options = new RetrievalEvaluatorOptions
        {
            KTest = Positive(eval, "k_test", 256),
            ImageBatchSize = Positive(eval, "batch_size", 64),
            TextBatchSize = Positive(eval, "text_batch_size", 256),
            ItmBatchSize = Positive(eval, "itm_batch_size", 256),
            MaxTextLength = maxTextLength,
        };
        int? topK = EvaluationOutput.Read(eval, "results_top_k", (int?)null, "evaluation");
        if (topK is < 1) throw new TrainingConfigException("evaluation.results_top_k", $"must be at least 1 (got {topK})");
        return new EvaluationSettings(annotation, imageRoot, options, topK);
    }

    private static int Positive(JsonObject section, string key, int fallback)
    {
        int value = EvaluationOutput.Read(section, key, fallback, "evaluation");
        return value >= 1 ? value : throw new TrainingConfigException("evaluation." + key, $"must be at least 1 (got {value})");
    }

    /// <summary>
    /// The result file: for every image its candidate texts and for every text its candidate images, best first, by
    /// the final score (ITM match logit + ITC similarity, BLIP's score matrices); candidates are indices into the
    /// file's <c>texts</c> and <c>images</c> lists.
    /// </summary>
    private static JsonObject ResultsJson(string split, EvaluationSettings settings, ImageTextDataset evalSet, RetrievalIndex index, RetrievalResult result)
    {
        var (i2tIdx, i2tScore) = Ranked(result.ImageToText, settings.ResultsTopK);
        var (t2iIdx, t2iScore) = Ranked(result.TextToImage, settings.ResultsTopK);
        var images = new JsonArray();
        for (int i = 0; i < evalSet.Count; i++)
        {
            images.Add(new JsonObject
            {
                ["image_id"] = evalSet[i].ImageId,
                ["image"] = evalSet[i].Image.Name,
                ["texts"] = new JsonArray(i2tIdx[i].Select(j => (JsonNode?)JsonValue.Create(j)).ToArray()),
                ["scores"] = new JsonArray(i2tScore[i].Select(s => (JsonNode?)JsonValue.Create(Math.Round(s, 4))).ToArray()),
            });
        }
        var texts = new JsonArray();
        for (int j = 0; j < index.Texts.Count; j++)
        {
            texts.Add(new JsonObject
            {
                ["text"] = index.Texts[j],
                ["image"] = index.TextToImage[j],
                ["images"] = new JsonArray(t2iIdx[j].Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()),
                ["scores"] = new JsonArray(t2iScore[j].Select(s => (JsonNode?)JsonValue.Create(Math.Round(s, 4))).ToArray()),
            });
        }
        return new JsonObject
        {
            ["task"] = TaskName,
            ["split"] = split,
            ["annotation"] = Path.GetFullPath(settings.Annotation),
            ["k_test"] = settings.Options.KTest,
            ["score"] = "itm_match_logit + itc_similarity",
            ["images"] = images,
            ["texts"] = texts,
        };
    }

    /// <summary>Per query its candidates sorted by final score, highest first (ties: lower index first), cut to <paramref name="topK"/>.</summary>
    internal static (int[][] Indices, double[][] Scores) Ranked(RetrievalCandidates candidates, int? topK)
    {
        int rows = (int)candidates.Indices.shape[0], k = (int)candidates.Indices.shape[1];
        var idx = candidates.Indices.cpu().data<long>().ToArray();                                   // (Q * k)
        var scores = candidates.Scores.to_type(ScalarType.Float32).cpu().data<float>().ToArray(); // (Q * k)                                               // (Q * k)
        int keep = Math.Min(k, topK ?? k);
        var outIdx = new int[rows][];
        var outScores = new double[rows][];
        for (int r = 0; r < rows; r++)
        {
            var order = Enumerable.Range(0, k).OrderByDescending(c => scores[r * k + c]).ThenBy(c => idx[r * k + c]).Take(keep).ToArray();
            outIdx[r] = order.Select(c => (int)idx[r * k + c]).ToArray();
            outScores[r] = order.Select(c => (double)scores[r * k + c]).ToArray();
        }
        return (outIdx, outScores);
    }
}
