using BlipSharp.Processing;

namespace BlipSharp.Training.Training;

/// <summary>
/// The special ids a task's model uses, checked against its recipe's tokenizer by <see cref="RecipeTokenizer.Check"/>.
/// Null: the model does not use that token.
/// </summary>
/// <param name="Model">Named when the tokenizer lacks a token, e.g. <c>BLIP</c> or <c>BLIP_VQA</c>.</param>
/// <param name="VocabSize">Rows of the word embeddings (<c>model.text_config.vocab_size</c>).</param>
/// <param name="PadTokenId">[PAD] (<c>model.text_config.pad_token_id</c>).</param>
/// <param name="DecTokenId">[DEC], which starts decoded texts (<c>model.text_config.bos_token_id</c>).</param>
/// <param name="EncTokenId">[ENC], which starts ITM texts (<c>model.enc_token_id</c>).</param>
/// <param name="SepTokenId">[SEP], which ends decoded texts (<c>model.text_config.sep_token_id</c>).</param>
/// <param name="DecodedTexts">What the decoder writes, for the [SEP] error ("captions", "answers").</param>
internal sealed record TokenizerRequirements(string Model, long VocabSize, long PadTokenId, long? DecTokenId = null, long? EncTokenId = null,
    long? SepTokenId = null, string DecodedTexts = "captions");

/// <summary>Loads a recipe's tokenizer and checks that it fits the model, with errors naming the recipe key.</summary>
internal static class RecipeTokenizer
{
    /// <summary>Loads <paramref name="name"/> (a folder with vocab.txt or a hub id) and checks it (<see cref="Check"/>).</summary>
    public static BlipTokenizer Load(string name, TokenizerRequirements model)
    {
        var tokenizer = BlipTokenizer.FromPretrained(name);
        Check(tokenizer, name, model);
        return tokenizer;
    }

    /// <summary>
    /// The model must have a row for every token id, and the ids it starts, ends and pads texts with must be the
    /// tokenizer's.
    /// </summary>
    /// <exception cref="TrainingConfigException">The first mismatch, naming the recipe key.</exception>
    public static void Check(BlipTokenizer tokenizer, string name, TokenizerRequirements model)
    {
        if (tokenizer.VocabSize > model.VocabSize)
            throw new TrainingConfigException("model.text_config.vocab_size", $"({model.VocabSize}) is smaller than the vocabulary of the tokenizer {name} ({tokenizer.VocabSize} tokens)");
        long? dec = null, enc = null;
        try
        {
            if (model.DecTokenId is not null) dec = tokenizer.BosTokenId;
            if (model.EncTokenId is not null) enc = tokenizer.EncTokenId;
        }
        catch (InvalidOperationException e)
        {
            throw new TrainingConfigException($"model.tokenizer ({name}) lacks a token {model.Model} needs: {e.Message}", e);
        }
        if (model.DecTokenId is { } decId && dec != decId)
            throw new TrainingConfigException("model.text_config.bos_token_id", $"({decId}) is not the id of [DEC] in the tokenizer {name} ({dec})");
        if (model.EncTokenId is { } encId && enc != encId)
            throw new TrainingConfigException("model.enc_token_id", $"({encId}) is not the id of [ENC] in the tokenizer {name} ({enc})");
        if (model.SepTokenId is { } sepId && tokenizer.SepTokenId != sepId)
            throw new TrainingConfigException("model.text_config.sep_token_id",
                $"({sepId}) is not the id of [SEP] in the tokenizer {name} ({tokenizer.SepTokenId}); {model.DecodedTexts} would never end");
        if (tokenizer.PadTokenId != model.PadTokenId)
            throw new TrainingConfigException("model.text_config.pad_token_id", $"({model.PadTokenId}) is not the id of [PAD] in the tokenizer {name} ({tokenizer.PadTokenId})");
    }
}
