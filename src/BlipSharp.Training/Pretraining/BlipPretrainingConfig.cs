using System.Text.Json;
using System.Text.Json.Serialization;
using BlipSharp.Configuration;

namespace BlipSharp.Training.Pretraining;

/// <summary>
/// The configuration of <see cref="BlipPretrainingModel"/>: the image and text transformers (in Hugging Face's
/// schema, so exported task checkpoints reuse them) plus what salesforce/BLIP's <c>BLIP_Pretrain</c> constructor
/// takes (<c>embed_dim</c>, <c>queue_size</c>, <c>momentum</c>) and the fixed numbers of its forward pass
/// (temperature 0.07 clamped to [0.001, 0.5], label smoothing 0.1, the <c>[ENC]</c> id). Absent JSON fields take
/// BLIP's defaults (ViT-B/16 at 224 px, BERT-base), so a recipe file need only name what it changes; inside a
/// <c>vision_config</c> or <c>text_config</c> object that is present, absent fields take the Hugging Face defaults,
/// as in a transformers <c>config.json</c>.
/// </summary>
public sealed record BlipPretrainingConfig
{
    /// <summary>The ViT. BLIP's ViT uses LayerNorm eps 1e-6 (Hugging Face's default is 1e-5): set it explicitly.</summary>
    [JsonPropertyName("vision_config")] public BlipVisionConfig VisionConfig { get; init; } = VisionTransformer(224, patchSize: 16, width: 768, depth: 12, heads: 12, mlpRatio: 4.0, layerNormEps: 1e-6);

    /// <summary>The BERT text transformer shared by the encoder, the image-grounded encoder and the decoder.</summary>
    [JsonPropertyName("text_config")] public BlipTextConfig TextConfig { get; init; } = MedConfigBase;

    /// <summary>Width of the ITC feature space (<c>vision_proj</c>, <c>text_proj</c> outputs); BLIP: 256.</summary>
    [JsonPropertyName("embed_dim")] public int EmbedDim { get; init; } = 256;

    /// <summary>Number of momentum features kept per modality; must be a multiple of the batch size. BLIP: 57,600.</summary>
    [JsonPropertyName("queue_size")] public int QueueSize { get; init; } = 57600;

    /// <summary>EMA factor of the momentum encoders: <c>p_m = p_m * m + p * (1 - m)</c>. BLIP: 0.995.</summary>
    [JsonPropertyName("momentum")] public double Momentum { get; init; } = 0.995;

    /// <summary>Initial value of the learnable ITC temperature <c>temp</c>. BLIP: 0.07.</summary>
    [JsonPropertyName("initial_temperature")] public double InitialTemperature { get; init; } = 0.07;

    /// <summary>Lower clamp of <c>temp</c>, applied in place before every forward. BLIP: 0.001.</summary>
    [JsonPropertyName("temperature_min")] public double TemperatureMin { get; init; } = 0.001;

    /// <summary>Upper clamp of <c>temp</c>. BLIP: 0.5.</summary>
    [JsonPropertyName("temperature_max")] public double TemperatureMax { get; init; } = 0.5;

    /// <summary>Keep a queue of image ids next to the feature queues (retrieval fine-tuning: same-id pairs are positives).</summary>
    [JsonPropertyName("id_queue")] public bool IdQueue { get; init; }

    /// <summary>
    /// Build the image-grounded text decoder (LM) and tie it to the encoder, as <c>BLIP_Pretrain</c> does (default).
    /// Off: salesforce/BLIP's <c>BLIP_Retrieval</c>, which has no decoder, so its text encoder is tied to nothing
    /// and a pretraining checkpoint's <c>text_decoder.*</c> entries are not used.
    /// </summary>
    [JsonPropertyName("text_decoder")] public bool TextDecoder { get; init; } = true;

    /// <summary>
    /// This configuration as salesforce/BLIP's <c>BLIP_Retrieval</c> builds it: no text decoder, an id queue
    /// (pairs that share an image id are positives). The other fields are kept.
    /// </summary>
    public BlipPretrainingConfig ForRetrieval() => this with { TextDecoder = false, IdQueue = true };

    /// <summary>
    /// How the ViT's position embeddings start when training from scratch: <c>"trunc_normal"</c> (BLIP: N(0, 0.02))
    /// or <c>"sincos"</c> (2-D sine-cosine start values in MAE's layout, learned from there). A checkpoint overwrites both.
    /// </summary>
    [JsonPropertyName("vision_position_init")] public string VisionPositionInit { get; init; } = BlipWeightInit.TruncNormalPositions;

    /// <summary><c>[ENC]</c>, the first token of every image-grounded encoder pass (ITM).</summary>
    [JsonPropertyName("enc_token_id")] public int EncTokenId { get; init; } = 30523;

    /// <summary>Width of the image states (the ViT width).</summary>
    [JsonIgnore] public int VisionWidth => VisionConfig.HiddenSize;

    /// <summary>Width of the text states.</summary>
    [JsonIgnore] public int TextWidth => TextConfig.HiddenSize;

    /// <summary><c>[DEC]</c>, the first token of every decoder pass.</summary>
    [JsonIgnore] public int DecTokenId => TextConfig.BosTokenId;

    /// <summary>[PAD]: ignored by the LM loss.</summary>
    [JsonIgnore] public int PadTokenId => TextConfig.PadTokenId;

    /// <summary>The label smoothing of the LM loss (BLIP hard-codes 0.1 in <c>BertLMHeadModel</c>).</summary>
    [JsonIgnore] public double LabelSmoothing => TextConfig.LabelSmoothing;

    /// <summary>
    /// The effective configuration: cross-attention reads the ViT width (BLIP sets <c>encoder_width</c> to the
    /// vision width; transformers' <c>BlipConfig</c> does the same) and every text layer has cross-attention.
    /// </summary>
    public BlipPretrainingConfig Normalized() =>
        this with { TextConfig = TextConfig with { EncoderHiddenSize = VisionConfig.HiddenSize, IsDecoder = true } };

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when the configuration is inconsistent.</summary>
    public void Validate()
    {
        VisionConfig.Validate();
        TextConfig.Validate();
        if (EmbedDim <= 0) throw new ArgumentException($"embed_dim must be positive, got {EmbedDim}.");
        if (QueueSize <= 0) throw new ArgumentException($"queue_size must be positive, got {QueueSize}.");
        if (Momentum is < 0 or > 1) throw new ArgumentException($"momentum must lie in [0, 1], got {Momentum}.");
        if (!(TemperatureMin > 0 && TemperatureMin <= TemperatureMax))
            throw new ArgumentException($"temperature_min ({TemperatureMin}) must be positive and at most temperature_max ({TemperatureMax}).");
        if (EncTokenId < 0 || EncTokenId >= TextConfig.VocabSize)
            throw new ArgumentException($"enc_token_id ({EncTokenId}) lies outside the vocabulary (size {TextConfig.VocabSize}).");
        if (DecTokenId < 0 || DecTokenId >= TextConfig.VocabSize)
            throw new ArgumentException($"text_config.bos_token_id ([DEC], {DecTokenId}) lies outside the vocabulary (size {TextConfig.VocabSize}).");
        if (VisionPositionInit is not (BlipWeightInit.TruncNormalPositions or BlipWeightInit.SinCosPositions))
            throw new ArgumentException($"vision_position_init '{VisionPositionInit}' is unknown: use '{BlipWeightInit.TruncNormalPositions}' or '{BlipWeightInit.SinCosPositions}'.");
        if (VisionPositionInit == BlipWeightInit.SinCosPositions && VisionConfig.HiddenSize % 4 != 0)
            throw new ArgumentException($"vision_position_init 'sincos' needs vision_config.hidden_size divisible by 4, got {VisionConfig.HiddenSize}.");
    }

    /// <summary>BLIP's ViT-B/16 model (<c>vit='base'</c>: 768 wide, 12 layers, 12 heads) with the BERT-base text model of <c>configs/med_config.json</c>.</summary>
    /// <param name="imageSize">Training resolution (BLIP pretrains at 224).</param>
    public static BlipPretrainingConfig Base(int imageSize = 224) => new BlipPretrainingConfig
    {
        VisionConfig = VisionTransformer(imageSize, patchSize: 16, width: 768, depth: 12, heads: 12, mlpRatio: 4.0, layerNormEps: 1e-6),
        TextConfig = MedConfigBase,
    }.Normalized();

    /// <summary>
    /// BLIP's ViT-L/16 model (<c>vit='large'</c>: 1024 wide, 24 layers, 16 heads, drop path 0.1) with the BERT-base
    /// text model. BLIP's <c>create_vit</c> passes <c>drop_path_rate=0.1 or drop_path_rate</c> for ViT-L, which is 0.1
    /// whatever the caller asks (pretraining's explicit 0 included), for the momentum encoder too.
    /// </summary>
    /// <param name="imageSize">Training resolution (BLIP pretrains at 224).</param>
    public static BlipPretrainingConfig Large(int imageSize = 224) => new BlipPretrainingConfig
    {
        VisionConfig = VisionTransformer(imageSize, patchSize: 16, width: 1024, depth: 24, heads: 16, mlpRatio: 4.0, layerNormEps: 1e-6) with { DropPathRate = 0.1 },
        TextConfig = MedConfigBase,
    }.Normalized();

    /// <summary>The text model of BLIP's <c>configs/med_config.json</c> (BERT-base, vocabulary 30,524, dropout 0.1).</summary>
    private static BlipTextConfig MedConfigBase => new()
    {
        VocabSize = 30524, HiddenSize = 768, NumHiddenLayers = 12, NumAttentionHeads = 12, IntermediateSize = 3072,
        MaxPositionEmbeddings = 512, LayerNormEps = 1e-12, HiddenAct = "gelu", HiddenDropoutProb = 0.1,
        AttentionProbsDropoutProb = 0.1, PadTokenId = 0, LabelSmoothing = 0.1,
    };

    /// <summary>
    /// The settings of BLIP's <c>models.vit.VisionTransformer</c> in Hugging Face's vision schema
    /// (<c>mlp_hidden = int(width * mlp_ratio)</c>, GELU, qkv bias).
    /// </summary>
    public static BlipVisionConfig VisionTransformer(int imageSize, int patchSize, int width, int depth, int heads, double mlpRatio, double layerNormEps) => new()
    {
        ImageSize = imageSize,
        PatchSize = patchSize,
        HiddenSize = width,
        NumHiddenLayers = depth,
        NumAttentionHeads = heads,
        IntermediateSize = (int)(width * mlpRatio),
        LayerNormEps = layerNormEps,
        HiddenAct = "gelu",
    };

    /// <summary>
    /// Reads a BLIP <c>med_config</c> (a transformers 4.15 <c>BertConfig</c> JSON file such as BLIP's
    /// <c>configs/med_config.json</c>) into the text schema. <c>encoder_width</c> is ignored (BLIP overwrites it
    /// with the vision width); <c>type_vocab_size</c> is ignored (med.py's embeddings have no token types);
    /// <c>add_cross_attention</c> must be true.
    /// </summary>
    public static BlipTextConfig TextConfigFromMedConfig(string medConfigJson, string source = "med_config.json")
    {
        using var doc = JsonDocument.Parse(medConfigJson);
        var root = doc.RootElement;
        if (root.TryGetProperty("add_cross_attention", out var cross) && cross.ValueKind == JsonValueKind.False)
            throw new InvalidDataException($"{source}: add_cross_attention is false; BLIP's text model needs cross-attention in every layer.");
        int Int(string name, int fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;
        double Double(string name, double fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        string Str(string name, string fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : fallback;
        // transformers 4.15 BertConfig defaults for absent fields.
        return new BlipTextConfig
        {
            VocabSize = Int("vocab_size", 30522),
            HiddenSize = Int("hidden_size", 768),
            NumHiddenLayers = Int("num_hidden_layers", 12),
            NumAttentionHeads = Int("num_attention_heads", 12),
            IntermediateSize = Int("intermediate_size", 3072),
            HiddenAct = Str("hidden_act", "gelu"),
            HiddenDropoutProb = Double("hidden_dropout_prob", 0.1),
            AttentionProbsDropoutProb = Double("attention_probs_dropout_prob", 0.1),
            MaxPositionEmbeddings = Int("max_position_embeddings", 512),
            LayerNormEps = Double("layer_norm_eps", 1e-12),
            InitializerRange = Double("initializer_range", 0.02),
            PadTokenId = Int("pad_token_id", 0),
            LabelSmoothing = 0.1,
        };
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
    };

    /// <summary>Parses this record's JSON (snake_case, absent fields take BLIP's defaults) and validates it.</summary>
    public static BlipPretrainingConfig Parse(string json, string source = "pretraining config")
    {
        BlipPretrainingConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<BlipPretrainingConfig>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: {e.Message}", e);
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

    /// <summary>Serialises to JSON (every field written), the form saved next to checkpoints.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);
}
