using System.Text.Json.Nodes;
using BlipSharp.Training.Evaluation.Retrieval;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>
/// <c>blip evaluate video-retrieval</c>: salesforce/BLIP's zero-shot text-to-video retrieval (<c>eval_retrieval_video.py</c>,
/// MSRVTT): an image-text retrieval model (usually one fine-tuned on COCO by <c>blip finetune retrieval</c>) scores
/// videos as sampled frames (<see cref="VideoRetrievalEvaluator"/>: <c>evaluation.num_frames</c> uniformly sampled frames,
/// the mean of their projected [CLS] features for ITC, their concatenated states for ITM), reporting BLIP's
/// <c>itm_eval</c> for video (<see cref="VideoRetrievalRecall"/>). Evaluation only: nothing is trained.
/// </summary>
/// <remarks>
/// Recipe: <c>model</c> is a <see cref="RetrievalRecipe"/> (its <c>init</c> is the retrieval model, e.g. a
/// <c>blip finetune retrieval</c> run folder or BLIP's <c>model_base_retrieval_coco.pth</c>); <c>evaluation</c> holds
/// <c>num_frames</c> (BLIP: 8), <c>k_test</c> (128), <c>video_batch_size</c> (videos per ViT pass, 8),
/// <c>text_batch_size</c> (256), <c>itm_batch_size</c> (32), <c>results_top_k</c> (candidates per query in the result
/// file, default 10) and <c>splits.SPLIT</c> = <c>{"annotation": FILE.jsonl, "video_root": DIR}</c> (BLIP's MSRVTT
/// records; videos as frame folders or frame lists, see <see cref="MsrvttAnnotations"/>).
/// </remarks>
public sealed class VideoRetrievalTask : IFinetuneTask
{
    /// <summary>The task's name.</summary>
    public const string TaskName = "video-retrieval";

    /// <summary>The score the task is compared by.</summary>
    public const string PrimaryMetric = "r_mean";

    /// <inheritdoc />
    public string Name => TaskName;

    /// <inheritdoc />
    public string Summary => "zero-shot text-video retrieval (MSRVTT) with an image-text retrieval model over sampled frames; reports txt_r1/5/10, vid_r1/5/10, vid_mdR, r_mean";

    /// <inheritdoc />
    public bool Trainable => false;

    /// <inheritdoc />
    public TrainingResult Train(TrainingConfig config, FinetuneContext context) =>
        throw new TrainingConfigException("task", "video-retrieval is evaluated zero-shot with a retrieval model: fine-tune that with blip finetune retrieval, then run blip evaluate video-retrieval");

    /// <inheritdoc />
    public EvaluationReport Evaluate(TrainingConfig config, EvaluationRequest request)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(request);
        var recipe = RetrievalRecipe.Read(config);
        var section = EvaluationOutput.Split(config, request.Split);
        string prefix = $"evaluation.splits.{request.Split}";
        string annotation = EvaluationOutput.RequiredString(section, "annotation", prefix);
        string? videoRoot = EvaluationOutput.Read(section, "video_root", (string?)null, prefix);
        var options = new VideoRetrievalEvaluatorOptions
        {
            NumFrames = Positive(config, "num_frames", 8),
            KTest = Positive(config, "k_test", 128),
            VideoBatchSize = Positive(config, "video_batch_size", 8),
            TextBatchSize = Positive(config, "text_batch_size", 256),
            ItmBatchSize = Positive(config, "itm_batch_size", 32),
            MaxTextLength = recipe.MaxTextLength,
        };
        int topK = Positive(config, "results_top_k", 10);
        var dataset = MsrvttAnnotations.Load(annotation, videoRoot);
        var tokenizer = recipe.LoadTokenizer();

        using var scope = NewDisposeScope();
        using var model = recipe.CreateModel(request.Log);
        string? weightsFile = request.Weights is null ? null : FinetuneWeights.LoadTrained(model, request.Weights);
        request.Log($"{TaskName}: {dataset.Videos.Count} videos, {dataset.Texts.Count} texts of {annotation}; {options.NumFrames} frames per video, k_test {options.KTest}");
        var progress = request.Progress is null ? null : new Progress(request.Progress, dataset.Videos.Count, dataset.Texts.Count);
        using var evaluation = new VideoRetrievalEvaluator(model, options).Evaluate(dataset, tokenizer, progress);

        var metrics = evaluation.Metrics.ToDictionary();
        string resultsFile = Path.Combine(request.OutputDirectory, $"video_retrieval_{request.Split}.json");
        var (v2tIdx, v2tScore) = RetrievalFinetuneTask.Ranked(evaluation.Scores.ImageToText, topK);
        var (t2vIdx, t2vScore) = RetrievalFinetuneTask.Ranked(evaluation.Scores.TextToImage, topK);
        var videos = new JsonArray();
        for (int i = 0; i < dataset.Videos.Count; i++)
        {
            videos.Add(new JsonObject
            {
                ["clip_name"] = dataset.Videos[i].Name,
                ["texts"] = Array(v2tIdx[i]),
                ["scores"] = Array(v2tScore[i]),
            });
        }
        var texts = new JsonArray();
        for (int j = 0; j < dataset.Texts.Count; j++)
        {
            texts.Add(new JsonObject
            {
                ["text"] = dataset.Texts[j],
                ["video"] = dataset.TextToVideo[j],
                ["videos"] = Array(t2vIdx[j]),
                ["scores"] = Array(t2vScore[j]),
            });
        }
        EvaluationOutput.WriteJson(resultsFile, new JsonObject
        {
            ["task"] = TaskName,
            ["split"] = request.Split,
            ["annotation"] = Path.GetFullPath(annotation),
            ["num_frames"] = options.NumFrames,
            ["k_test"] = options.KTest,
            ["score"] = "itm_match_logit + itc_similarity",
            ["videos"] = videos,
            ["texts"] = texts,
        });
        request.Log($"{TaskName}: {evaluation.Metrics}; rankings in {resultsFile}");
        return EvaluationOutput.Finish(Name, request, metrics, PrimaryMetric, resultsFile, weightsFile);
    }

    private static JsonArray Array(int[] values) => new(values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());

    private static JsonArray Array(double[] values) => new(values.Select(v => (JsonNode?)JsonValue.Create(Math.Round(v, 4))).ToArray());

    private static int Positive(TrainingConfig config, string key, int fallback)
    {
        int value = EvaluationOutput.Read(config.Evaluation, key, fallback, "evaluation");
        return value >= 1 ? value : throw new TrainingConfigException("evaluation." + key, $"must be at least 1 (got {value})");
    }

    /// <summary>The evaluator's stages as evaluation progress.</summary>
    private sealed class Progress(IProgress<EvaluationProgress> target, int videos, int texts) : IProgress<RetrievalProgress>
    {
        public void Report(RetrievalProgress p) => target.Report(p.Stage switch
        {
            RetrievalStage.TextFeatures => new EvaluationProgress("encoding texts", p.Done, texts, "texts"),
            RetrievalStage.ItemFeatures => new EvaluationProgress("encoding videos", p.Done, videos, "videos"),
            _ => new EvaluationProgress("ITM rerank", p.Done, p.Total, "videos"),
        });
    }
}
