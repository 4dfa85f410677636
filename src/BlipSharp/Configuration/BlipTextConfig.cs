using System.Text.Json.Serialization;

namespace BlipSharp.Configuration;

/// <summary>
/// The BERT-style text transformer's configuration, as Hugging Face's <c>BlipTextConfig</c>. Absent fields
/// take the transformers defaults. <see cref="EncoderHiddenSize"/> is overwritten with the vision width by
/// <see cref="BlipConfig"/>, exactly as transformers does.
/// </summary>
public sealed record BlipTextConfig
{
    /// <summary>Vocabulary size (bert-base-uncased plus [DEC] and [ENC]).</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 30524;
    /// <summary>Width of every layer.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 768;
    /// <summary>Width of the image states that cross-attention reads.</summary>
    [JsonPropertyName("encoder_hidden_size")] public int EncoderHiddenSize { get; init; } = 768;
    /// <summary>Width of the feed-forward hidden layer.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3072;
    /// <summary>Unused by BLIP itself; kept for round-tripping configs.</summary>
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; init; } = 768;
    /// <summary>Number of transformer layers.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;
    /// <summary>Attention heads per layer (transformers' default is 8; real checkpoints say 12).</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 8;
    /// <summary>Number of learned absolute position embeddings.</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary>Feed-forward activation.</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "gelu";
    /// <summary>LayerNorm epsilon.</summary>
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-12;
    /// <summary>Dropout after dense layers (training only).</summary>
    [JsonPropertyName("hidden_dropout_prob")] public double HiddenDropoutProb { get; init; } = 0.0;
    /// <summary>Dropout on attention probabilities (training only).</summary>
    [JsonPropertyName("attention_probs_dropout_prob")] public double AttentionProbsDropoutProb { get; init; } = 0.0;
    /// <summary>Standard deviation of the weight initialisation.</summary>
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    /// <summary>[DEC], the start of every decoded sequence.</summary>
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; init; } = 30522;
    /// <summary>transformers' config value (2); BLIP's generation uses <see cref="SepTokenId"/> as end of sequence.</summary>
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; init; } = 2;
    /// <summary>[PAD].</summary>
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; init; } = 0;
    /// <summary>[SEP], the end of sequence for generation.</summary>
    [JsonPropertyName("sep_token_id")] public int SepTokenId { get; init; } = 102;
    /// <summary>When true every layer carries cross-attention weights (all BLIP checkpoints).</summary>
    [JsonPropertyName("is_decoder")] public bool IsDecoder { get; init; } = true;
    /// <summary>Whether generation may cache self-attention keys and values.</summary>
    [JsonPropertyName("use_cache")] public bool UseCache { get; init; } = true;
    /// <summary>Label smoothing of the decoder's cross-entropy (transformers 4.38+: 0.0; the original BLIP: 0.1).</summary>
    [JsonPropertyName("label_smoothing")] public double LabelSmoothing { get; init; } = 0.0;

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when the configuration is inconsistent.</summary>
    public void Validate()
    {
        ConfigChecks.Positive(VocabSize, "text_config.vocab_size");
        ConfigChecks.Positive(HiddenSize, "text_config.hidden_size");
        ConfigChecks.Positive(EncoderHiddenSize, "text_config.encoder_hidden_size");
        ConfigChecks.Positive(IntermediateSize, "text_config.intermediate_size");
        ConfigChecks.Positive(NumHiddenLayers, "text_config.num_hidden_layers");
        ConfigChecks.Positive(NumAttentionHeads, "text_config.num_attention_heads");
        ConfigChecks.Positive(MaxPositionEmbeddings, "text_config.max_position_embeddings");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"text_config.hidden_size ({HiddenSize}) must be divisible by num_attention_heads ({NumAttentionHeads}).");
        if (LabelSmoothing is < 0 or > 1)
            throw new ArgumentException($"text_config.label_smoothing must lie in [0, 1], got {LabelSmoothing}.");
        Activations.Validate(HiddenAct, "text_config.hidden_act");
    }
}

internal static class ConfigChecks
{
    public static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive, got {value}.");
    }
}
