using System.Text.Json.Serialization;

namespace BlipSharp.Configuration;

/// <summary>
/// The configuration of <see cref="Modeling.BlipForNlvr"/>: a <see cref="BlipConfig"/> (the ViT and the text
/// transformer) plus what salesforce/BLIP's NLVR2 model adds: the layer from which the two cross-attention outputs
/// are merged by a learned layer instead of averaged, and the <c>[ENC]</c> id the text starts with.
/// </summary>
public sealed record BlipNlvrConfig
{
    /// <summary>BLIP's <c>nlvr_encoder.py</c>: layers with <c>layer_num &gt;= 6</c> get <c>merge_layer</c>.</summary>
    public const int BlipMergeFromLayer = 6;

    /// <summary>The ViT and text transformer settings (the text model has two cross-attentions per layer).</summary>
    [JsonPropertyName("blip")] public BlipConfig Blip { get; init; } = new();

    /// <summary>
    /// Text layers with index &gt;= this merge the two cross-attention outputs with <c>merge_layer</c> (a Linear of
    /// the concatenation, 2H -&gt; H, no activation); earlier layers average them. BLIP: 6. A value at or beyond
    /// <c>num_hidden_layers</c> means every layer averages.
    /// </summary>
    [JsonPropertyName("merge_from_layer")] public int MergeFromLayer { get; init; } = BlipMergeFromLayer;

    /// <summary>The id written over column 0 of the text (<c>[ENC]</c>, 30523 with BLIP's tokenizer).</summary>
    [JsonPropertyName("enc_token_id")] public int EncTokenId { get; init; } = 30523;

    /// <summary>The effective configuration (<see cref="BlipConfig.Normalized"/>: cross-attention width = ViT width).</summary>
    public BlipNlvrConfig Normalized() => this with { Blip = Blip.Normalized() };

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when the configuration is inconsistent.</summary>
    public void Validate()
    {
        Blip.Validate();
        if (MergeFromLayer < 0)
            throw new ArgumentException($"merge_from_layer ({MergeFromLayer}) must be 0 or more.");
        if (EncTokenId < 0 || EncTokenId >= Blip.TextConfig.VocabSize)
            throw new ArgumentException($"enc_token_id ({EncTokenId}) lies outside the vocabulary (size {Blip.TextConfig.VocabSize}).");
    }
}
