using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;

namespace BlipSharp.Training.Nlvr;

/// <summary>
/// The <c>model</c> section of an <c>nlvr</c> recipe: the weights fine-tuning starts from (<c>init</c>), the tokenizer,
/// the ViT and text transformer (<c>vision_config</c>, <c>text_config</c>; absent ones are BLIP's ViT-B/16 and
/// BERT-base, as in a pretraining recipe), <c>enc_token_id</c> and <c>merge_from_layer</c> (BLIP: 6). Unknown keys, here
/// and inside the two sub-configurations, are errors naming the key (a misspelt key would otherwise be ignored).
/// </summary>
/// <param name="Config">The model's configuration.</param>
/// <param name="Init">The pretraining weights (<c>model.init</c>): a BLIP <c>.pth</c>, a <c>.safetensors</c>, a checkpoint or run folder.</param>
/// <param name="Tokenizer">A folder with <c>vocab.txt</c> or a hub id (<c>model.tokenizer</c>).</param>
public sealed record NlvrRecipe(BlipNlvrConfig Config, string Init, string Tokenizer)
{
    /// <summary>The keys of the <c>model</c> section.</summary>
    public static IReadOnlyList<string> ModelKeys { get; } = ["init", "tokenizer", "vision_config", "text_config", "enc_token_id", "merge_from_layer"];

    /// <summary>Reads and checks the recipe's <c>model</c> section (the ViT's image size must be <c>data.image_size</c>).</summary>
    /// <param name="config">The recipe.</param>
    /// <exception cref="TrainingConfigException">A key is missing, unknown or wrong; the message names it.</exception>
    public static NlvrRecipe Read(TrainingConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var section = config.Model;
        foreach (var (key, _) in section)
            if (!ModelKeys.Contains(key, StringComparer.Ordinal))
                throw new TrainingConfigException("model." + key, $"is not a known key of the nlvr task (known: {string.Join(", ", ModelKeys)})");
        CheckKeys<BlipVisionConfig>(section, "vision_config");
        CheckKeys<BlipTextConfig>(section, "text_config");

        string init = EvaluationOutput.RequiredString(section, "init", "model");
        string tokenizer = ModelSection.Read(section, "tokenizer", (string?)null)
            ?? throw new TrainingConfigException("model.tokenizer", "must name the tokenizer: a folder with vocab.txt or a hub id such as Salesforce/blip-image-captioning-base");
        int mergeFrom = ModelSection.Read(section, "merge_from_layer", BlipNlvrConfig.BlipMergeFromLayer);
        if (mergeFrom < 0) throw new TrainingConfigException("model.merge_from_layer", $"must be 0 or more (got {mergeFrom})");

        var transformers = new JsonObject();
        foreach (string key in new[] { "vision_config", "text_config", "enc_token_id" })
            if (section[key] is { } value) transformers[key] = value.DeepClone();
        BlipPretrainingConfig parsed;
        try
        {
            parsed = BlipPretrainingConfig.Parse(transformers.ToJsonString(), "model");
        }
        catch (InvalidDataException e)
        {
            throw new TrainingConfigException(e.Message, e);
        }
        var model = new BlipNlvrConfig
        {
            Blip = new BlipConfig { VisionConfig = parsed.VisionConfig, TextConfig = parsed.TextConfig },
            EncTokenId = parsed.EncTokenId,
            MergeFromLayer = mergeFrom,
        }.Normalized();
        try
        {
            model.Validate();
        }
        catch (ArgumentException e)
        {
            throw new TrainingConfigException("model: " + e.Message, e);
        }
        if (model.Blip.VisionConfig.ImageSize != config.Data.ImageSize)
            throw new TrainingConfigException("model.vision_config.image_size", $"({model.Blip.VisionConfig.ImageSize}) must equal data.image_size ({config.Data.ImageSize})");
        return new NlvrRecipe(model, init, tokenizer);
    }

    /// <summary>
    /// Loads the tokenizer and checks it against the model: every id has an embedding row, and <c>[ENC]</c> and
    /// <c>[PAD]</c> are the ids the model uses.
    /// </summary>
    /// <exception cref="TrainingConfigException">The tokenizer does not fit the model; the message names the key.</exception>
    public BlipTokenizer LoadTokenizer() => RecipeTokenizer.Load(Tokenizer, new TokenizerRequirements("BLIP's NLVR model", Config.Blip.TextConfig.VocabSize,
        Config.Blip.TextConfig.PadTokenId, EncTokenId: Config.EncTokenId));

    /// <summary>
    /// The model as fine-tuning starts it: built from <see cref="Config"/> (the torch generator gives the new head its
    /// initialisation), then filled from <see cref="Init"/> by <see cref="NlvrCheckpoint.FromPretraining(BlipForNlvr, IReadOnlyDictionary{string, TorchSharp.torch.Tensor}, string, Action{string}?)"/>.
    /// </summary>
    /// <param name="log">Receives the loader's lines.</param>
    public BlipForNlvr CreateModel(Action<string> log)
    {
        ArgumentNullException.ThrowIfNull(log);
        var model = new BlipForNlvr(Config);
        try
        {
            var (file, weights) = FinetuneWeights.ReadPretrained(Init);
            try
            {
                NlvrCheckpoint.FromPretraining(model, weights, file, log);
            }
            finally
            {
                foreach (var t in weights.Values) t.Dispose();
            }
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The keys of <c>model.NAME</c> must be properties of <typeparamref name="T"/>.</summary>
    private static void CheckKeys<T>(JsonObject section, string name)
    {
        if (section[name] is null) return;
        if (section[name] is not JsonObject sub) throw new TrainingConfigException($"model.{name}", "must be an object");
        var known = typeof(T).GetProperties().Select(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name).OfType<string>().ToHashSet(StringComparer.Ordinal);
        foreach (var (key, _) in sub)
            if (!known.Contains(key))
                throw new TrainingConfigException($"model.{name}.{key}", $"is not a known key of {name} (known: {string.Join(", ", known.Order(StringComparer.Ordinal))})");
    }
}
