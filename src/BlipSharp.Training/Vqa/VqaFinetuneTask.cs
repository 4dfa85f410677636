using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Vqa;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>
/// <c>blip finetune vqa</c> and <c>blip evaluate vqa</c>: BLIP's VQA fine-tuning (<c>train_vqa.py</c>,
/// <c>configs/vqa.yaml</c>) on a <see cref="BlipForQuestionAnswering"/> started as <c>blip_vqa</c> starts it from a
/// pretraining checkpoint: the ViT from the pretrained ViT, the question encoder from the pretrained text encoder, the
/// answer decoder from the pretrained text decoder (the captioner), its LM head tied to its word embeddings.
/// </summary>
/// <remarks>
/// <para>
/// Recipe keys. <c>data.train_files</c>: BLIP-format VQA annotation files (BLIP: vqa_train, vqa_val, vg_qa), read in
/// order; <c>data.image_size</c>, <c>data.batch_size</c>, the crop/flip/RandomAugment keys and <c>data.workers</c> as
/// for every task; <c>data.swap_left_right_on_flip</c> swaps "left"/"right" in the question and answers of a mirrored
/// image (BLIP: off). <c>model</c>: <c>init</c> (the pretraining checkpoint: BLIP's <c>model_base.pth</c>, a
/// <c>.safetensors</c>, a checkpoint or <c>blip pretrain</c> run folder), <c>tokenizer</c>, the architecture keys of
/// <see cref="BlipPretrainingConfig"/> (<c>vision_config</c>, <c>text_config</c>, <c>enc_token_id</c>, ...; a pretraining
/// recipe's model keys can be copied as they are), and the image roots BLIP names <c>vqa_root</c> (images of
/// <c>"dataset": "vqa"</c> records) and <c>vg_root</c> (of <c>"vg"</c> records); a record whose dataset has no root uses
/// <c>data.image_root</c>, else its annotation file's folder.
/// </para>
/// <para>
/// <c>evaluation</c>: <c>inference</c> (<c>rank</c>, BLIP's, or <c>generate</c>), <c>answer_list</c> (the candidates,
/// BLIP's <c>answer_list.json</c>; required to rank), <c>k_test</c> (128), <c>batch_size</c> (32), <c>num_beams</c> (3),
/// <c>max_length</c> (10), <c>min_length</c> (1), and <c>splits.SPLIT</c> = {<c>annotation</c>: the BLIP-format test
/// file (<c>vqa_test.json</c>: question_id, question, image), <c>image_root</c> (default <c>model.vqa_root</c> or
/// <c>model.vg_root</c> by the record's dataset, else the annotation file's folder), <c>questions</c> and <c>annotations</c>: the official VQA files to score against, both or
/// neither}. The answers go to <c>vqa_result.json</c> (<c>[{question_id, answer}]</c>, what BLIP submits). With official
/// files the metrics are the VQA accuracy <c>overall</c> (the primary metric, percent) and one per answer type
/// (<c>yes/no</c>, <c>number</c>, <c>other</c>), plus <c>questions</c>; without them (test-dev and test-std, scored
/// only by the evaluation server) the results are written and the only metric, the primary one, is <c>questions</c>, the
/// number answered.
/// </para>
/// </remarks>
public sealed class VqaFinetuneTask : IFinetuneTask
{
    /// <summary>The task's name.</summary>
    public const string TaskName = "vqa";

    /// <summary>The result file an evaluation writes (BLIP's <c>save_result(..., 'vqa_result')</c>).</summary>
    public const string ResultsFile = "vqa_result.json";

    /// <summary>The primary metric when the split is scored.</summary>
    public const string OverallMetric = "overall";

    /// <summary>The number of questions answered (the primary metric of a split without official annotations).</summary>
    public const string QuestionsMetric = "questions";

    /// <summary>Parts of a pretraining checkpoint a VQA model has no place for (skipped by name, logged).</summary>
    public static IReadOnlyList<string> PretrainingOnlyPrefixes { get; } =
        ["vision_model_m.", "text_encoder_m.", "vision_proj", "text_proj", "itm_head.", "temp", "image_queue", "text_queue", "queue_ptr", "idx_queue"];

    private static readonly string[] TaskKeys = ["init", "tokenizer", "vqa_root", "vg_root"];

    /// <inheritdoc />
    public string Name => TaskName;

    /// <inheritdoc />
    public string Summary => "VQA (BLIP_VQA): trains the question encoder and answer decoder on weighted answers; reports VQA accuracy of ranked or generated answers";

    /// <inheritdoc />
    public TrainingResult Train(TrainingConfig config, FinetuneContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        var recipe = VqaRecipe.Read(config);
        IReadOnlyList<VqaTrainingSample> samples;
        try
        {
            samples = VqaTrainingData.Load(config.Data.TrainFiles, recipe.TrainImageRoots(config));
        }
        catch (DataFormatException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
        context.Log($"vqa: {samples.Count} training questions ({samples.Sum(s => s.Item.Answers.Count)} answers) from {config.Data.TrainFiles.Count} file(s)");

        var model = CreateModel(recipe, context.Log);
        try
        {
            // Before the LM head is tied: converting a module with shared tensors is refused (TorchSharp disposes them).
            if (config.Train.Precision == Precision.BFloat16) model.to(ScalarType.BFloat16);
            using var task = new VqaTrainingTask(model, new VqaTaskOptions { LabelSmoothing = recipe.Architecture.LabelSmoothing });
            model = null;
            var source = VqaTrainingData.CreateSource(samples, recipe.Tokenizer, TrainingData.TrainTransform(config.Data), new VqaBatchOptions
            {
                BatchSize = config.Data.BatchSize,
                Seed = config.Seed,
                Workers = config.Data.Workers,
                Prefetch = config.Data.Prefetch,
                SwapLeftRightOnFlip = config.Data.SwapLeftRightOnFlip,
            });
            return FinetuneTraining.Run(task, source, config, context);
        }
        finally
        {
            model?.Dispose();
        }
    }

    /// <inheritdoc />
    public EvaluationReport Evaluate(TrainingConfig config, EvaluationRequest request)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(request);
        var recipe = VqaRecipe.Read(config);
        var settings = VqaEvaluationSettings.Read(config, request.Split, recipe);
        IReadOnlyList<VqaTestQuestion> questions;
        IReadOnlyList<string>? answerList;
        try
        {
            questions = settings.ReadQuestions();
            answerList = settings.ReadAnswerList();
        }
        catch (DataFormatException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
        request.Log($"vqa: {questions.Count} questions of '{request.Split}', {settings.Options.Inference.ToString().ToLowerInvariant()} inference"
            + (answerList is null ? "" : $" over {answerList.Count} candidate answers (k {Math.Min(settings.Options.Rank.K, answerList.Count)})"));

        using var model = CreateModel(recipe, request.Log);
        model.TieWeights(); // as trained: one tensor for the LM head and the word embeddings
        string? weights = request.Weights is null ? null : FinetuneWeights.LoadTrained(model, request.Weights);
        var transform = new BlipEvalTransform(recipe.Architecture.VisionConfig.ImageSize);
        var answers = VqaPredictor.Answer(model, recipe.Tokenizer, questions, answerList, transform, settings.Options,
            (done, total) => request.Progress?.Report(new EvaluationProgress(settings.Options.Inference == VqaInference.Rank ? "ranking answers" : "generating answers", done, total, "questions")),
            request.CancellationToken);

        var results = new JsonArray();
        for (int i = 0; i < questions.Count; i++)
        {
            JsonNode id = long.TryParse(questions[i].QuestionId, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long number)
                ? JsonValue.Create(number) : JsonValue.Create(questions[i].QuestionId);
            results.Add(new JsonObject { ["question_id"] = id, ["answer"] = answers[i] });
        }
        string resultsPath = Path.Combine(request.OutputDirectory, ResultsFile);
        EvaluationOutput.WriteJson(resultsPath, results);

        var metrics = new Dictionary<string, double>(StringComparer.Ordinal);
        string primary = QuestionsMetric;
        if (settings.OfficialQuestions is { } questionsFile && settings.OfficialAnnotations is { } annotationsFile)
        {
            VqaAccuracyResult scores;
            try
            {
                scores = VqaFiles.Score(resultsPath, questionsFile, annotationsFile);
            }
            catch (DataFormatException e)
            {
                throw new InvalidDataException(e.Message, e);
            }
            metrics[OverallMetric] = scores.Overall;
            foreach (var (type, accuracy) in scores.PerAnswerType)
                if (type is not (OverallMetric or QuestionsMetric)) metrics[type] = accuracy;
            primary = OverallMetric;
            request.Log($"vqa: accuracy {scores.Overall.ToString("0.##", CultureInfo.InvariantCulture)} on {scores.Questions.Count} annotated questions");
        }
        else
        {
            request.Log($"vqa: split '{request.Split}' has no official questions/annotations files: {resultsPath} is written for the evaluation server, not scored");
        }
        metrics[QuestionsMetric] = questions.Count;
        return EvaluationOutput.Finish(Name, request, metrics, primary, resultsPath, weights);
    }

    /// <summary>
    /// The VQA model of a recipe, started from <c>model.init</c> as <c>blip_vqa.load_checkpoint</c> does (the pretrained
    /// ViT, text encoder and text decoder; the pretraining-only parts skipped by name; the position embeddings
    /// interpolated to the image size), in float32 and training mode, LM head not yet tied.
    /// </summary>
    /// <param name="config">The recipe.</param>
    /// <param name="log">Receives the loading steps.</param>
    public static BlipForQuestionAnswering CreateModel(TrainingConfig config, Action<string>? log = null) => CreateModel(VqaRecipe.Read(config), log ?? (_ => { }));

    private static BlipForQuestionAnswering CreateModel(VqaRecipe recipe, Action<string> log)
    {
        var (file, stateDict) = FinetuneWeights.ReadPretrained(recipe.Init);
        BlipForQuestionAnswering? model = null;
        try
        {
            model = new BlipForQuestionAnswering(recipe.Blip);
            OriginalTaskCheckpoint.LoadInto(model, stateDict, file, new OriginalTaskLoadOptions { Log = log, UnusedPrefixes = PretrainingOnlyPrefixes });
            log($"vqa: ViT {recipe.Architecture.VisionConfig.HiddenSize}x{recipe.Architecture.VisionConfig.NumHiddenLayers} at {recipe.Architecture.VisionConfig.ImageSize} px, "
                + $"question encoder and answer decoder {recipe.Architecture.TextConfig.HiddenSize}x{recipe.Architecture.TextConfig.NumHiddenLayers}, from {file}");
            var result = model;
            model = null;
            return result;
        }
        finally
        {
            model?.Dispose();
            foreach (var t in stateDict.Values) t.Dispose();
        }
    }

    /// <summary>The recipe's <c>model</c> section, read and checked.</summary>
    private sealed record VqaRecipe(BlipPretrainingConfig Architecture, BlipConfig Blip, BlipTokenizer Tokenizer, string Init, string? VqaRoot, string? VgRoot)
    {
        public VqaImageRoots TrainImageRoots(TrainingConfig config) => new(VqaRoot, VgRoot, config.Data.ImageRoot);

        public static VqaRecipe Read(TrainingConfig config)
        {
            if (config.Task != TaskName) throw new TrainingConfigException("task", $"is '{config.Task}', not '{TaskName}'");
            var section = (JsonObject)config.Model.DeepClone();
            var known = typeof(BlipPretrainingConfig).GetProperties()
                .Select(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name).OfType<string>().Concat(TaskKeys).ToArray();
            foreach (var (key, _) in section)
                if (!known.Contains(key, StringComparer.Ordinal))
                    throw new TrainingConfigException("model." + key, $"is not a known key of the vqa task (known: {string.Join(", ", known)})");
            string init = EvaluationOutput.RequiredString(section, "init", "model");
            string tokenizerName = EvaluationOutput.RequiredString(section, "tokenizer", "model");
            string? vqaRoot = EvaluationOutput.Read(section, "vqa_root", (string?)null, "model");
            string? vgRoot = EvaluationOutput.Read(section, "vg_root", (string?)null, "model");
            foreach (string key in TaskKeys) section.Remove(key);

            BlipPretrainingConfig architecture;
            try
            {
                architecture = BlipPretrainingConfig.Parse(section.ToJsonString(), "model");
            }
            catch (InvalidDataException e)
            {
                throw new TrainingConfigException(e.Message, e);
            }
            if (architecture.VisionConfig.ImageSize != config.Data.ImageSize)
                throw new TrainingConfigException("model.vision_config.image_size", $"({architecture.VisionConfig.ImageSize}) must equal data.image_size ({config.Data.ImageSize})");
            if (VqaTextEncoding.QuestionMaxLength > architecture.TextConfig.MaxPositionEmbeddings)
                throw new TrainingConfigException("model.text_config.max_position_embeddings",
                    $"({architecture.TextConfig.MaxPositionEmbeddings}) is shorter than BLIP_VQA's questions ({VqaTextEncoding.QuestionMaxLength} tokens)");
            var tokenizer = BlipTokenizer.FromPretrained(tokenizerName);
            RecipeTokenizer.Check(tokenizer, tokenizerName, new TokenizerRequirements("BLIP_VQA", architecture.TextConfig.VocabSize, architecture.PadTokenId,
                architecture.DecTokenId, architecture.EncTokenId, architecture.TextConfig.SepTokenId, "answers"));
            return new VqaRecipe(architecture, HuggingFaceExport.TaskConfig(architecture, nameof(BlipForQuestionAnswering)), tokenizer, init, vqaRoot, vgRoot);
        }

    }

    /// <summary>The recipe's <c>evaluation</c> section for one split, read and checked.</summary>
    private sealed record VqaEvaluationSettings(string Prefix, string Annotation, VqaImageRoots ImageRoots, string? OfficialQuestions, string? OfficialAnnotations,
        string? AnswerList, VqaPredictOptions Options)
    {
        private static readonly string[] EvaluationKeys = ["inference", "answer_list", "k_test", "batch_size", "num_beams", "max_length", "min_length", "splits"];
        private static readonly string[] SplitKeys = ["annotation", "image_root", "questions", "annotations"];

        public static VqaEvaluationSettings Read(TrainingConfig config, string split, VqaRecipe recipe)
        {
            var evaluation = config.Evaluation;
            foreach (var (key, _) in evaluation)
                if (!EvaluationKeys.Contains(key, StringComparer.Ordinal))
                    throw new TrainingConfigException("evaluation." + key, $"is not a known key of the vqa task (known: {string.Join(", ", EvaluationKeys)})");
            string prefix = $"evaluation.splits.{split}";
            var section = EvaluationOutput.Split(config, split);
            foreach (var (key, _) in section)
                if (!SplitKeys.Contains(key, StringComparer.Ordinal))
                    throw new TrainingConfigException($"{prefix}.{key}", $"is not a known key of a vqa split (known: {string.Join(", ", SplitKeys)})");
            string annotation = EvaluationOutput.RequiredString(section, "annotation", prefix);
            string? imageRoot = EvaluationOutput.Read(section, "image_root", (string?)null, prefix);
            var roots = new VqaImageRoots(imageRoot ?? recipe.VqaRoot, imageRoot ?? recipe.VgRoot);
            string? questions = EvaluationOutput.Read(section, "questions", (string?)null, prefix);
            string? annotations = EvaluationOutput.Read(section, "annotations", (string?)null, prefix);
            if ((questions is null) != (annotations is null))
                throw new TrainingConfigException(questions is null ? $"{prefix}.questions" : $"{prefix}.annotations",
                    "is missing: scoring needs both the official questions and annotations files (give neither to write results only)");

            string inferenceName = EvaluationOutput.Read(evaluation, "inference", "rank", "evaluation");
            var inference = inferenceName switch
            {
                "rank" => VqaInference.Rank,
                "generate" => VqaInference.Generate,
                _ => throw new TrainingConfigException("evaluation.inference", $"must be \"rank\" or \"generate\" (got \"{inferenceName}\")"),
            };
            string? answerList = EvaluationOutput.Read(evaluation, "answer_list", (string?)null, "evaluation");
            if (inference == VqaInference.Rank && answerList is null)
                throw new TrainingConfigException("evaluation.answer_list", "is required to rank answers (BLIP's answer_list.json), or set evaluation.inference to \"generate\"");
            int k = Positive(evaluation, "k_test", 128);
            int batchSize = Positive(evaluation, "batch_size", 32);
            var generation = VqaPredictOptions.BlipGeneration with
            {
                NumBeams = Positive(evaluation, "num_beams", VqaPredictOptions.BlipGeneration.NumBeams),
                MaxLength = Positive(evaluation, "max_length", VqaPredictOptions.BlipGeneration.MaxLength),
                MinLength = EvaluationOutput.Read(evaluation, "min_length", VqaPredictOptions.BlipGeneration.MinLength, "evaluation"),
            };
            if (generation.MinLength < 0 || generation.MinLength > generation.MaxLength)
                throw new TrainingConfigException("evaluation.min_length", $"must be within 0..evaluation.max_length ({generation.MaxLength}) (got {generation.MinLength})");
            var options = new VqaPredictOptions
            {
                Inference = inference,
                Rank = new VqaRankOptions { K = k, LabelSmoothing = recipe.Architecture.LabelSmoothing },
                Generation = generation,
                BatchSize = batchSize,
                Workers = config.Data.Workers,
            };
            return new VqaEvaluationSettings(prefix, annotation, roots, questions, annotations, inference == VqaInference.Rank ? answerList : null, options);
        }

        private static int Positive(JsonObject section, string key, int fallback)
        {
            int value = EvaluationOutput.Read(section, key, fallback, "evaluation");
            if (value < 1) throw new TrainingConfigException("evaluation." + key, $"must be at least 1 (got {value})");
            return value;
        }

        /// <summary>The split's questions; every record needs a question_id; every image must exist.</summary>
        public IReadOnlyList<VqaTestQuestion> ReadQuestions()
        {
            var annotations = VqaAnnotationReader.Read(Annotation, VqaSplit.Test);
            if (annotations.Count == 0) throw new DataFormatException(new DataIssue(Annotation, "file", "has no questions to answer"));
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            var existing = new HashSet<string>(StringComparer.Ordinal);
            var questions = new List<VqaTestQuestion>(annotations.Count);
            for (int i = 0; i < annotations.Count; i++)
            {
                var a = annotations[i];
                if (!seen.TryAdd(a.QuestionId!, i))
                    throw new DataFormatException(new DataIssue(Annotation, $"record {i}", $"repeats the question_id {a.QuestionId} of record {seen[a.QuestionId!]}"));
                string image = ImageRoots.Resolve(a, Annotation);
                if (existing.Add(image) && !File.Exists(image))
                    throw new DataFormatException(new DataIssue(Annotation, $"record {i}", $"image '{a.Image}' not found: {image} does not exist (check {Prefix}.image_root or model.{(a.Source == VqaSource.Vqa ? "vqa_root" : "vg_root")})"));
                questions.Add(new VqaTestQuestion(a.QuestionId!, a.Question, image));
            }
            return questions;
        }

        /// <summary>The answer list (a JSON list of strings), or null when generating.</summary>
        public IReadOnlyList<string>? ReadAnswerList()
        {
            return AnswerList is null ? null : VqaAnswerList.Read(AnswerList);
        }
    }
}
