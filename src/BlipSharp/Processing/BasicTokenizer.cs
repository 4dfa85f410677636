using System.Globalization;
using System.Text;

namespace BlipSharp.Processing;

/// <summary>
/// Port of transformers' <c>BasicTokenizer</c> (4.40): text cleanup, CJK character splitting, NFC,
/// whitespace split, lowercasing and accent stripping, and punctuation split. Its output words go to
/// <see cref="WordPieceTokenizer"/>.
/// </summary>
internal sealed class BasicTokenizer
{
    private readonly bool _doLowerCase;
    private readonly bool? _stripAccents;
    private readonly bool _tokenizeChineseChars;
    private readonly bool _doSplitOnPunctuation;

    /// <summary>Words that are never lowercased or split (the class's own <c>never_split</c>).</summary>
    public IReadOnlySet<string> NeverSplit { get; }

    /// <summary>Creates the tokenizer; <paramref name="stripAccents"/> null follows <paramref name="doLowerCase"/>.</summary>
    public BasicTokenizer(bool doLowerCase = true, IEnumerable<string>? neverSplit = null, bool tokenizeChineseChars = true,
        bool? stripAccents = null, bool doSplitOnPunctuation = true)
    {
        _doLowerCase = doLowerCase;
        _stripAccents = stripAccents;
        _tokenizeChineseChars = tokenizeChineseChars;
        _doSplitOnPunctuation = doSplitOnPunctuation;
        NeverSplit = new HashSet<string>(neverSplit ?? [], StringComparer.Ordinal);
    }

    /// <summary>
    /// Splits <paramref name="text"/> into words and punctuation. Words in <paramref name="neverSplit"/> (added to
    /// <see cref="NeverSplit"/>) are kept as they are.
    /// </summary>
    public List<string> Tokenize(string text, IReadOnlySet<string>? neverSplit = null)
    {
        IReadOnlySet<string> keep = neverSplit is null || neverSplit.Count == 0 ? NeverSplit
            : NeverSplit.Count == 0 ? neverSplit
            : new HashSet<string>(NeverSplit.Concat(neverSplit), StringComparer.Ordinal);
        text = CleanText(text);
        if (_tokenizeChineseChars) text = SpaceOutChineseChars(text);
        text = PythonUnicode.Normalize(text, NormalizationForm.FormC);
        var split = new List<string>();
        foreach (string word in PythonUnicode.Split(text))
        {
            string token = word;
            if (!keep.Contains(token))
            {
                if (_doLowerCase)
                {
                    token = PythonUnicode.Lower(token);
                    if (_stripAccents is not false) token = StripAccents(token);
                }
                else if (_stripAccents is true)
                {
                    token = StripAccents(token);
                }
            }
            split.AddRange(SplitOnPunctuation(token, keep));
        }
        return PythonUnicode.Split(string.Join(' ', split));
    }

    /// <summary>Drops NUL, U+FFFD and control characters (category C*, except tab/LF/CR); maps whitespace to a space.</summary>
    internal static string CleanText(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int cp = PythonUnicode.CodePointAt(text, i, out int len);
            i += len;
            if (cp == 0 || cp == 0xFFFD || IsControl(cp)) continue;
            if (IsWhitespace(cp)) sb.Append(' ');
            else PythonUnicode.AppendCodePoint(sb, cp);
        }
        return sb.ToString();
    }

    /// <summary>Surrounds every CJK ideograph with spaces.</summary>
    internal static string SpaceOutChineseChars(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int cp = PythonUnicode.CodePointAt(text, i, out int len);
            i += len;
            if (IsChineseChar(cp)) sb.Append(' ').Append(char.ConvertFromUtf32(cp)).Append(' ');
            else PythonUnicode.AppendCodePoint(sb, cp);
        }
        return sb.ToString();
    }

    /// <summary>NFD, then drops nonspacing marks (category Mn).</summary>
    internal static string StripAccents(string text)
    {
        text = PythonUnicode.Normalize(text, NormalizationForm.FormD);
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int cp = PythonUnicode.CodePointAt(text, i, out int len);
            if (PythonUnicode.Category(cp) != UnicodeCategory.NonSpacingMark) sb.Append(text, i, len);
            i += len;
        }
        return sb.ToString();
    }

    /// <summary>Splits before and after every punctuation character; a word in <paramref name="neverSplit"/> stays whole.</summary>
    internal List<string> SplitOnPunctuation(string text, IReadOnlySet<string> neverSplit)
    {
        if (!_doSplitOnPunctuation || neverSplit.Contains(text)) return [text];
        var output = new List<string>();
        var current = new StringBuilder();
        bool startNewWord = true;
        for (int i = 0; i < text.Length;)
        {
            int cp = PythonUnicode.CodePointAt(text, i, out int len);
            if (IsPunctuation(cp))
            {
                if (!startNewWord) output.Add(current.ToString());
                output.Add(text.Substring(i, len));
                current.Clear();
                startNewWord = true;
            }
            else
            {
                current.Append(text, i, len);
                startNewWord = false;
            }
            i += len;
        }
        if (!startNewWord) output.Add(current.ToString());
        return output;
    }

    /// <summary>Space, tab, LF, CR, or category Zs.</summary>
    internal static bool IsWhitespace(int cp) =>
        cp is ' ' or '\t' or '\n' or '\r' || PythonUnicode.Category(cp) == UnicodeCategory.SpaceSeparator;

    /// <summary>Any category starting with C (Cc, Cf, Cs, Co, Cn) except tab, LF and CR.</summary>
    internal static bool IsControl(int cp)
    {
        if (cp is '\t' or '\n' or '\r') return false;
        return PythonUnicode.Category(cp) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;
    }

    /// <summary>ASCII non-alphanumerics (33-47, 58-64, 91-96, 123-126) or any category starting with P.</summary>
    internal static bool IsPunctuation(int cp)
    {
        if (cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return PythonUnicode.Category(cp) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>The CJK Unified Ideographs blocks BERT splits into single characters (not kana or hangul).</summary>
    internal static bool IsChineseChar(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF
            or >= 0x3400 and <= 0x4DBF
            or >= 0x20000 and <= 0x2A6DF
            or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F
            or >= 0x2B820 and <= 0x2CEAF
            or >= 0xF900 and <= 0xFAFF
            or >= 0x2F800 and <= 0x2FA1F;
}
