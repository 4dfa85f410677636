using System.Globalization;
using System.Text;

namespace BlipSharp.Processing;

/// <summary>
/// The few Python 3.11 string rules the slow Hugging Face tokenizer depends on, reproduced on .NET:
/// iteration by code point (a lone surrogate is one character), <c>unicodedata.category</c> as of
/// Unicode 14.0, <c>str.isspace</c>, <c>str.strip</c>/<c>str.split</c>, <c>str.lower</c> and
/// <c>unicodedata.normalize</c>.
/// </summary>
internal static class PythonUnicode
{
    /// <summary>The code point at <paramref name="index"/>; a surrogate pair counts as one, a lone surrogate as itself.</summary>
    public static int CodePointAt(string s, int index, out int length)
    {
        char c = s[index];
        if (char.IsHighSurrogate(c) && index + 1 < s.Length && char.IsLowSurrogate(s[index + 1]))
        {
            length = 2;
            return char.ConvertToUtf32(c, s[index + 1]);
        }
        length = 1;
        return c;
    }

    /// <summary>Number of Python characters (code points) in <paramref name="s"/>.</summary>
    public static int CodePointCount(string s)
    {
        int n = 0;
        for (int i = 0; i < s.Length; n++)
        {
            CodePointAt(s, i, out int len);
            i += len;
        }
        return n;
    }

    /// <summary>
    /// <c>unicodedata.category</c> of CPython 3.11: the .NET category, except that code points unassigned in
    /// Unicode 14.0 are <see cref="UnicodeCategory.OtherNotAssigned"/> and U+1171E keeps its Unicode 14 category (Mn).
    /// </summary>
    public static UnicodeCategory Category(int cp)
    {
        if (IsUnassignedInPython(cp)) return UnicodeCategory.OtherNotAssigned;
        if (cp == 0x1171E) return UnicodeCategory.NonSpacingMark;
        return CharUnicodeInfo.GetUnicodeCategory(cp);
    }

    private static bool IsUnassignedInPython(int cp)
    {
        var ranges = PythonUnicodeData.UnassignedRanges;
        int lo = 0, hi = ranges.Length / 2 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (cp < ranges[2 * mid]) hi = mid - 1;
            else if (cp > ranges[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary><c>str.isspace</c> for one character: bidi class WS, B or S, or category Zs.</summary>
    public static bool IsSpace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D => true,
        >= 0x1C and <= 0x20 => true,
        0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary><c>str.strip()</c>: removes leading and trailing <see cref="IsSpace"/> characters.</summary>
    public static string Strip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsSpace(s[start])) start++;
        while (end > start && IsSpace(s[end - 1])) end--;
        return start == 0 && end == s.Length ? s : s[start..end];
    }

    /// <summary><c>str.lstrip()</c>: removes leading <see cref="IsSpace"/> characters.</summary>
    public static string LStrip(string s)
    {
        int start = 0;
        while (start < s.Length && IsSpace(s[start])) start++;
        return start == 0 ? s : s[start..];
    }

    /// <summary><c>str.rstrip()</c>: removes trailing <see cref="IsSpace"/> characters.</summary>
    public static string RStrip(string s)
    {
        int end = s.Length;
        while (end > 0 && IsSpace(s[end - 1])) end--;
        return end == s.Length ? s : s[..end];
    }

    /// <summary><c>str.split()</c> with no arguments: the runs of non-space characters.</summary>
    public static List<string> Split(string s)
    {
        var parts = new List<string>();
        int i = 0;
        while (i < s.Length)
        {
            while (i < s.Length && IsSpace(s[i])) i++;
            int start = i;
            while (i < s.Length && !IsSpace(s[i])) i++;
            if (i > start) parts.Add(s[start..i]);
        }
        return parts;
    }

    /// <summary>
    /// <c>str.lower()</c> of one character: the Unicode full lowercase mapping, which differs from the simple
    /// mapping only for U+0130 (İ -> "i" + U+0307). Lone surrogates are unchanged.
    /// </summary>
    public static void AppendLower(StringBuilder sb, int cp)
    {
        if (cp == 0x0130)
        {
            sb.Append('i').Append('\u0307');
        }
        else if (cp < 0x80)
        {
            sb.Append(cp is >= 'A' and <= 'Z' ? (char)(cp + 32) : (char)cp);
        }
        else if (Rune.IsValid(cp) && !IsUnassignedInPython(cp))
        {
            var lower = Rune.ToLowerInvariant(new Rune(cp));
            Span<char> buffer = stackalloc char[2];
            sb.Append(buffer[..lower.EncodeToUtf16(buffer)]);
        }
        else
        {
            AppendCodePoint(sb, cp);
        }
    }

    /// <summary>
    /// <c>str.lower()</c> applied character by character. (Python's whole-string <c>lower</c> also maps a
    /// word-final capital sigma to ς; the tokenizer never needs that, see <see cref="BlipTokenizer.Tokenize"/>.)
    /// </summary>
    public static string Lower(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length;)
        {
            int cp = CodePointAt(s, i, out int len);
            AppendLower(sb, cp);
            i += len;
        }
        return sb.ToString();
    }

    /// <summary>Appends one code point (a lone surrogate as its single UTF-16 unit).</summary>
    public static void AppendCodePoint(StringBuilder sb, int cp)
    {
        if (cp < 0x10000) sb.Append((char)cp);
        else sb.Append(char.ConvertFromUtf32(cp));
    }

    /// <summary>
    /// <c>unicodedata.normalize</c>. .NET refuses strings with lone surrogates, which Python accepts and leaves
    /// alone, so such strings are normalised piecewise around them.
    /// </summary>
    public static string Normalize(string s, NormalizationForm form)
    {
        if (!HasLoneSurrogate(s)) return s.IsNormalized(form) ? s : s.Normalize(form);
        var sb = new StringBuilder(s.Length);
        int segment = 0;
        for (int i = 0; i < s.Length;)
        {
            CodePointAt(s, i, out int len);
            if (len == 1 && char.IsSurrogate(s[i]))
            {
                sb.Append(s[segment..i].Normalize(form)).Append(s[i]);
                segment = i + 1;
            }
            i += len;
        }
        sb.Append(s[segment..].Normalize(form));
        return sb.ToString();
    }

    private static bool HasLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (!char.IsSurrogate(s[i])) continue;
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            return true;
        }
        return false;
    }
}
