namespace BlipSharp.Processing;

/// <summary>
/// A token added on top of the WordPiece vocabulary (Hugging Face <c>AddedToken</c>), such as <c>[DEC]</c>, or a
/// special token of the vocabulary such as <c>[CLS]</c>. Added tokens found in the raw text are kept whole.
/// </summary>
/// <param name="Content">The token text.</param>
public sealed record AddedToken(string Content)
{
    /// <summary>Whether this is a special token (skipped by <c>Decode(..., skipSpecialTokens: true)</c>).</summary>
    public bool Special { get; init; }

    /// <summary>
    /// Whether the token is matched against normalised (lowercased) text. Null means the Hugging Face default:
    /// not <see cref="Special"/>.
    /// </summary>
    public bool? Normalized { get; init; }

    /// <summary>Whether whitespace on the token's left is removed.</summary>
    public bool LStrip { get; init; }

    /// <summary>Whether whitespace on the token's right is removed.</summary>
    public bool RStrip { get; init; }

    /// <summary>Whether the token only matches as a whole word.</summary>
    public bool SingleWord { get; init; }

    /// <summary><see cref="Normalized"/> with its default applied.</summary>
    public bool IsNormalized => Normalized ?? !Special;

    /// <summary>Returns <see cref="Content"/>.</summary>
    public override string ToString() => Content;
}
