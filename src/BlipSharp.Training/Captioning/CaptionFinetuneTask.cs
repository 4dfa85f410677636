using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Configuration;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Captioning;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Captioning;

/// <summary>
/// The <c>model</c> section of a caption recipe: <c>vision_config</c> and <c>text_config</c> (absent: BLIP's ViT-B/16 at
/// 224 px and BERT-base, as <see cref="BlipPretrainingConfig"/>), <c>tokenizer</c>, <c>init</c> (the pretraining
/// checkpoint), <c>prompt</c> (<c>"a picture of "</c>), <c>max_text_length</c> (40) and <c>label_smoothing</c> (0.1).
/// </summary>
/// <param name="Model">The captioner's architecture (Hugging Face's layout).</param>
/// <param name="Tokenizer">The tokenizer folder or hub id.</param>
/// <param name="Init">The starting weights (a BLIP <c>.pth</c>, a <c>.safetensors</c>, a checkpoint or run folder).</param>
/// <param name="Options">Prompt, text length and label smoothing of the training loss; the prompt also starts generation.</param>
public sealed record CaptionRecipe(BlipConfig Model, string Tokenizer, string Init, CaptioningTaskOptions Options)
{
    /// <summary>
    /// What a captioner does not use of a pretraining checkpoint (BLIP's <c>blip_decoder</c> loads the ViT and the
    /// decoder with <c>strict=False</c>): the unimodal text encoder, the momentum copies, the ITC projections, the ITM
    /// head, the temperature and the queues.
    /// </summary>
    public static IReadOnlyList<string> UnusedPrefixes { get; } =
        ["text_encoder", "vision_model_m.", "vision_proj", "text_proj", "itm_head", "temp", "image_queue", "text_queue", "queue_ptr", "idx_queue"];

    private static readonly string[] Keys = ["vision_config", "text_config", "tokenizer", "init", "prompt", "max_text_length", "label_smoothing"];

    /// <summary>Reads and checks the recipe's <c>model</c> section.</summary>
    /// <param name="config">The recipe.</param>
    /// <exception cref="TrainingConfigException">A key is missing, unknown or wrong; the message names it.</exception>
    public static CaptionRecipe Read(TrainingConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = config.Model;
        foreach (var (key, _) in section)
            if (!Keys.Contains(key, StringComparer.Ordinal))
                throw new TrainingConfigException("model." + key, $"is not a known key of the caption task (known: {string.Join(", ", Keys)})");
        string tokenizer = ModelSection.Read(section, "tokenizer", (string?)null) is { Length: > 0 } t ? t
            : throw new TrainingConfigException("model.tokenizer", "must name the tokenizer: a folder with vocab.txt or a hub id such as Salesforce/blip-image-captioning-base");
        string init = ModelSection.Read(section, "init", (string?)null) is { Length: > 0 } i ? i
            : throw new TrainingConfigException("model.init", "must name the pretraining checkpoint fine-tuning starts from (a BLIP .pth, a .safetensors, a checkpoint folder or a blip pretrain run folder)");
        var options = new CaptioningTaskOptions
        {
            Prompt = ModelSection.Read(section, "prompt", CaptioningTaskOptions.BlipPrompt),
            MaxTextLength = ModelSection.Read(section, "max_text_length", 40),
            LabelSmoothing = ModelSection.Read(section, "label_smoothing", 0.1),
        };
        if (options.MaxTextLength < 3) throw new TrainingConfigException("model.max_text_length", $"must be at least 3 (got {options.MaxTextLength})");
        if (options.LabelSmoothing is < 0 or > 1 || double.IsNaN(options.LabelSmoothing))
            throw new TrainingConfigException("model.label_smoothing", $"must lie within 0..1 (got {options.LabelSmoothing})");

        // Absent halves are BLIP's ViT-B/16 and BERT-base (BlipPretrainingConfig's defaults, not transformers').
        var blip = new BlipPretrainingConfig();
        var architecture = new JsonObject
        {
            ["vision_config"] = section["vision_config"]?.DeepClone() ?? JsonSerializer.SerializeToNode(blip.VisionConfig),
            ["text_config"] = section["text_config"]?.DeepClone() ?? JsonSerializer.SerializeToNode(blip.TextConfig),
        };
        BlipConfig model;
        try
        {
            model = BlipConfig.Parse(architecture.ToJsonString(), "model");
        }
        catch (InvalidDataException e)
        {
            throw new TrainingConfigException(e.Message, e);
        }
        if (options.MaxTextLength > model.TextConfig.MaxPositionEmbeddings)
            throw new TrainingConfigException("model.max_text_length", $"({options.MaxTextLength}) exceeds text_config.max_position_embeddings ({model.TextConfig.MaxPositionEmbeddings})");
        return new CaptionRecipe(model, tokenizer, init, options);
    }

    /// <summary>Loads the tokenizer and checks it against the decoder's special ids ([DEC] start, [SEP] end, [PAD]).</summary>
    public BlipTokenizer LoadTokenizer() => RecipeTokenizer.Load(Tokenizer, new TokenizerRequirements("BLIP", Model.TextConfig.VocabSize, Model.TextConfig.PadTokenId,
        DecTokenId: Model.TextConfig.BosTokenId, SepTokenId: Model.TextConfig.SepTokenId));

    /// <summary>
    /// The captioner started from <see cref="Init"/> as salesforce/BLIP's <c>blip_decoder(pretrained=...)</c> does: the
    /// ViT from the pretrained ViT, the decoder from the pretrained decoder (position embeddings interpolated to the
    /// model's image size as a logged step), the parts listed in <see cref="UnusedPrefixes"/> skipped and named in
    /// the log. A BLIP caption checkpoint (<c>BLIP_Decoder</c>'s state_dict) loads the same way.
    /// </summary>
    /// <param name="log">Receives the loader's notes.</param>
    /// <param name="dtype">Float type (null: float32). Converted before the LM head is tied (a tied model cannot be converted).</param>
    public BlipForConditionalGeneration CreateModel(Action<string> log, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(log);
        var (file, stateDict) = FinetuneWeights.ReadPretrained(Init);
        try
        {
            var model = new BlipForConditionalGeneration(Model);
            try
            {
                OriginalTaskCheckpoint.LoadInto(model, stateDict, file, new OriginalTaskLoadOptions { UnusedPrefixes = UnusedPrefixes, Log = log });
                if (dtype is { } type && type != ScalarType.Float32) model.to(type);
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
/// <c>blip finetune caption</c> and <c>blip evaluate caption</c>: salesforce/BLIP's caption fine-tuning
/// (<c>train_caption.py</c>, <c>BLIP_Decoder</c>: the LM loss of <c>prompt + caption</c> with label smoothing 0.1,
/// <see cref="CaptioningTask"/>) on image-caption training files (COCO's <c>coco_karpathy_train.json</c>), and its
/// evaluation: beam search with BLIP's settings (<see cref="BlipCaptionGenerator"/>; COCO: 3 beams, max 20, min 5
/// tokens, repetition penalty 1), results written as <c>[{"image_id", "caption"}]</c> and scored against a
/// COCO-format ground-truth file (<see cref="CocoCaptionFiles"/>, <see cref="CaptionEvaluator"/> with PTB
/// tokenisation): <c>Bleu_1</c>..<c>Bleu_4</c>, <c>ROUGE_L</c>, <c>CIDEr</c> (METEOR and SPICE need Java and are not computed).
/// </summary>
/// <remarks>
/// <para>Recipe: <c>model</c> is a <see cref="CaptionRecipe"/>; <c>data.train_files</c> are caption files
/// (<c>{"image", "caption"}</c> records) and <c>data.prompt</c> stays empty (the task puts <c>model.prompt</c> before
/// every caption, as BLIP's dataset does); <c>evaluation</c> holds <c>batch_size</c> (images per generation call),
/// <c>num_beams</c> (3), <c>max_length</c> (20), <c>min_length</c> (5) and <c>splits.SPLIT</c> =
/// <c>{"annotation": FILE, "image_root": DIR, "gt": COCO_GT_FILE}</c>. The annotation is a Karpathy evaluation file or
/// a NoCaps file (<c>{"image", "img_id"}</c>, no captions) (<see cref="CaptionEvalImages"/>). Without <c>gt</c> the
/// results are written and not scored (NoCaps' test server scores them); the report's metric is then the number
/// of <c>captions</c> written.</para>
/// </remarks>
public sealed class CaptionFinetuneTask : IFinetuneTask
{
    /// <summary>The task's name.</summary>
    public const string TaskName = "caption";

    /// <summary>The primary metric when the split has ground truth.</summary>
    public const string PrimaryMetric = "CIDEr";

    /// <summary>The metric of a split without ground truth: the number of captions written.</summary>
    public const string UnscoredMetric = "captions";

    /// <inheritdoc />
    public string Name => TaskName;

    /// <inheritdoc />
    public string Summary => "image captioning (BLIP_Decoder: LM loss of 'a picture of ' + caption); beam search, reports Bleu_1..4, ROUGE_L, CIDEr";

    /// <inheritdoc />
    public TrainingResult Train(TrainingConfig config, FinetuneContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        var recipe = CaptionRecipe.Read(config);
        if (recipe.Model.VisionConfig.ImageSize != config.Data.ImageSize)
            throw new TrainingConfigException("model.vision_config.image_size", $"({recipe.Model.VisionConfig.ImageSize}) must equal data.image_size ({config.Data.ImageSize})");
        if (config.Data.Prompt.Length > 0)
            throw new TrainingConfigException("data.prompt", $"must be empty for captioning: the task puts model.prompt ('{recipe.Options.Prompt}') before every caption");
        var tokenizer = recipe.LoadTokenizer();
        var dataset = TrainingData.LoadDataset(config.Data, issue => context.Log($"skipped: {issue}"));
        if (dataset.Count == 0) throw new TrainingConfigException("data.train_files", "hold no usable training pair");
        var vision = recipe.Model.VisionConfig;
        context.Log($"{TaskName}: {dataset.Count} captions from {string.Join(", ", config.Data.TrainFiles)}; ViT {vision.HiddenSize}x{vision.NumHiddenLayers} at {vision.ImageSize} px, "
            + $"prompt '{recipe.Options.Prompt}', label smoothing {recipe.Options.LabelSmoothing}");
        var dtype = config.Train.Precision == Precision.BFloat16 ? ScalarType.BFloat16 : (ScalarType?)null;
        var model = recipe.CreateModel(context.Log, dtype);
        CaptioningTask task;
        try
        {
            task = new CaptioningTask(model, tokenizer, recipe.Options);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        using (task)
        {
            var loader = TrainingData.CreateLoader(dataset, config.Data, config.Seed, issue => context.Log($"skipped: {issue}"));
            return FinetuneTraining.Run(task, new ImageTextBatchSource(loader), config, context);
        }
    }

    /// <summary>The evaluation settings of a split.</summary>
    /// <param name="Annotation">The images to caption (Karpathy evaluation file or NoCaps file).</param>
    /// <param name="ImageRoot">The folder its image paths are relative to (null: the file's folder).</param>
    /// <param name="GroundTruth">The COCO-format reference captions (null: write the results only).</param>
    /// <param name="BatchSize">Images per generation call.</param>
    /// <param name="Generation">The decoding settings.</param>
    public sealed record EvaluationSettings(string Annotation, string? ImageRoot, string? GroundTruth, int BatchSize, GenerationOptions Generation);

    /// <summary>Reads <c>evaluation</c> and <c>evaluation.splits.SPLIT</c>.</summary>
    /// <param name="config">The recipe.</param>
    /// <param name="split">The split.</param>
    /// <exception cref="TrainingConfigException">A key is missing or wrong.</exception>
    public static EvaluationSettings ReadEvaluation(TrainingConfig config, string split)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = EvaluationOutput.Split(config, split);
        string prefix = $"evaluation.splits.{split}";
        string annotation = EvaluationOutput.RequiredString(section, "annotation", prefix);
        string? imageRoot = EvaluationOutput.Read(section, "image_root", (string?)null, prefix);
        string? gt = EvaluationOutput.Read(section, "gt", (string?)null, prefix);
        var eval = config.Evaluation;
        int batchSize = AtLeast(eval, "batch_size", 32, 1);
        int beams = AtLeast(eval, "num_beams", 3, 1);
        int maxLength = AtLeast(eval, "max_length", 20, 2);
        int minLength = AtLeast(eval, "min_length", 5, 0);
        if (minLength > maxLength) throw new TrainingConfigException("evaluation.min_length", $"({minLength}) exceeds evaluation.max_length ({maxLength})");
        var generation = beams == 1 ? BlipCaptionGenerator.Greedy(maxLength, minLength) : BlipCaptionGenerator.BeamSearch(beams, maxLength, minLength);
        return new EvaluationSettings(annotation, imageRoot, gt, batchSize, generation);
    }

    private static int AtLeast(JsonObject section, string key, int fallback, int minimum)
    {
        int value = EvaluationOutput.Read(section, key, fallback, "evaluation");
        return value >= minimum ? value : throw new TrainingConfigException("evaluation." + key, $"must be at least {minimum} (got {value})");
    }

    /// <inheritdoc />
    public EvaluationReport Evaluate(TrainingConfig config, EvaluationRequest request)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(request);
        var recipe = CaptionRecipe.Read(config);
        var settings = ReadEvaluation(config, request.Split);
        if (settings.GroundTruth is { } gtFile && !File.Exists(gtFile))
            throw new TrainingConfigException($"evaluation.splits.{request.Split}.gt", $"({gtFile}) does not exist");
        var images = CaptionEvalImages.Load(settings.Annotation, settings.ImageRoot, out int duplicates);
        if (duplicates > 0) request.Log($"{settings.Annotation}: {duplicates} record(s) repeat an image id and were not captioned again (BLIP keeps one result per image_id)");
        var tokenizer = recipe.LoadTokenizer();

        using var model = recipe.CreateModel(request.Log);
        string? weightsFile = request.Weights is null ? null : FinetuneWeights.LoadTrained(model, request.Weights);
        var generation = settings.Generation;
        request.Log($"{TaskName}: captioning {images.Count} images of {settings.Annotation} ({(generation.NumBeams > 1 ? $"beam search, {generation.NumBeams} beams" : "greedy")}, "
            + $"{generation.MinLength}..{generation.MaxLength} tokens, prompt '{recipe.Options.Prompt}')");

        var transform = new BlipEvalTransform(recipe.Model.VisionConfig.ImageSize);
        var results = new JsonArray();
        string stage = generation.NumBeams > 1 ? "beam search" : "greedy decoding";
        request.Progress?.Report(new EvaluationProgress(stage, 0, images.Count, "images"));
        for (int start = 0; start < images.Count; start += settings.BatchSize)
        {
            request.CancellationToken.ThrowIfCancellationRequested();
            int count = Math.Min(settings.BatchSize, images.Count - start);
            using var scope = NewDisposeScope();
            var pixels = stack(Enumerable.Range(start, count).Select(i => transform.ToTensor(images[i].Image.Decode(), new Random(0))).ToArray()); // (B, 3, S, S)
            using var generated = BlipCaptionGenerator.Generate(model, tokenizer, pixels, recipe.Options.Prompt, generation);
            for (int i = 0; i < count; i++)
                results.Add(new JsonObject { ["image_id"] = images[start + i].JsonId, ["caption"] = generated.Captions[i] });
            request.Progress?.Report(new EvaluationProgress(stage, start + count, images.Count, "images"));
        }

        string resultsFile = Path.Combine(request.OutputDirectory, $"caption_{request.Split}.json");
        EvaluationOutput.WriteJson(resultsFile, results);
        if (settings.GroundTruth is null)
        {
            request.Log($"{TaskName}: evaluation.splits.{request.Split} has no gt file: {images.Count} captions written to {resultsFile}, not scored");
            return EvaluationOutput.Finish(Name, request, new Dictionary<string, double> { [UnscoredMetric] = images.Count }, UnscoredMetric, resultsFile, weightsFile);
        }
        var scores = CaptionEvaluator.Evaluate(CocoCaptionFiles.Read(resultsFile, settings.GroundTruth)).Corpus;
        var metrics = new Dictionary<string, double>(StringComparer.Ordinal)
        {
            ["Bleu_1"] = scores.Bleu1,
            ["Bleu_2"] = scores.Bleu2,
            ["Bleu_3"] = scores.Bleu3,
            ["Bleu_4"] = scores.Bleu4,
            ["ROUGE_L"] = scores.RougeL,
            ["CIDEr"] = scores.Cider,
        };
        request.Log($"{TaskName}: CIDEr {scores.Cider:F4}, Bleu_4 {scores.Bleu4:F4} against {settings.GroundTruth}; captions in {resultsFile}");
        return EvaluationOutput.Finish(Name, request, metrics, PrimaryMetric, resultsFile, weightsFile);
    }
}
