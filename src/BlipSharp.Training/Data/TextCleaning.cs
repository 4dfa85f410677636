using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using BlipSharp.Processing;

namespace BlipSharp.Training.Data;

/// <summary>
/// BLIP's text cleaning (<c>data/utils.py</c> of salesforce/BLIP), reproduced with Python 3 string semantics.
/// </summary>
public static partial class TextCleaning
{
    /// <summary>BLIP's default <c>max_words</c> for <c>pre_caption</c>; its datasets pass 30.</summary>
    public const int DefaultMaxWords = 50;

    /// <summary>The <c>max_words</c> BLIP's pretraining and COCO datasets pass to <c>pre_caption</c>.</summary>
    public const int DatasetMaxWords = 30;

    /// <summary>
    /// <c>pre_caption(caption, max_words)</c>: <c>caption.lower()</c>; every one of <c>. ! " ( ) * # : ; ~</c>
    /// becomes a space; each run of two or more whitespace characters (Python's <c>\s</c>) becomes one space;
    /// a trailing newline is removed, then leading and trailing spaces; at most <paramref name="maxWords"/>
    /// words separated by single spaces are kept. Commas, apostrophes, hyphens and question marks stay.
    /// </summary>
    /// <param name="caption">The raw caption.</param>
    /// <param name="maxWords">How many space-separated words to keep, at least 1.</param>
    public static string PreCaption(string caption, int maxWords = DefaultMaxWords)
    {
        ArgumentNullException.ThrowIfNull(caption);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxWords, 1);
        string lower = PythonLower(caption);
        var sb = new StringBuilder(lower.Length);
        foreach (char c in lower) sb.Append(IsBlipPunctuation(c) ? ' ' : c);
        string s = CollapseWhitespaceRuns(sb.ToString());
        s = s.TrimEnd('\n').Trim(' ');
        return Truncate(s, maxWords);
    }

    /// <summary>
    /// <c>pre_question(question, max_ques_words)</c>: <c>question.lower()</c>; <c>. ! " ( ) * # : ; ~</c> are
    /// deleted; trailing spaces removed; at most <paramref name="maxWords"/> space-separated words kept.
    /// </summary>
    /// <param name="question">The raw question.</param>
    /// <param name="maxWords">How many space-separated words to keep, at least 1.</param>
    public static string PreQuestion(string question, int maxWords = DefaultMaxWords)
    {
        ArgumentNullException.ThrowIfNull(question);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxWords, 1);
        string lower = PythonLower(question);
        var sb = new StringBuilder(lower.Length);
        foreach (char c in lower)
        {
            if (!IsBlipPunctuation(c)) sb.Append(c);
        }
        return Truncate(sb.ToString().TrimEnd(' '), maxWords);
    }

    /// <summary>
    /// Swaps the whole words "left" and "right" (any case; the first letter's case is kept), for captions of
    /// images that were mirrored: "a red circle on the left" becomes "a red circle on the right".
    /// </summary>
    /// <param name="caption">The caption.</param>
    public static string SwapLeftRight(string caption)
    {
        ArgumentNullException.ThrowIfNull(caption);
        return LeftRight().Replace(caption, m =>
        {
            string v = m.Value;
            string swapped = v.Equals("left", StringComparison.OrdinalIgnoreCase) ? "right" : "left";
            if (v.All(char.IsUpper)) return swapped.ToUpperInvariant();
            return char.IsUpper(v[0]) ? char.ToUpperInvariant(swapped[0]) + swapped[1..] : swapped;
        });
    }

    [GeneratedRegex(@"\b(left|right)\b", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex LeftRight();

    /// <summary>The character class <c>[.!\"()*#:;~]</c> of BLIP's regular expression.</summary>
    private static bool IsBlipPunctuation(char c) => c is '.' or '!' or '"' or '(' or ')' or '*' or '#' or ':' or ';' or '~';

    /// <summary><c>re.sub(r"\s{2,}", " ", s)</c> with Python's Unicode <c>\s</c> (<c>str.isspace</c>).</summary>
    private static string CollapseWhitespaceRuns(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length;)
        {
            if (!PythonUnicode.IsSpace(s[i]))
            {
                sb.Append(s[i++]);
                continue;
            }
            int run = i;
            while (i < s.Length && PythonUnicode.IsSpace(s[i])) i++;
            if (i - run >= 2) sb.Append(' ');
            else sb.Append(s[run]);
        }
        return sb.ToString();
    }

    /// <summary><c>s.split(' ')</c>, keep the first <paramref name="maxWords"/>, <c>' '.join</c>.</summary>
    private static string Truncate(string s, int maxWords)
    {
        int spaces = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != ' ') continue;
            if (++spaces == maxWords) return s[..i];
        }
        return s;
    }

    /// <summary>
    /// Python's <c>str.lower()</c>: the full lowercase mapping of each character, plus the final-sigma rule
    /// (a capital sigma after a cased letter and not before one becomes ς). Case-ignorable characters between
    /// are skipped as CPython does, approximated by their general category and the apostrophe, period and colon.
    /// </summary>
    internal static string PythonLower(string s)
    {
        bool ascii = true;
        foreach (char c in s)
        {
            if (c >= 0x80) { ascii = false; break; }
        }
        if (ascii) return s.ToLowerInvariant();
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length;)
        {
            int cp = PythonUnicode.CodePointAt(s, i, out int len);
            if (cp == 0x03A3) sb.Append(IsFinalSigma(s, i) ? 'ς' : 'σ');
            else PythonUnicode.AppendLower(sb, cp);
            i += len;
        }
        return sb.ToString();
    }

    private static bool IsFinalSigma(string s, int index)
    {
        int j = index - 1;
        while (j >= 0 && IsCaseIgnorable(s[j])) j--;
        if (j < 0 || !IsCased(s[j])) return false;
        j = index + 1;
        while (j < s.Length && IsCaseIgnorable(s[j])) j++;
        return j >= s.Length || !IsCased(s[j]);
    }

    private static bool IsCased(char c) => CharUnicodeInfo.GetUnicodeCategory(c) is
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    private static bool IsCaseIgnorable(char c) => c is '\'' or '.' or ':' or '\u00B7' or '\u2019' || CharUnicodeInfo.GetUnicodeCategory(c) is
        UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format or
        UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
}
