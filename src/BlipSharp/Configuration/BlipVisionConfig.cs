using System.Text.Json.Serialization;

namespace BlipSharp.Configuration;

/// <summary>
/// The ViT image encoder's configuration, as Hugging Face's <c>BlipVisionConfig</c>. Absent fields take the
/// transformers defaults (BLIP-base: 768 wide, 12 layers, 12 heads, 384 px, patch 16).
/// </summary>
public sealed record BlipVisionConfig
{
    /// <summary>Width of the patch embeddings and every layer.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 768;
    /// <summary>Width of the MLP's hidden layer.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3072;
    /// <summary>Unused by BLIP itself; kept for round-tripping configs.</summary>
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; init; } = 512;
    /// <summary>Number of transformer layers.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;
    /// <summary>Number of attention heads per layer.</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 12;
    /// <summary>Input channels (3 for RGB).</summary>
    [JsonPropertyName("num_channels")] public int NumChannels { get; init; } = 3;
    /// <summary>Square input resolution the position embeddings were trained for.</summary>
    [JsonPropertyName("image_size")] public int ImageSize { get; init; } = 384;
    /// <summary>Side of each square patch.</summary>
    [JsonPropertyName("patch_size")] public int PatchSize { get; init; } = 16;
    /// <summary>MLP activation (<c>gelu</c> is the exact erf form).</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "gelu";
    /// <summary>LayerNorm epsilon.</summary>
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-5;
    /// <summary>Dropout on attention probabilities (training only).</summary>
    [JsonPropertyName("attention_dropout")] public double AttentionDropout { get; init; } = 0.0;
    /// <summary>Standard deviation of the weight initialisation.</summary>
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 1e-10;
    /// <summary>
    /// Stochastic depth of salesforce/BLIP's ViT (not a Hugging Face field; transformers ignores it): in training,
    /// block i drops each sample's attention and MLP branches with probability <c>linspace(0, rate, depth)[i]</c>.
    /// 0 (the default) turns it off. BLIP uses 0.1 to fine-tune VQA and NLVR2 with ViT-B and 0.1 everywhere with ViT-L.
    /// </summary>
    [JsonPropertyName("drop_path_rate")] public double DropPathRate { get; init; } = 0.0;

    /// <summary>Number of patches along one side for <see cref="ImageSize"/>.</summary>
    [JsonIgnore] public int GridSize => ImageSize / PatchSize;

    /// <summary>Number of position embeddings: patches plus the class token.</summary>
    [JsonIgnore] public int NumPositions => GridSize * GridSize + 1;

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when the configuration is inconsistent.</summary>
    public void Validate()
    {
        ConfigChecks.Positive(HiddenSize, "vision_config.hidden_size");
        ConfigChecks.Positive(IntermediateSize, "vision_config.intermediate_size");
        ConfigChecks.Positive(NumHiddenLayers, "vision_config.num_hidden_layers");
        ConfigChecks.Positive(NumAttentionHeads, "vision_config.num_attention_heads");
        ConfigChecks.Positive(PatchSize, "vision_config.patch_size");
        ConfigChecks.Positive(ImageSize, "vision_config.image_size");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"vision_config.hidden_size ({HiddenSize}) must be divisible by num_attention_heads ({NumAttentionHeads}).");
        if (ImageSize % PatchSize != 0)
            throw new ArgumentException($"vision_config.image_size ({ImageSize}) must be a multiple of patch_size ({PatchSize}).");
        Activations.Validate(HiddenAct, "vision_config.hidden_act");
        if (!(DropPathRate >= 0.0 && DropPathRate < 1.0))
            throw new ArgumentException($"vision_config.drop_path_rate must lie in [0, 1), got {DropPathRate}.");
    }
}
