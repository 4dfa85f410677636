using BlipSharp.Training.Pretraining;
using Xunit;

namespace BlipSharp.Tests.Pretraining;

/// <summary>The pretraining configuration: BLIP's presets, med_config reading and the JSON recipe form.</summary>
public sealed class PretrainConfigTests
{
    [Fact]
    public void BasePresetIsBlipPretrainDefaults()
    {
        var c = BlipPretrainingConfig.Base();
        Assert.Equal((224, 16, 768, 12, 12, 3072, 1e-6), (c.VisionConfig.ImageSize, c.VisionConfig.PatchSize, c.VisionConfig.HiddenSize,
            c.VisionConfig.NumHiddenLayers, c.VisionConfig.NumAttentionHeads, c.VisionConfig.IntermediateSize, c.VisionConfig.LayerNormEps));
        Assert.Equal((30524, 768, 12, 12, 3072, 768), (c.TextConfig.VocabSize, c.TextConfig.HiddenSize, c.TextConfig.NumHiddenLayers,
            c.TextConfig.NumAttentionHeads, c.TextConfig.IntermediateSize, c.TextConfig.EncoderHiddenSize));
        Assert.Equal((256, 57600, 0.995, 0.07, 0.001, 0.5, 0.1), (c.EmbedDim, c.QueueSize, c.Momentum, c.InitialTemperature,
            c.TemperatureMin, c.TemperatureMax, c.LabelSmoothing));
        Assert.Equal((30522, 30523, 0), (c.DecTokenId, c.EncTokenId, c.PadTokenId));
        Assert.Equal(1024, BlipPretrainingConfig.Large(384).TextConfig.EncoderHiddenSize);
        Assert.Equal(BlipPretrainingConfig.Base(), new BlipPretrainingConfig().Normalized());
    }

    [Fact]
    public void MedConfigIsReadAsBlipsBertConfig()
    {
        const string medConfig = """
            {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
             "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
             "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 12,
             "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524, "encoder_width": 768, "add_cross_attention": true}
            """;
        var text = BlipPretrainingConfig.TextConfigFromMedConfig(medConfig);
        Assert.Equal(BlipPretrainingConfig.Base().TextConfig with { EncoderHiddenSize = text.EncoderHiddenSize }, text);
        Assert.Throws<InvalidDataException>(() => BlipPretrainingConfig.TextConfigFromMedConfig("""{"add_cross_attention": false}"""));
    }

    [Fact]
    public void JsonRecipeRoundTripsAndAbsentFieldsAreBlipDefaults()
    {
        var tiny = TinyPretraining.Config(queueSize: 16, idQueue: true);
        Assert.Equal(tiny, BlipPretrainingConfig.Parse(tiny.ToJson()));
        var partial = BlipPretrainingConfig.Parse("""{"queue_size": 1024, "vision_config": {"image_size": 384, "layer_norm_eps": 1e-6}}""");
        Assert.Equal(1024, partial.QueueSize);
        Assert.Equal(384, partial.VisionConfig.ImageSize);
        Assert.Equal(0.995, partial.Momentum);
        var e = Assert.Throws<InvalidDataException>(() => BlipPretrainingConfig.Parse("""{"temperature_min": 0.9, "temperature_max": 0.5}"""));
        Assert.Contains("temperature_min", e.Message);
    }
}
