using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Checkpoints;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Checkpoints;

/// <summary>Options of <see cref="HuggingFaceExport"/>.</summary>
public sealed record HuggingFaceExportOptions
{
    /// <summary>
    /// A folder whose tokenizer files (<c>vocab.txt</c>, <c>tokenizer.json</c>, <c>tokenizer_config.json</c>,
    /// <c>special_tokens_map.json</c>, <c>added_tokens.json</c>; whichever exist, <c>vocab.txt</c> required) are
    /// copied next to the weights, e.g. a Hugging Face BLIP checkpoint. Null writes no tokenizer files.
    /// </summary>
    public string? TokenizerDirectory { get; init; }

    /// <summary>Receives one line per file written.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// Writes the trained parts of a <see cref="BlipPretrainingModel"/> as Hugging Face task checkpoints that
/// <see cref="BlipForConditionalGeneration.FromPretrained"/> and <see cref="BlipForImageTextRetrieval.FromPretrained"/>
/// (and transformers) load: <c>config.json</c>, <c>model.safetensors</c>, <c>preprocessor_config.json</c> for the
/// model's image size, and the tokenizer files. The weights are first loaded strictly into the task model, so the
/// exported key set is exactly the task model's.
/// </summary>
public static class HuggingFaceExport
{
    private static readonly string[] TokenizerFiles = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"];

    /// <summary>The captioning checkpoint: the ViT and the decoder (with the weights it shares with the encoder).</summary>
    /// <exception cref="InvalidOperationException">The model has no text decoder (a retrieval model).</exception>
    public static void SaveForConditionalGeneration(BlipPretrainingModel model, string directory, HuggingFaceExportOptions? options = null)
    {
        _ = model.TextDecoder; // throws with a clear message for a decoder-less (retrieval) model
        Save(model, directory, nameof(BlipForConditionalGeneration), c => new BlipForConditionalGeneration(c), CaptionPrefixes, options);
    }

    /// <summary>The retrieval checkpoint: the ViT, the text encoder, both ITC projections and the ITM head.</summary>
    public static void SaveForImageTextRetrieval(BlipPretrainingModel model, string directory, HuggingFaceExportOptions? options = null) =>
        Save(model, directory, nameof(BlipForImageTextRetrieval), c => new BlipForImageTextRetrieval(c), RetrievalPrefixes, options);

    /// <summary>
    /// The Hugging Face <c>config.json</c> of a task checkpoint made from <paramref name="config"/>: the same vision
    /// and text configs (BLIP's LayerNorm eps 1e-6 included), <c>image_text_hidden_size</c> = <c>embed_dim</c>.
    /// </summary>
    public static BlipConfig TaskConfig(BlipPretrainingConfig config, string architecture) => new BlipConfig
    {
        VisionConfig = config.VisionConfig,
        TextConfig = config.TextConfig,
        ImageTextHiddenSize = config.EmbedDim,
        ProjectionDim = config.EmbedDim,
        LabelSmoothing = config.LabelSmoothing,
        InitializerRange = config.TextConfig.InitializerRange,
        Architectures = [architecture],
        ModelType = "blip",
    }.Normalized();

    /// <summary>
    /// The captioning model of <paramref name="model"/> in memory: a new <see cref="BlipForConditionalGeneration"/> holding
    /// copies of its ViT and decoder (what <see cref="SaveForConditionalGeneration"/> writes). The caller disposes it.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no text decoder (a retrieval model).</exception>
    public static BlipForConditionalGeneration ToConditionalGeneration(BlipPretrainingModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _ = model.TextDecoder;
        return Convert(model, nameof(BlipForConditionalGeneration), c => new BlipForConditionalGeneration(c), CaptionPrefixes);
    }

    /// <summary>
    /// The retrieval model of <paramref name="model"/> in memory: a new <see cref="BlipForImageTextRetrieval"/> holding
    /// copies of its ViT, text encoder, ITC projections and ITM head (what <see cref="SaveForImageTextRetrieval"/>
    /// writes). The caller disposes it.
    /// </summary>
    public static BlipForImageTextRetrieval ToImageTextRetrieval(BlipPretrainingModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Convert(model, nameof(BlipForImageTextRetrieval), c => new BlipForImageTextRetrieval(c), RetrievalPrefixes);
    }

    private static readonly string[] CaptionPrefixes = ["vision_model.", "text_decoder."];

    private static readonly string[] RetrievalPrefixes = ["vision_model.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head."];

    private static T Convert<T>(BlipPretrainingModel model, string architecture, Func<BlipConfig, T> factory, string[] prefixes) where T : nn.Module
    {
        var config = TaskConfig(model.Config, architecture);
        var source = model.state_dict()
            .Where(kv => prefixes.Any(p => kv.Key.StartsWith(p, StringComparison.Ordinal)))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        T task;
        using (no_grad())
        {
            task = factory(config);
        }
        try
        {
            StateDictLoader.LoadStrict(task, source, $"{nameof(BlipPretrainingModel)} ({string.Join(", ", prefixes)})");
            return task;
        }
        catch
        {
            task.Dispose();
            throw;
        }
    }

    private static void Save<T>(BlipPretrainingModel model, string directory, string architecture, Func<BlipConfig, T> factory,
        string[] prefixes, HuggingFaceExportOptions? options) where T : nn.Module
    {
        options ??= new HuggingFaceExportOptions();
        Directory.CreateDirectory(directory);
        var config = TaskConfig(model.Config, architecture);
        using (var task = Convert(model, architecture, factory, prefixes))
        {
            string weights = Path.Combine(directory, "model.safetensors");
            SafeTensors.Save(weights, task.state_dict(), new Dictionary<string, string> { ["format"] = "pt" });
            options.Log?.Invoke($"wrote {weights} ({task.state_dict().Count} tensors, {architecture})");
        }
        string configPath = Path.Combine(directory, "config.json");
        File.WriteAllText(configPath, config.ToJson());
        options.Log?.Invoke($"wrote {configPath}");
        WritePreprocessorConfig(directory, config.VisionConfig.ImageSize, options.Log);
        CopyTokenizer(directory, options);
    }

    /// <summary>Writes the <c>preprocessor_config.json</c> of BLIP's evaluation transform at <paramref name="imageSize"/> px.</summary>
    public static void WritePreprocessorConfig(string directory, int imageSize, Action<string>? log = null)
    {
        var options = new BlipImageProcessorOptions();
        var json = new JsonObject
        {
            ["do_convert_rgb"] = true,
            ["do_normalize"] = true,
            ["do_rescale"] = true,
            ["do_resize"] = true,
            ["image_mean"] = new JsonArray(options.ImageMean.Select(v => (JsonNode)v).ToArray()),
            ["image_processor_type"] = "BlipImageProcessor",
            ["image_std"] = new JsonArray(options.ImageStd.Select(v => (JsonNode)v).ToArray()),
            ["processor_class"] = "BlipProcessor",
            ["resample"] = 3, // PIL bicubic
            ["rescale_factor"] = 1.0 / 255.0,
            ["size"] = new JsonObject { ["height"] = imageSize, ["width"] = imageSize },
        };
        string path = Path.Combine(directory, "preprocessor_config.json");
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        log?.Invoke($"wrote {path} ({imageSize.ToString(CultureInfo.InvariantCulture)} px)");
    }

    private static void CopyTokenizer(string directory, HuggingFaceExportOptions options)
    {
        if (options.TokenizerDirectory is null)
        {
            options.Log?.Invoke($"no tokenizer files written to {directory} (HuggingFaceExportOptions.TokenizerDirectory not set)");
            return;
        }
        string from = options.TokenizerDirectory;
        if (!File.Exists(Path.Combine(from, "vocab.txt")))
            throw new FileNotFoundException($"no vocab.txt in the tokenizer folder {from}", Path.Combine(from, "vocab.txt"));
        foreach (string name in TokenizerFiles)
        {
            string src = Path.Combine(from, name);
            if (!File.Exists(src)) continue;
            string dst = Path.Combine(directory, name);
            if (Path.GetFullPath(src) != Path.GetFullPath(dst)) File.Copy(src, dst, overwrite: true);
            options.Log?.Invoke($"copied {name} from {from}");
        }
    }
}
