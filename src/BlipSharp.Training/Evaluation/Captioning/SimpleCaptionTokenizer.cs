using System.Text;

namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>
/// The metrics fixture's stand-in for PTB: lowercase, replace every character of Python's <c>string.punctuation</c>
/// with a space, split on whitespace and join with single spaces. Nothing else is dropped.
/// </summary>
public sealed class SimpleCaptionTokenizer : ICaptionTokenizer
{
    /// <summary>Python's <c>string.punctuation</c>.</summary>
    public const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    /// <inheritdoc/>
    public IReadOnlyList<string> Tokenize(IReadOnlyList<string> captions) => captions.Select(TokenizeOne).ToList();

    /// <summary>Tokenises one caption.</summary>
    public static string TokenizeOne(string caption)
    {
        var sb = new StringBuilder(caption.Length);
        foreach (char c in caption.ToLowerInvariant())
            sb.Append(Punctuation.Contains(c) ? ' ' : c);
        // Python's str.split() splits on Unicode whitespace, as char.IsWhiteSpace does (plus the separators below).
        return string.Join(' ', sb.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .SelectMany(t => t.Split(['\u001C', '\u001D', '\u001E', '\u001F'], StringSplitOptions.RemoveEmptyEntries)));
    }
}
