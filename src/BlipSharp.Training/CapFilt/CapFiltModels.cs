using System.Text.Json.Nodes;
using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Captioning;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Retrieval;
using BlipSharp.Training.Training;

namespace BlipSharp.Training.CapFilt;

/// <summary>Which token the filter's ITM pass puts first in every text.</summary>
public enum ItmFirstToken
{
    /// <summary><c>[ENC]</c>, as BLIP's retrieval fine-tuning trains the ITM head and as its evaluation scores it (the default).</summary>
    Enc,

    /// <summary>The tokenizer's own first token (<c>[CLS]</c>), as transformers' <c>BlipForImageTextRetrieval</c> examples and BLIP's <c>blip_itm</c> demo do.</summary>
    Cls,
}

/// <summary>The captioner of a CapFilt run: a captioning model, its tokenizer and image processor, and the prompt.</summary>
/// <param name="Model">The captioning model (eval mode).</param>
/// <param name="Tokenizer">Its tokenizer.</param>
/// <param name="ImageProcessor">BLIP's evaluation transform at the model's image size.</param>
/// <param name="Prompt">The text generation starts from and that is cut from every caption (BLIP: <c>"a picture of "</c>).</param>
/// <param name="Description">Where it came from, for logs and the run's settings.</param>
public sealed record CapFiltCaptioner(BlipForConditionalGeneration Model, BlipTokenizer Tokenizer, BlipImageProcessor ImageProcessor, string Prompt, string Description) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}

/// <summary>The filter of a CapFilt run: an image-text retrieval model (ITM and ITC heads), its tokenizer and image processor.</summary>
/// <param name="Model">The retrieval model (eval mode).</param>
/// <param name="Tokenizer">Its tokenizer.</param>
/// <param name="ImageProcessor">BLIP's evaluation transform at the model's image size.</param>
/// <param name="FirstTokenId">The id written over every text's first token for ITM (<c>[ENC]</c>), or null to keep the tokenizer's.</param>
/// <param name="Description">Where it came from, for logs and the run's settings.</param>
public sealed record CapFiltFilter(BlipForImageTextRetrieval Model, BlipTokenizer Tokenizer, BlipImageProcessor ImageProcessor, long? FirstTokenId, string Description) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Loads CapFilt's two models from what a user has: a Hugging Face BLIP checkpoint (a folder or a hub id such as
/// <c>Salesforce/blip-image-captioning-base</c> and <c>Salesforce/blip-itm-base-coco</c>), or a folder <c>blip</c>
/// wrote: a <c>blip finetune caption</c> or <c>blip finetune retrieval</c> run (BLIP's captioner and filter are exactly
/// these: the pretrained model fine-tuned on COCO), a <c>blip pretrain</c> run (its decoder captions, its ITM head
/// filters: CapFilt without fine-tuning), or one of their checkpoint folders. A <c>blip</c> folder is told apart by its
/// <c>config.json</c> naming a <c>task</c> (a Hugging Face <c>config.json</c> names <c>architectures</c>).
/// </summary>
public static class CapFiltModels
{
    /// <summary>The prompt of a Hugging Face captioner (BLIP's).</summary>
    public const string DefaultPrompt = CaptioningTaskOptions.BlipPrompt;

    /// <summary>Loads the captioner.</summary>
    /// <param name="pathOrRepoId">A Hugging Face captioning checkpoint (folder or hub id), or a <c>blip finetune caption</c> / <c>blip pretrain</c> run or checkpoint folder.</param>
    /// <param name="prompt">The prompt; null takes the run's <c>model.prompt</c> (caption runs) or BLIP's <c>"a picture of "</c>.</param>
    /// <param name="log">Receives loader notes.</param>
    /// <param name="hub">Hub download settings for a hub id.</param>
    public static CapFiltCaptioner LoadCaptioner(string pathOrRepoId, string? prompt = null, Action<string>? log = null, BlipSharp.Checkpoints.Hub.HubOptions? hub = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pathOrRepoId);
        log ??= _ => { };
        if (ReadRunConfig(pathOrRepoId) is { } run)
        {
            switch (run.Config.Task)
            {
                case CaptionFinetuneTask.TaskName:
                {
                    var recipe = CaptionRecipe.Read(run.Config);
                    var tokenizer = recipe.LoadTokenizer();
                    var model = new BlipForConditionalGeneration(recipe.Model);
                    try
                    {
                        string file = FinetuneWeights.LoadTrained(model, pathOrRepoId, "--captioner");
                        model.eval();
                        log($"captioner: {file} (blip finetune caption, ViT {recipe.Model.VisionConfig.HiddenSize}x{recipe.Model.VisionConfig.NumHiddenLayers} at {recipe.Model.VisionConfig.ImageSize} px)");
                        return new CapFiltCaptioner(model, tokenizer, EvalProcessor(recipe.Model.VisionConfig.ImageSize), prompt ?? recipe.Options.Prompt, file);
                    }
                    catch
                    {
                        model.Dispose();
                        throw;
                    }
                }
                case PretrainingTrainingTask.Name:
                {
                    using var task = LoadPretrainRun(run, pathOrRepoId, "--captioner", log, out string file);
                    var model = HuggingFaceExport.ToConditionalGeneration(task.PretrainingModel);
                    model.eval();
                    int size = task.PretrainingModel.Config.VisionConfig.ImageSize;
                    log($"captioner: the decoder of {file} (blip pretrain, {size} px)");
                    return new CapFiltCaptioner(model, task.Tokenizer, EvalProcessor(size), prompt ?? DefaultPrompt, file);
                }
                default:
                    throw new CapFiltException($"--captioner: {pathOrRepoId} is a '{run.Config.Task}' run; a captioner is a 'caption' or 'pretrain' run, or a Hugging Face captioning checkpoint");
            }
        }
        var captioner = Pipelines.Captioner.FromPretrained(pathOrRepoId, new BlipLoadOptions { Log = log, Hub = hub });
        log($"captioner: {pathOrRepoId} (Hugging Face BlipForConditionalGeneration)");
        return new CapFiltCaptioner(captioner.Model, captioner.Processor.Tokenizer, captioner.Processor.ImageProcessor, prompt ?? DefaultPrompt, pathOrRepoId);
    }

    /// <summary>Loads the filter.</summary>
    /// <param name="pathOrRepoId">A Hugging Face retrieval checkpoint (folder or hub id), or a <c>blip finetune retrieval</c> / <c>blip pretrain</c> run or checkpoint folder.</param>
    /// <param name="firstToken">Which token the ITM pass puts first.</param>
    /// <param name="log">Receives loader notes.</param>
    /// <param name="hub">Hub download settings for a hub id.</param>
    public static CapFiltFilter LoadFilter(string pathOrRepoId, ItmFirstToken firstToken = ItmFirstToken.Enc, Action<string>? log = null, BlipSharp.Checkpoints.Hub.HubOptions? hub = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pathOrRepoId);
        log ??= _ => { };
        if (ReadRunConfig(pathOrRepoId) is { } run)
        {
            switch (run.Config.Task)
            {
                case RetrievalFinetuneTask.TaskName:
                {
                    var recipe = RetrievalRecipe.Read(run.Config);
                    var tokenizer = recipe.LoadTokenizer();
                    using var full = new BlipPretrainingModel(recipe.Model);
                    string file = FinetuneWeights.LoadTrained(full, pathOrRepoId, "--filter");
                    var model = HuggingFaceExport.ToImageTextRetrieval(full);
                    model.eval();
                    int size = recipe.Model.VisionConfig.ImageSize;
                    log($"filter: {file} (blip finetune retrieval, {size} px)");
                    return new CapFiltFilter(model, tokenizer, EvalProcessor(size), FirstId(tokenizer, firstToken, pathOrRepoId), file);
                }
                case PretrainingTrainingTask.Name:
                {
                    using var task = LoadPretrainRun(run, pathOrRepoId, "--filter", log, out string file);
                    var model = HuggingFaceExport.ToImageTextRetrieval(task.PretrainingModel);
                    model.eval();
                    int size = task.PretrainingModel.Config.VisionConfig.ImageSize;
                    log($"filter: the ITM head of {file} (blip pretrain, {size} px)");
                    return new CapFiltFilter(model, task.Tokenizer, EvalProcessor(size), FirstId(task.Tokenizer, firstToken, pathOrRepoId), file);
                }
                default:
                    throw new CapFiltException($"--filter: {pathOrRepoId} is a '{run.Config.Task}' run; a filter is a 'retrieval' or 'pretrain' run, or a Hugging Face retrieval (ITM) checkpoint");
            }
        }
        var matcher = Pipelines.ImageTextMatcher.FromPretrained(pathOrRepoId, new BlipLoadOptions { Log = log, Hub = hub });
        log($"filter: {pathOrRepoId} (Hugging Face BlipForImageTextRetrieval)");
        var tok = matcher.Processor.Tokenizer;
        return new CapFiltFilter(matcher.Model, tok, matcher.Processor.ImageProcessor, FirstId(tok, firstToken, pathOrRepoId), pathOrRepoId);
    }

    /// <summary>BLIP's evaluation transform (bicubic resize to a square, CLIP normalisation) at <paramref name="imageSize"/> px.</summary>
    public static BlipImageProcessor EvalProcessor(int imageSize) =>
        BlipImageProcessor.Create(new BlipImageProcessorOptions { Height = imageSize, Width = imageSize });

    private static long? FirstId(BlipTokenizer tokenizer, ItmFirstToken firstToken, string source)
    {
        if (firstToken == ItmFirstToken.Cls) return null;
        try
        {
            return tokenizer.EncTokenId;
        }
        catch (InvalidOperationException e)
        {
            throw new CapFiltException($"--filter: the tokenizer of {source} has no [ENC] token ({e.Message}); use --itm-token cls");
        }
    }

    private sealed record RunConfig(TrainingConfig Config, string Path);

    /// <summary>The recipe a <c>blip</c> run or checkpoint folder holds; null for anything else (a Hugging Face folder, a hub id).</summary>
    private static RunConfig? ReadRunConfig(string path)
    {
        if (!Directory.Exists(path)) return null;
        string configPath = System.IO.Path.Combine(path, Trainer<IDisposable>.ConfigFile);
        if (!File.Exists(configPath)) return null;
        JsonObject? json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(configPath), documentOptions: new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip }) as JsonObject;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CapFiltException($"{configPath} is not valid JSON: {e.Message}");
        }
        if (json is null || !json.ContainsKey("task")) return null; // a Hugging Face config.json
        return new RunConfig(TrainingConfigLoader.Load(configPath), configPath);
    }

    private static PretrainingTrainingTask LoadPretrainRun(RunConfig run, string path, string option, Action<string> log, out string file)
    {
        file = FinetuneWeights.Resolve(path, option);
        return PretrainingTrainingTask.LoadCheckpoint(run.Path, file, log);
    }
}

/// <summary>A CapFilt run cannot go on: wrong models, inputs or settings, or an output folder from another run. The message says what and where.</summary>
public sealed class CapFiltException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong, naming the option, file or chunk.</param>
    /// <param name="inner">The underlying error.</param>
    public CapFiltException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}
