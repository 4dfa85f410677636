namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>Which tokenisation the caption scorers see.</summary>
public enum CaptionTokenization
{
    /// <summary>COCO's step: Stanford PTBTokenizer (<c>-preserveLines -lowerCase</c>) then coco-caption's punctuation drop list (<see cref="PtbTokenizer"/>).</summary>
    Ptb,

    /// <summary>The documented stand-in: lowercase, Python's <c>string.punctuation</c> to spaces, split on whitespace (<see cref="SimpleCaptionTokenizer"/>).</summary>
    Simple,
}

/// <summary>Turns raw captions into the space-joined token strings the BLEU, ROUGE-L and CIDEr-D scorers read.</summary>
public interface ICaptionTokenizer
{
    /// <summary>
    /// Tokenises a batch of captions, one output string per input caption, in order. A batch is one tokenizer call:
    /// COCOEvalCap tokenises all references in one call and all candidates in another, and the PTB lexer may look
    /// across caption boundaries, so tokenise the same batches.
    /// </summary>
    IReadOnlyList<string> Tokenize(IReadOnlyList<string> captions);
}

/// <summary>Creates the tokenizer for a <see cref="CaptionTokenization"/>.</summary>
public static class CaptionTokenizers
{
    /// <summary>The tokenizer for <paramref name="kind"/>.</summary>
    public static ICaptionTokenizer Create(CaptionTokenization kind) => kind switch
    {
        CaptionTokenization.Ptb => new PtbTokenizer(),
        CaptionTokenization.Simple => new SimpleCaptionTokenizer(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown caption tokenization"),
    };
}
