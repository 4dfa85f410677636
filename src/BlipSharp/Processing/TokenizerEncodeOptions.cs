namespace BlipSharp.Processing;

/// <summary>How a batch is padded (Hugging Face <c>PaddingStrategy</c>).</summary>
public enum PaddingStrategy
{
    /// <summary>No padding (<c>padding=False</c>); rows of a batch may differ in length.</summary>
    None,

    /// <summary>Pad to the longest row of the batch (<c>padding=True</c> or <c>"longest"</c>).</summary>
    Longest,

    /// <summary>Pad to <see cref="TokenizerEncodeOptions.MaxLength"/>, or the model maximum when it is null (<c>"max_length"</c>).</summary>
    MaxLength,
}

/// <summary>Which end of a sequence is padded or truncated.</summary>
public enum TokenizerSide
{
    /// <summary>The end of the sequence (the Hugging Face default).</summary>
    Right,

    /// <summary>The start of the sequence.</summary>
    Left,
}

/// <summary>
/// Options of <see cref="BlipTokenizer.Encode(IReadOnlyList{string}, TokenizerEncodeOptions?)"/>, mirroring the
/// keyword arguments of a Hugging Face tokenizer call. The defaults are Hugging Face's: special tokens added, no
/// padding, no truncation.
/// </summary>
public sealed record TokenizerEncodeOptions
{
    /// <summary>The defaults: <c>tokenizer(texts)</c>.</summary>
    public static TokenizerEncodeOptions Default { get; } = new();

    /// <summary>Whether <c>[CLS]</c> and <c>[SEP]</c> are added around each text (<c>add_special_tokens</c>).</summary>
    public bool AddSpecialTokens { get; init; } = true;

    /// <summary>Padding strategy (<c>padding</c>).</summary>
    public PaddingStrategy Padding { get; init; } = PaddingStrategy.None;

    /// <summary>
    /// Whether rows longer than <see cref="MaxLength"/> are cut (<c>truncation</c>). Null, as in Hugging Face,
    /// means: truncate only when <see cref="MaxLength"/> is set and <see cref="Padding"/> is
    /// <see cref="PaddingStrategy.None"/>. With truncation on and no <see cref="MaxLength"/>, rows are cut at the
    /// tokenizer's model maximum (512 for BLIP).
    /// </summary>
    public bool? Truncation { get; init; }

    /// <summary>Length limit (in tokens, special tokens included) for truncation and max-length padding (<c>max_length</c>).</summary>
    public int? MaxLength { get; init; }
}
