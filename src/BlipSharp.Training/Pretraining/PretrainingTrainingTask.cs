using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlipSharp.Processing;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Training.Pretraining;

/// <summary>
/// The <c>pretrain</c> task of the trainer: BLIP's pretraining (<see cref="PretrainingTask"/>: ITC + ITM + LM, momentum
/// encoders updated inside each step as BLIP does, queues) on loader batches. It tokenizes the captions as
/// pretrain.py does (<c>padding='max_length', truncation=True, max_length=30</c>), ramps alpha over the first two
/// epochs (<see cref="AlphaSchedule.Pretraining"/>), and logs BLIP's names: <c>loss_ita</c>, <c>loss_itm</c>,
/// <c>loss_lm</c> (and <c>alpha</c> and the ITC temperature <c>temp</c>). The optimizer gets every trainable parameter once (the decoder's tensors shared
/// with the encoder are the encoder's), decayed, as BLIP's AdamW.
/// </summary>
/// <remarks>
/// The recipe's <c>model</c> section is a <see cref="BlipPretrainingConfig"/> (<c>vision_config</c>, <c>text_config</c>,
/// <c>embed_dim</c>, <c>queue_size</c>, <c>momentum</c>, ...) plus <c>tokenizer</c> (a folder with <c>vocab.txt</c> or a
/// Hugging Face hub id), <c>alpha</c> (0.4), <c>max_text_length</c> (30) and the loss weights <c>itc_weight</c>,
/// <c>itm_weight</c> and <c>lm_weight</c> (BLIP sums the three losses: 1 each). With <c>train.precision</c> bfloat16 the
/// model is created in bfloat16 (its tied tensors cannot be converted later).
/// </remarks>
public sealed class PretrainingTrainingTask : ITrainingTask<ImageTextBatch>
{
    /// <summary>The recipe's <c>task</c> name.</summary>
    public const string Name = "pretrain";

    private static readonly string[] TaskKeys = ["tokenizer", "alpha", "max_text_length", "itc_weight", "itm_weight", "lm_weight", "vision_init"];

    private readonly PretrainingTask _task;
    private readonly BlipTokenizer _tokenizer;
    private readonly TokenizerEncodeOptions _textOptions;

    /// <summary>Wraps a model and a tokenizer.</summary>
    /// <param name="model">The model (disposed with the task).</param>
    /// <param name="tokenizer">The BERT tokenizer with <c>[DEC]</c> and <c>[ENC]</c>.</param>
    /// <param name="alpha">The final weight of the momentum soft targets (BLIP: 0.4).</param>
    /// <param name="maxTextLength">Captions are padded and cut to this many tokens (BLIP: 30).</param>
    /// <param name="options">Loss weights (BLIP: 1 each) and the hard-negative epsilon.</param>
    public PretrainingTrainingTask(BlipPretrainingModel model, BlipTokenizer tokenizer, double alpha = AlphaSchedule.BlipAlpha, int maxTextLength = 30,
        PretrainingTaskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _task = new PretrainingTask(model, options: options);
        _tokenizer = tokenizer;
        Alpha = alpha;
        _textOptions = new TokenizerEncodeOptions { Padding = PaddingStrategy.MaxLength, Truncation = true, MaxLength = maxTextLength };
    }

    /// <summary>The model.</summary>
    public BlipPretrainingModel PretrainingModel => _task.Model;

    /// <inheritdoc />
    public nn.Module Model => _task.Model;

    /// <summary>The tokenizer the captions are encoded with.</summary>
    public BlipTokenizer Tokenizer => _tokenizer;

    /// <summary>The tokenizer settings of the captions (max length, padding).</summary>
    public TokenizerEncodeOptions TextOptions => _textOptions;

    /// <summary>The final alpha.</summary>
    public double Alpha { get; }

    /// <summary>
    /// The model of a <c>blip pretrain</c> run: its saved recipe (<paramref name="configPath"/>) rebuilt without reading the
    /// ViT initialisation again, with the weights of <paramref name="weightsPath"/> (a checkpoint's
    /// <c>model.safetensors</c>) loaded strictly. The caller disposes the task.
    /// </summary>
    /// <exception cref="InvalidDataException">The recipe is not a <c>pretrain</c> recipe.</exception>
    internal static PretrainingTrainingTask LoadCheckpoint(string configPath, string weightsPath, Action<string> log)
    {
        var config = TrainingConfigLoader.Load(configPath, ["model.vision_init=null"]); // the checkpoint holds every weight
        if (config.Task != Name) throw new InvalidDataException($"{configPath}: task '{config.Task}' is not '{Name}'.");
        var task = Create(config, new TrainingTaskContext(new ImageTextDataset("none", []), log));
        try
        {
            var weights = BlipSharp.Checkpoints.SafeTensors.Load(weightsPath);
            try
            {
                BlipSharp.Checkpoints.StateDictLoader.LoadStrict(task.PretrainingModel, weights, weightsPath);
            }
            finally
            {
                foreach (var t in weights.Values) t.Dispose();
            }
            return task;
        }
        catch
        {
            task.Dispose();
            throw;
        }
    }

    /// <summary>Builds the task a recipe describes (registered as <see cref="Name"/> in <see cref="TrainingTasks"/>).</summary>
    /// <param name="config">The recipe.</param>
    /// <param name="context">The data and a log.</param>
    public static PretrainingTrainingTask Create(TrainingConfig config, TrainingTaskContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = (JsonObject)config.Model.DeepClone();
        var known = typeof(BlipPretrainingConfig).GetProperties()
            .Select(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name).OfType<string>().Concat(TaskKeys).ToArray();
        foreach (var (key, _) in section)
            if (!known.Contains(key, StringComparer.Ordinal))
                throw new TrainingConfigException("model." + key, $"is not a known key of the pretrain task (known: {string.Join(", ", known)})");

        string tokenizer = ModelSection.Read(section, "tokenizer", (string?)null)
            ?? throw new TrainingConfigException("model.tokenizer", "must name the tokenizer: a folder with vocab.txt or a hub id such as Salesforce/blip-image-captioning-base");
        double alpha = ModelSection.Read(section, "alpha", AlphaSchedule.BlipAlpha);
        int maxTextLength = ModelSection.Read(section, "max_text_length", 30);
        if (!(alpha >= 0 && alpha <= 1)) throw new TrainingConfigException("model.alpha", $"must be within 0..1 (got {alpha})");
        if (maxTextLength < 2) throw new TrainingConfigException("model.max_text_length", $"must be at least 2 (got {maxTextLength})");
        var weights = new PretrainingTaskOptions
        {
            ItcWeight = LossWeight(section, "itc_weight"),
            ItmWeight = LossWeight(section, "itm_weight"),
            LmWeight = LossWeight(section, "lm_weight"),
        };
        string? visionInit = ModelSection.Read(section, "vision_init", (string?)null);
        foreach (string key in TaskKeys) section.Remove(key);

        BlipPretrainingConfig model;
        try
        {
            model = BlipPretrainingConfig.Parse(section.ToJsonString(), "model");
        }
        catch (InvalidDataException e)
        {
            throw new TrainingConfigException(e.Message, e);
        }
        if (model.VisionConfig.ImageSize != config.Data.ImageSize)
            throw new TrainingConfigException("model.vision_config.image_size", $"({model.VisionConfig.ImageSize}) must equal data.image_size ({config.Data.ImageSize})");
        if (model.QueueSize % config.Data.BatchSize != 0)
            throw new TrainingConfigException("model.queue_size", $"({model.QueueSize}) must be a multiple of data.batch_size ({config.Data.BatchSize}), as BLIP asserts");
        if (maxTextLength > model.TextConfig.MaxPositionEmbeddings)
            throw new TrainingConfigException("model.max_text_length", $"({maxTextLength}) exceeds text_config.max_position_embeddings ({model.TextConfig.MaxPositionEmbeddings})");

        var blipTokenizer = BlipTokenizer.FromPretrained(tokenizer);
        RecipeTokenizer.Check(blipTokenizer, tokenizer, new TokenizerRequirements("BLIP", model.TextConfig.VocabSize, model.PadTokenId, model.DecTokenId, model.EncTokenId, model.TextConfig.SepTokenId));
        var dtype = config.Train.Precision == Precision.BFloat16 ? ScalarType.BFloat16 : (ScalarType?)null;
        context?.Log($"pretrain: ViT {model.VisionConfig.HiddenSize}x{model.VisionConfig.NumHiddenLayers} at {model.VisionConfig.ImageSize} px"
            + (model.VisionConfig.DropPathRate > 0 ? $" (drop path {model.VisionConfig.DropPathRate})" : "") + ", "
            + $"text {model.TextConfig.HiddenSize}x{model.TextConfig.NumHiddenLayers}, queue {model.QueueSize}, alpha {alpha}"
            + (weights.ItcWeight == 1 && weights.ItmWeight == 1 && weights.LmWeight == 1 ? "" : $", loss weights itc {weights.ItcWeight} itm {weights.ItmWeight} lm {weights.LmWeight}"));
        var pretraining = new BlipPretrainingModel(model, dtype: dtype);
        try
        {
            if (visionInit is not null)
            {
                // BLIP's vision encoder starts from a pretrained ViT (DeiT for ViT-B); the momentum copy starts equal to it.
                PretrainedVisionEncoder.LoadForRecipe(pretraining.vision_model, visionInit, context?.Log ?? (_ => { }));
                pretraining.CopyParamsToMomentum();
            }
            return new PretrainingTrainingTask(pretraining, blipTokenizer, alpha, maxTextLength, weights);
        }
        catch
        {
            pretraining.Dispose();
            throw;
        }
    }


    private static double LossWeight(JsonObject section, string key)
    {
        double weight = ModelSection.Read(section, key, 1.0);
        if (!(weight >= 0 && double.IsFinite(weight))) throw new TrainingConfigException("model." + key, $"must be a finite weight of at least 0 (got {weight})");
        return weight;
    }

    /// <inheritdoc />
    public IReadOnlyList<ParameterGroup> ParameterGroups(double weightDecay) =>
        Optimization.ParameterGroups.Build(_task.Model.TrainableParameters(), weightDecay);

    /// <inheritdoc />
    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        var text = _tokenizer.EncodeToTensors(batch.Captions, _textOptions);                  // (B, T) ids and mask
        double alpha = AlphaSchedule.Pretraining(context.Epoch, context.BatchInEpoch, context.BatchesPerEpoch, Alpha);
        var pixels = batch.Pixels.to_type(context.ComputeType);                               // (B, 3, S, S)
        var losses = _task.Step(new PretrainingBatch(pixels, text.InputIds, text.AttentionMask), alpha);
        return TrainingStepOutput.Of(losses.Total, ("loss_ita", losses.Itc), ("loss_itm", losses.Itm), ("loss_lm", losses.Lm),
            ("alpha", tensor(alpha)), ("temp", _task.Model.temp.detach().clone()));
    }

    /// <inheritdoc />
    public void Dispose() => _task.Model.Dispose();
}
