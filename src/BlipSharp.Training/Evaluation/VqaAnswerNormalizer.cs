using System.Collections.Frozen;
using System.Text;

namespace BlipSharp.Training.Evaluation.Vqa;

/// <summary>
/// The answer normalisation of the official VQA evaluation (GT-Vision-Lab/VQA <c>vqaEval.py</c>,
/// <c>processPunctuation</c> and <c>processDigitArticle</c>), reproduced with its quirks, as run under Python 2.7:
/// <list type="bullet">
/// <item>punctuation is tested against the <em>original</em> text: a mark next to a space, or any digit-comma-digit
/// anywhere in the text, deletes every occurrence of the mark; otherwise each occurrence becomes a space;</item>
/// <item>the period regex <c>(?!&lt;=\d)(\.)(?!\d)</c> is passed <c>re.UNICODE</c> (= 32) as its <em>count</em>, so at
/// most 32 periods not followed by a digit are removed; the <c>(?!&lt;=\d)</c> is a mistyped lookbehind with no effect;</item>
/// <item><c>\d</c> is ASCII <c>[0-9]</c> (no <c>re.UNICODE</c> flag reaches the compiled patterns);</item>
/// <item>the contractions keys <c>Im</c>, <c>Ive</c>, <c>Id've</c>, <c>I'dve</c> are capitalised and never match after
/// lowercasing; <c>somebody'd</c> maps to <c>somebodyd</c>.</item>
/// </list>
/// Whitespace for <c>strip()</c> and <c>split()</c> is Python 2.7's unicode whitespace.
/// </summary>
public static class VqaAnswerNormalizer
{
    /// <summary><c>self.punct</c>, in the reference order (the order matters: each mark is tested on the original text but replaced in the running text).</summary>
    public static IReadOnlyList<string> Punctuation { get; } =
        [";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"];

    /// <summary>The <c>count</c> the reference passes to <c>periodStrip.sub</c> (its <c>re.UNICODE</c> argument, 32).</summary>
    public const int PeriodStripCount = 32;

    /// <summary><c>self.manualMap</c>: number words to digits (<c>none</c> is 0; nothing above ten).</summary>
    public static IReadOnlyDictionary<string, string> ManualMap { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["none"] = "0", ["zero"] = "0", ["one"] = "1", ["two"] = "2", ["three"] = "3", ["four"] = "4",
        ["five"] = "5", ["six"] = "6", ["seven"] = "7", ["eight"] = "8", ["nine"] = "9", ["ten"] = "10",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary><c>self.articles</c>: words dropped by <see cref="ProcessDigitArticle"/>.</summary>
    public static IReadOnlyList<string> Articles { get; } = ["a", "an", "the"];

    /// <summary><c>self.contractions</c>, verbatim (including the capitalised keys that cannot match).</summary>
    public static IReadOnlyDictionary<string, string> Contractions { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["aint"] = "ain't", ["arent"] = "aren't", ["cant"] = "can't", ["couldve"] = "could've", ["couldnt"] = "couldn't",
        ["couldn'tve"] = "couldn't've", ["couldnt've"] = "couldn't've", ["didnt"] = "didn't", ["doesnt"] = "doesn't", ["dont"] = "don't", ["hadnt"] = "hadn't",
        ["hadnt've"] = "hadn't've", ["hadn'tve"] = "hadn't've", ["hasnt"] = "hasn't", ["havent"] = "haven't", ["hed"] = "he'd", ["hed've"] = "he'd've",
        ["he'dve"] = "he'd've", ["hes"] = "he's", ["howd"] = "how'd", ["howll"] = "how'll", ["hows"] = "how's", ["Id've"] = "I'd've", ["I'dve"] = "I'd've",
        ["Im"] = "I'm", ["Ive"] = "I've", ["isnt"] = "isn't", ["itd"] = "it'd", ["itd've"] = "it'd've", ["it'dve"] = "it'd've", ["itll"] = "it'll", ["let's"] = "let's",
        ["maam"] = "ma'am", ["mightnt"] = "mightn't", ["mightnt've"] = "mightn't've", ["mightn'tve"] = "mightn't've", ["mightve"] = "might've",
        ["mustnt"] = "mustn't", ["mustve"] = "must've", ["neednt"] = "needn't", ["notve"] = "not've", ["oclock"] = "o'clock", ["oughtnt"] = "oughtn't",
        ["ow's'at"] = "'ow's'at", ["'ows'at"] = "'ow's'at", ["'ow'sat"] = "'ow's'at", ["shant"] = "shan't", ["shed've"] = "she'd've", ["she'dve"] = "she'd've",
        ["she's"] = "she's", ["shouldve"] = "should've", ["shouldnt"] = "shouldn't", ["shouldnt've"] = "shouldn't've", ["shouldn'tve"] = "shouldn't've",
        ["somebody'd"] = "somebodyd", ["somebodyd've"] = "somebody'd've", ["somebody'dve"] = "somebody'd've", ["somebodyll"] = "somebody'll",
        ["somebodys"] = "somebody's", ["someoned"] = "someone'd", ["someoned've"] = "someone'd've", ["someone'dve"] = "someone'd've",
        ["someonell"] = "someone'll", ["someones"] = "someone's", ["somethingd"] = "something'd", ["somethingd've"] = "something'd've",
        ["something'dve"] = "something'd've", ["somethingll"] = "something'll", ["thats"] = "that's", ["thered"] = "there'd", ["thered've"] = "there'd've",
        ["there'dve"] = "there'd've", ["therere"] = "there're", ["theres"] = "there's", ["theyd"] = "they'd", ["theyd've"] = "they'd've",
        ["they'dve"] = "they'd've", ["theyll"] = "they'll", ["theyre"] = "they're", ["theyve"] = "they've", ["twas"] = "'twas", ["wasnt"] = "wasn't",
        ["wed've"] = "we'd've", ["we'dve"] = "we'd've", ["weve"] = "we've", ["werent"] = "weren't", ["whatll"] = "what'll", ["whatre"] = "what're",
        ["whats"] = "what's", ["whatve"] = "what've", ["whens"] = "when's", ["whered"] = "where'd", ["wheres"] = "where's", ["whereve"] = "where've",
        ["whod"] = "who'd", ["whod've"] = "who'd've", ["who'dve"] = "who'd've", ["wholl"] = "who'll", ["whos"] = "who's", ["whove"] = "who've", ["whyll"] = "why'll",
        ["whyre"] = "why're", ["whys"] = "why's", ["wont"] = "won't", ["wouldve"] = "would've", ["wouldnt"] = "wouldn't", ["wouldnt've"] = "wouldn't've",
        ["wouldn'tve"] = "wouldn't've", ["yall"] = "y'all", ["yall'll"] = "y'all'll", ["y'allll"] = "y'all'll", ["yall'd've"] = "y'all'd've",
        ["y'alld've"] = "y'all'd've", ["y'all'dve"] = "y'all'd've", ["youd"] = "you'd", ["youd've"] = "you'd've", ["you'dve"] = "you'd've",
        ["youll"] = "you'll", ["youre"] = "you're", ["youve"] = "you've",
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>
    /// <c>processPunctuation</c>: each mark of <see cref="Punctuation"/> is deleted when the original text has it next to a
    /// space or has a digit-comma-digit anywhere, else replaced by a space; then up to <see cref="PeriodStripCount"/>
    /// periods not followed by a digit are removed. Apostrophe, colon, <c>#</c>, <c>&amp;</c>, <c>$</c>, <c>%</c>,
    /// <c>*</c> are kept.
    /// </summary>
    /// <param name="text">The answer.</param>
    /// <returns>The processed answer (not stripped; spaces may be doubled).</returns>
    public static string ProcessPunctuation(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        bool digitCommaDigit = HasDigitCommaDigit(text);
        string output = text;
        foreach (string p in Punctuation)
        {
            bool delete = digitCommaDigit || text.Contains(p + " ", StringComparison.Ordinal) || text.Contains(" " + p, StringComparison.Ordinal);
            output = output.Replace(p, delete ? "" : " ", StringComparison.Ordinal);
        }
        return StripPeriods(output);
    }

    /// <summary>
    /// <c>processDigitArticle</c>: lowercase, split on whitespace, map number words (<see cref="ManualMap"/>), drop
    /// <see cref="Articles"/>, apply <see cref="Contractions"/> word by word, join with single spaces.
    /// </summary>
    /// <param name="text">The answer (usually after <see cref="ProcessPunctuation"/>).</param>
    /// <returns>The normalised answer.</returns>
    public static string ProcessDigitArticle(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var words = new List<string>();
        foreach (string word in PythonSplit(text.ToLowerInvariant()))
        {
            string mapped = ManualMap.TryGetValue(word, out var digit) ? digit : word;
            if (!Articles.Contains(mapped, StringComparer.Ordinal)) words.Add(mapped);
        }
        for (int i = 0; i < words.Count; i++)
            if (Contractions.TryGetValue(words[i], out var expanded)) words[i] = expanded;
        return string.Join(' ', words);
    }

    /// <summary><see cref="ProcessPunctuation"/> then <see cref="ProcessDigitArticle"/>, as the reference applies them together.</summary>
    /// <param name="text">The answer.</param>
    /// <returns>The normalised answer.</returns>
    public static string Normalize(string text) => ProcessDigitArticle(ProcessPunctuation(text));

    /// <summary>What both versions do first to a prediction: <c>\n</c> and <c>\t</c> become spaces, then Python's <c>strip()</c>.</summary>
    /// <param name="text">The raw answer.</param>
    /// <returns>The cleaned answer.</returns>
    public static string CleanWhitespace(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return PythonStrip(text.Replace('\n', ' ').Replace('\t', ' '));
    }

    /// <summary><c>(\d)(\,)(\d)</c> searched anywhere, with ASCII digits.</summary>
    private static bool HasDigitCommaDigit(string text)
    {
        for (int i = 1; i + 1 < text.Length; i++)
            if (text[i] == ',' && char.IsAsciiDigit(text[i - 1]) && char.IsAsciiDigit(text[i + 1])) return true;
        return false;
    }

    /// <summary><c>periodStrip.sub("", text, 32)</c>: the first 32 periods not followed by an ASCII digit (in the text before substitution) are removed.</summary>
    private static string StripPeriods(string text)
    {
        if (!text.Contains('.')) return text;
        var sb = new StringBuilder(text.Length);
        int removed = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '.' && removed < PeriodStripCount && (i + 1 == text.Length || !char.IsAsciiDigit(text[i + 1])))
            {
                removed++;
                continue;
            }
            sb.Append(text[i]);
        }
        return sb.ToString();
    }

    /// <summary>Python 2.7's <c>unicode.isspace()</c> (bidirectional class WS, B or S, or category Zs, Unicode 5.2).</summary>
    internal static bool IsPythonSpace(char c) => c switch
    {
        >= '\t' and <= '\r' => true,
        >= '\x1c' and <= ' ' => true,
        '\x85' or '\xa0' or '\u1680' or '\u180e' or '\u2028' or '\u2029' or '\u202f' or '\u205f' or '\u3000' => true,
        >= '\u2000' and <= '\u200a' => true,
        _ => false,
    };

    /// <summary>Python's <c>strip()</c> with no arguments.</summary>
    internal static string PythonStrip(string text)
    {
        int start = 0, end = text.Length;
        while (start < end && IsPythonSpace(text[start])) start++;
        while (end > start && IsPythonSpace(text[end - 1])) end--;
        return start == 0 && end == text.Length ? text : text[start..end];
    }

    /// <summary>Python's <c>split()</c> with no arguments: runs of whitespace separate words; no empty words.</summary>
    internal static List<string> PythonSplit(string text)
    {
        var words = new List<string>();
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && IsPythonSpace(text[i])) i++;
            int start = i;
            while (i < text.Length && !IsPythonSpace(text[i])) i++;
            if (i > start) words.Add(text[start..i]);
        }
        return words;
    }
}
