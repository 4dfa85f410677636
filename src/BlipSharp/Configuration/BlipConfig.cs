using System.Text.Json;
using System.Text.Json.Serialization;

namespace BlipSharp.Configuration;

/// <summary>
/// A BLIP checkpoint's <c>config.json</c>: the text and vision configurations plus the heads' sizes, as
/// Hugging Face's <c>BlipConfig</c>. transformers writes only the fields that differ from its defaults, so
/// every absent field takes the transformers default.
/// </summary>
public sealed record BlipConfig
{
    /// <summary>The text transformer's configuration.</summary>
    [JsonPropertyName("text_config")] public BlipTextConfig TextConfig { get; init; } = new();
    /// <summary>The image encoder's configuration.</summary>
    [JsonPropertyName("vision_config")] public BlipVisionConfig VisionConfig { get; init; } = new();
    /// <summary>Output width of <c>BlipModel</c>'s CLIP-style projections.</summary>
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; init; } = 512;
    /// <summary>Initial value of <c>BlipModel.logit_scale</c> (log of the inverse temperature).</summary>
    [JsonPropertyName("logit_scale_init_value")] public double LogitScaleInitValue { get; init; } = 2.6592;
    /// <summary>Output width of the retrieval model's ITC projections (<c>vision_proj</c>, <c>text_proj</c>).</summary>
    [JsonPropertyName("image_text_hidden_size")] public int ImageTextHiddenSize { get; init; } = 256;
    /// <summary>Top-level label smoothing (kept for round-tripping; the decoder reads the text config's).</summary>
    [JsonPropertyName("label_smoothing")] public double LabelSmoothing { get; init; } = 0.0;
    /// <summary>Standard deviation of the weight initialisation.</summary>
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    /// <summary>The model classes this checkpoint was saved from (e.g. <c>BlipForConditionalGeneration</c>).</summary>
    [JsonPropertyName("architectures")] public IReadOnlyList<string>? Architectures { get; init; }
    /// <summary>Should be <c>blip</c>.</summary>
    [JsonPropertyName("model_type")] public string? ModelType { get; init; }

    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNameCaseInsensitive = false,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
        WriteIndented = true,
    };

    /// <summary>
    /// The effective configuration: the text config's <c>encoder_hidden_size</c> set to the vision width, as
    /// transformers' <c>BlipConfig.__init__</c> does.
    /// </summary>
    public BlipConfig Normalized() =>
        this with { TextConfig = TextConfig with { EncoderHiddenSize = VisionConfig.HiddenSize } };

    /// <summary>Parses <c>config.json</c> text; errors name <paramref name="source"/>.</summary>
    public static BlipConfig Parse(string json, string source = "config.json")
    {
        BlipConfig? config;
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{source}: expected a JSON object.");
            if (doc.RootElement.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String
                && mt.GetString() is { } modelType && modelType != "blip")
                throw new InvalidDataException($"{source}: model_type is '{modelType}', not 'blip': this is not a BLIP checkpoint.");
            config = doc.RootElement.Deserialize<BlipConfig>(Options);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: invalid BLIP config: {e.Message}", e);
        }
        if (config is null) throw new InvalidDataException($"{source}: empty config.");
        config = config.Normalized();
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{source}: {e.Message}", e);
        }
        return config;
    }

    /// <summary>Reads <c>config.json</c> from a checkpoint folder or a file path.</summary>
    public static BlipConfig FromPretrained(string pathOrDirectory)
    {
        string path = Directory.Exists(pathOrDirectory) ? Path.Combine(pathOrDirectory, "config.json") : pathOrDirectory;
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"no config.json at {path}: a BLIP checkpoint folder holds config.json, model.safetensors (or pytorch_model.bin) and the tokenizer and preprocessor files.", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Serialises to <c>config.json</c> text (all fields written).</summary>
    public string ToJson() => JsonSerializer.Serialize(this with { ModelType = ModelType ?? "blip" }, Options);

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when the configuration is inconsistent.</summary>
    public void Validate()
    {
        TextConfig.Validate();
        VisionConfig.Validate();
        ConfigChecks.Positive(ProjectionDim, "projection_dim");
        ConfigChecks.Positive(ImageTextHiddenSize, "image_text_hidden_size");
    }
}
