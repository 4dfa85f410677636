using System.Text.RegularExpressions;

namespace BlipSharp.Training.Checkpoints;

/// <summary>One renaming rule of <see cref="OriginalBlipKeyMap"/>.</summary>
/// <param name="Pattern">Regular expression over the whole original key.</param>
/// <param name="Replacement">Replacement (<c>$1</c> keeps the momentum suffix <c>_m</c>, <c>$2</c> the block number).</param>
/// <param name="Description">What the rule renames.</param>
public sealed record KeyRule(string Pattern, string Replacement, string Description);

/// <summary>
/// The one explicit map from salesforce/BLIP's state_dict keys (<c>model_base*.pth</c>: <c>visual_encoder.blocks.N.attn.qkv.weight</c>,
/// <c>text_encoder.encoder.layer.N...</c>) onto <see cref="Pretraining.BlipPretrainingModel"/>'s (Hugging Face module
/// names). The ViT keys are renamed as transformers' <c>convert_blip_original_pytorch_to_hf.rename_key</c> renames them,
/// with the momentum ViT kept apart (<c>visual_encoder_m</c> -> <c>vision_model_m</c>); every text, projection, head,
/// temperature and queue key keeps its name; retrieval checkpoints' <c>ptr_queue</c> becomes <c>queue_ptr</c>. Two
/// kinds of original entries are not parameters here and are checked, then dropped, by the loader:
/// <c>*.embeddings.position_ids</c> (a persistent buffer in BLIP's transformers 4.15 BERT, always <c>arange</c>) and
/// <c>text_decoder.cls.predictions.decoder.bias</c> (the same tensor as <c>text_decoder.cls.predictions.bias</c>).
/// </summary>
public static class OriginalBlipKeyMap
{
    /// <summary>The original key of the LM head's bias alias, which has no key of its own here.</summary>
    public const string DecoderBiasAlias = "text_decoder.cls.predictions.decoder.bias";

    /// <summary>The key the decoder bias alias stands for.</summary>
    public const string DecoderBias = "text_decoder.cls.predictions.bias";

    private const string Vit = @"^visual_encoder(_m)?\.";

    /// <summary>The renaming rules, applied in order (at most one matches a key).</summary>
    public static IReadOnlyList<KeyRule> Rules { get; } =
    [
        new(Vit + @"cls_token$", "vision_model$1.embeddings.class_embedding", "ViT class token"),
        new(Vit + @"pos_embed$", "vision_model$1.embeddings.position_embedding", "ViT position embeddings"),
        new(Vit + @"patch_embed\.proj\.(weight|bias)$", "vision_model$1.embeddings.patch_embedding.$2", "patch projection (Conv2d)"),
        new(Vit + @"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", "vision_model$1.encoder.layers.$2.self_attn.qkv.$3", "fused q/k/v projection"),
        new(Vit + @"blocks\.(\d+)\.attn\.proj\.(weight|bias)$", "vision_model$1.encoder.layers.$2.self_attn.projection.$3", "attention output projection"),
        new(Vit + @"blocks\.(\d+)\.norm1\.(weight|bias)$", "vision_model$1.encoder.layers.$2.layer_norm1.$3", "LayerNorm before attention"),
        new(Vit + @"blocks\.(\d+)\.norm2\.(weight|bias)$", "vision_model$1.encoder.layers.$2.layer_norm2.$3", "LayerNorm before the MLP"),
        new(Vit + @"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", "vision_model$1.encoder.layers.$2.mlp.$3.$4", "MLP"),
        new(Vit + @"norm\.(weight|bias)$", "vision_model$1.post_layernorm.$2", "final LayerNorm"),
        new(@"^ptr_queue$", "queue_ptr", "queue pointer (BLIP_Retrieval's name)"),
    ];

    private static readonly (Regex Regex, string Replacement)[] Compiled =
        Rules.Select(r => (new Regex(r.Pattern, RegexOptions.CultureInvariant), r.Replacement)).ToArray();

    private static readonly Regex PositionIds = new(@"(^|\.)embeddings\.position_ids$", RegexOptions.CultureInvariant);

    /// <summary>
    /// The BlipSharp key of an original key. Keys no rule matches keep their name (text models, projections, heads,
    /// temperature, queues); an original ViT key no rule matches (e.g. a classifier head) keeps its
    /// <c>visual_encoder</c> prefix and is reported as unexpected by strict loading.
    /// </summary>
    public static string Rename(string originalKey)
    {
        foreach (var (regex, replacement) in Compiled)
        {
            if (regex.IsMatch(originalKey)) return regex.Replace(originalKey, replacement);
        }
        return originalKey;
    }

    /// <summary>True for BLIP's persistent <c>*.embeddings.position_ids</c> buffers (derived; not stored here).</summary>
    public static bool IsPositionIds(string originalKey) => PositionIds.IsMatch(originalKey);
}
