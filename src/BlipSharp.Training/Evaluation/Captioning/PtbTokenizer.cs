using System.Text;
using System.Text.RegularExpressions;

namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>
/// COCO caption evaluation's tokenisation: a re-implementation of Stanford CoreNLP 3.4.1's <c>PTBTokenizer</c> run as
/// coco-caption runs it (<c>-preserveLines -lowerCase</c>, default PTB3 escaping), followed by coco-caption's
/// <c>ptbtokenizer.py</c> post-processing (split each line on single spaces and drop the tokens in
/// <see cref="DroppedTokens"/>).
/// </summary>
/// <remarks>
/// <para>
/// The lexer follows <c>PTBLexer.flex</c>: at each position every rule is tried, the longest match wins (a rule's
/// trailing context counts towards its length, as in JFlex) and ties go to the earlier rule. The rules kept are those
/// that can fire on caption text: clitics (<c>'s n't 're 'll 've 'm 'd</c>), the assimilations (<c>cannot gonna
/// wanna gotta gimme lemme 'tis 'twas</c>), apostrophe words (<c>o'clock</c>, <c>rock'n'roll</c>), the abbreviation
/// and acronym lists (<c>st. mr. dr. u.s.a. etc.</c>), numbers with <c>. , :</c>, dates, fractions, phone numbers,
/// hyphenated and slashed words (<c>t-shirt and/or</c>), currency (<c>$ # £ € ¢</c>), brackets (<c>-LRB- -RRB- -LSB-
/// -RSB- -LCB- -RCB-</c>), LaTeX quotes (<c>`` ''</c>), ellipses, dash and punctuation runs, URLs, e-mail addresses,
/// simple SGML tags and the miscellaneous symbols; any other character is deleted as CoreNLP's default
/// <c>untokenizable=firstDelete</c> does. Which abbreviation period is also emitted as a separate <c>.</c> token
/// does not matter here, because the drop list removes every <c>.</c>.
/// </para>
/// <para>
/// All captions of one <see cref="Tokenize"/> call are lexed as one text joined by newlines, as coco-caption feeds
/// them to Java, because the lexer's trailing contexts see the next caption. A carriage return or Unicode line
/// separator inside a caption is read as a space (coco-caption would have let it split the caption into two lines
/// and misalign every later caption).
/// </para>
/// </remarks>
public sealed partial class PtbTokenizer : ICaptionTokenizer
{
    /// <summary>coco-caption's <c>PUNCTUATIONS</c>: tokens exactly equal to one of these are dropped after tokenising.</summary>
    public static readonly IReadOnlySet<string> DroppedTokens = new HashSet<string>(StringComparer.Ordinal)
    {
        "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";",
    };

    /// <inheritdoc/>
    public IReadOnlyList<string> Tokenize(IReadOnlyList<string> captions)
    {
        string text = string.Join('\n', captions.Select(c => c.Replace('\n', ' ')));
        var lines = LexLines(text);
        if (lines.Count != captions.Count)
            throw new InvalidOperationException($"PTB lexer produced {lines.Count} lines for {captions.Count} captions");
        var result = new List<string>(lines.Count);
        foreach (var tokens in lines)
        {
            // Java prints the lower-cased tokens joined by spaces; Python strips the line, splits on ' ' and filters.
            string line = string.Join(' ', tokens.Select(t => t.ToLowerInvariant())).TrimEnd();
            result.Add(string.Join(' ', line.Split(' ').Where(t => !DroppedTokens.Contains(t))));
        }
        return result;
    }

    /// <summary>
    /// Runs the lexer on <paramref name="text"/> and returns the PTB tokens (before lower-casing and the drop list)
    /// of each newline-separated line.
    /// </summary>
    public static IReadOnlyList<IReadOnlyList<string>> LexLines(string text)
    {
        var lines = new List<IReadOnlyList<string>>();
        var current = new List<string>();
        int pos = 0;
        while (pos < text.Length)
        {
            Rule? best = null;
            Match? bestMatch = null;
            int bestLength = 0;
            foreach (var rule in Rules)
            {
                var m = rule.Pattern.Match(text, pos);
                if (!m.Success) continue;
                int length = m.Groups["m"].Length + (m.Groups["t"].Success ? m.Groups["t"].Length : 0);
                if (length > bestLength)
                {
                    best = rule;
                    bestMatch = m;
                    bestLength = length;
                }
            }
            if (best == null)
            {
                pos++; // untokenizable character: deleted (CoreNLP's default untokenizable=firstDelete)
                continue;
            }
            string matched = bestMatch!.Groups["m"].Value;
            var (token, consumed) = best.Action(matched);
            if (consumed <= 0 || consumed > matched.Length) throw new InvalidOperationException($"rule {best.Name} consumed {consumed} of '{matched}'");
            pos += consumed;
            if (token == null) continue;
            if (ReferenceEquals(token, Newline))
            {
                lines.Add(current);
                current = [];
            }
            else
            {
                current.Add(token);
            }
        }
        lines.Add(current);
        return lines;
    }

    private static readonly string Newline = new("\n".ToCharArray());

    private sealed record Rule(string Name, Regex Pattern, Func<string, (string? Token, int Consumed)> Action);

    // ---- Macros of PTBLexer.flex (JFlex %caseless applies to literal text, never inside character classes). ----
    private const string Letter = @"[\p{L}\p{M}\u00AD]";
    private const string Word = @"[\p{L}\p{M}\u00AD][\p{L}\p{M}\u00AD\p{Nd}]*";
    private const string AlNum = @"[\p{L}\p{M}\p{Nd}]";
    private const string Apos = @"(?:['\u0092\u2019\u00B4]|&(?i:apos);)";
    private const string AposEtc = @"(?:['\u0092\u2019\u00B4`\u0091\u2018\u201B]|&(?i:apos);)";
    private const string RedAux = Apos + @"(?:[msdMSD]|(?i:re|ve|ll))";
    private const string SWord = @"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*";
    private const string SRedAux = "(?i:n)" + AposEtc + "(?i:t)";
    private const string Space = @"[ \t\u00A0\u2000-\u200A\u3000\r\u2028\u2029\u000B\u000C]";
    private const string SpaceNl = @"[ \t\u00A0\u2000-\u200A\u3000\r\u2028\u2029\u000B\u000C\n]";
    private const string InSentP = @"[,;:\u3001]";
    private const string Hyphen = @"[\-_\u058A\u2010\u2011]";
    private const string Acro = @"(?:[A-Za-z](?:\.[A-Za-z])+|(?i:(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R)))";
    private const string Num = @"(?:\p{Nd}+(?:[.:,\u00AD\u066B\u066C\u2009\u202F]\p{Nd}+)*|\p{Nd}*(?:[.,\u066B\u066C]\p{Nd}+)+)";
    private const string ThingPart = "(?:[dDoOlL]" + AposEtc + AlNum + ")?" + AlNum + "+";
    private const string Thing = ThingPart + "(?:" + Hyphen + ThingPart + ")*";
    private const string HThing = @"[\p{L}\p{M}\p{Nd}][\p{L}\p{M}\p{Nd}.,\u00AD]*(?:-(?:[\p{L}\p{M}\p{Nd}\u00AD]+|" + Acro + @"\.))+";
    private const string ThingA = @"[A-Z]+(?:(?:[+&]|&(?i:amp);)[A-Z]+)+";

    // Abbreviations: caseless words, with the few capitalised initials PTBLexer keeps case-sensitive ([A]rk, [M]ass ...).
    private const string AbMonth = "(?i:jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)";
    private const string AbDays = "(?i:mon|tues?|wed|thurs?|thu|fri)";
    private const string AbState = "(?:(?i:ala|ariz|calif|colo|conn|dak|del|fla|ga|ind|kans?|ky|la|md|mich|minn|mo|mont|neb|nev|okla|pa|penn|tenn|tex|va|vt|wisc?|wyo)|A(?i:rk)|I(?i:ll)|M(?i:ass)|M(?i:iss)|O(?i:re)|W(?i:ash))";
    private const string AbComp = "(?i:inc|cos?|corp|pp?tys?|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys)";
    private const string AbNum = "(?i:nos?|prop|ph|tel|est|ext|sq|ft)";
    private const string AbPTit = @"(?i:jr|sr|bros|(?:ed|ph)\.d|blvd|rd|esq)";
    private const string Abbrev1 = "(?:" + AbPTit + "|" + AbMonth + "|" + AbDays + "|" + AbState + "|" + AbComp + "|" + AbNum + "|(?i:etc|al|seq))" + @"\.";
    private const string AbTitle = "(?:(?i:mrs?|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt|mt|capt|ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det)|M(?i:iss))";
    private const string Abbrev4Words = @"(?:" + AbTitle + @"|(?i:vs|alex|wm|jos|cie|a\.k\.a|cf|treas|invt|elec|natl|m[ft]g))";

    private const string MiscSymbol = @"[+%&~\^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D\u07F6\u07F7\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]";

    private static readonly List<Rule> Rules = BuildRules();

    private static List<Rule> BuildRules()
    {
        var rules = new List<Rule>();
        void Add(string name, string main, Func<string, (string?, int)> action, string? trail = null) =>
            rules.Add(new Rule(name, new Regex(@"\G(?<m>" + main + ")" + (trail == null ? "" : "(?=(?<t>" + trail + "))"),
                RegexOptions.CultureInvariant | RegexOptions.Compiled), action));
        (string?, int) Keep(string s) => (s, s.Length);
        (string?, int) Right(string s) => (LatexQuotes(s, probablyLeft: false), s.Length);
        (string?, int) Left(string s) => (LatexQuotes(s, probablyLeft: true), s.Length);
        (string?, int) SoftHyphens(string s) => (RemoveSoftHyphens(s), s.Length);

        Add("ASSIMILATIONS3", "(?i:cannot|'twas)", s => (s[..^3], s.Length - 3));
        Add("ASSIMILATIONS2", Apos + "(?i:tis)|(?i:gonna|gotta|lemme|gimme|wanna)", s => (s[..^2], s.Length - 2));
        Add("SGML", @"<\/?[A-Za-z!?][^>\r\n]*>", s => (s.Replace(' ', '\u00A0'), s.Length));
        Add("SPMDASH", @"&(?i:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", s => ("--", s.Length));
        Add("SPAMP", "&(?i:amp);", s => ("&", s.Length));
        Add("SPPUNC", "&(?i:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", Keep);
        Add("WORD/REDAUX", Word, SoftHyphens, RedAux);
        Add("SWORD/SREDAUX", SWord, SoftHyphens, SRedAux);
        Add("WORD", Word, SoftHyphens);
        // APOWORD's alternatives as separate rules, so that the longest one wins as in JFlex.
        foreach (string apoword in new[]
                 {
                     Apos + "(?i:n)" + Apos + "?", "[lLdDjJ]" + Apos, "(?i:dunkin|somethin|ol)" + Apos, Apos + "(?i:em)",
                     "[A-HJ-XZn]" + AposEtc + @"\p{L}{2,}", Apos + "[2-9]0(?i:s)", Apos + "(?i:till?)",
                     @"\p{L}+[aeiouyAEIOUY]" + AposEtc + @"[aeiouA-Z]\p{L}*", Apos + "(?i:cause)",
                     @"(?i:cont'd\.?|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)",
                 })
            Add("APOWORD", apoword, Right);
        Add("APOWORD2", "(?i:y)" + Apos, Keep, @"\p{L}");
        Add("FULLURL", @"(?i:https?)://[^ \t\n\f\r""<>|()]+[^ \t\n\f\r""<>|.!?(){},-]", Keep);
        Add("LIKELYURL", @"(?:(?i:www)\.(?:[^ \t\n\f\r""<>|.!?(){},]+\.)+[a-zA-Z]{2,4}|(?:[^ \t\n\f\r""`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu))(?:/[^ \t\n\f\r""<>|()]+[^ \t\n\f\r""<>|.!?(){},-])?", Keep);
        Add("EMAIL", @"[a-zA-Z0-9][^ \t\n\f\r""<>|()\u00A0]*@(?:[^ \t\n\f\r""<>|().\u00A0]+\.)*[^ \t\n\f\r""<>|().\u00A0]+", Keep);
        Add("TWITTER", "@[a-zA-Z_][a-zA-Z_0-9]*|#" + Word, Keep);
        Add("REDAUX/", RedAux, Right, @"[^\p{L}\p{M}]");
        Add("SREDAUX", SRedAux, Right);
        Add("DATE", @"\p{Nd}{1,2}[\-/]\p{Nd}{1,2}[\-/]\p{Nd}{2,4}", Keep);
        Add("NUMBER", @"[\-+]?" + Num, s => (RemoveFromNumber(s), s.Length));
        Add("SUBSUPNUM", @"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)", Keep);
        Add("FRAC", @"(?:\p{Nd}{1,4}[\- \u00A0])?\p{Nd}{1,4}(?:\\?/|\u2044)\p{Nd}{1,4}", s => (s.Replace(' ', '\u00A0'), s.Length));
        Add("FRAC2", @"[\u00BC\u00BD\u00BE\u2153-\u215E]", s => (NormalizeFraction(s), s.Length));
        Add("TBSPEC", @"-(?i:RRB|LRB|RCB|LCB|RSB|LSB)-|(?i:C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls)|(?i:cap)" + Apos + "(?i:n)|(?i:c)" + Apos + "(?i:est)",
            s => (NormalizeAmp(s), s.Length));
        Add("THING3", AlNum + @"+(?:-[\p{L}\p{M}]+){0,2}(?:\\?/" + AlNum + @"+(?:-[\p{L}\p{M}]+){0,2}){1,2}", Keep);
        Add("DOLSIGN", @"[A-Z]*\$|#", Keep);
        Add("DOLSIGN2", @"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", s => (NormalizeCurrency(s), s.Length));
        Add("ABBREV1", Abbrev1, Keep);
        Add("ABBREV2", Acro + @"\.", Keep);
        Add("ABBREV2", @"[A-Za-z]\.", Keep);
        Add("ABBREV2", Abbrev4Words + @"\.", Keep);
        Add("ACRO", Acro, Keep, SpaceNl);
        Add("TBSPEC2", Apos + "[0-9][0-9]", Keep, SpaceNl);
        Add("WORD.", Word + @"\.", SoftHyphens, InSentP);
        Add("PHONE", @"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}",
            s => (s.Replace(' ', '\u00A0').Replace("(", "-LRB-").Replace(")", "-RRB-"), s.Length));
        Add("DBLQUOT/", @"""|&(?i:quot);", s => ("``", s.Length), @"[\p{L}\p{M}\p{Nd}$]");
        Add("DBLQUOT", @"""|&(?i:quot);", s => ("''", s.Length));
        Add("LESSTHAN", "<|&(?i:lt);", s => ("<", s.Length));
        Add("GREATERTHAN", ">|&(?i:gt);", s => (">", s.Length));
        Add("{", @"\{", s => ("-LCB-", 1));
        Add("}", @"\}", s => ("-RCB-", 1));
        Add("[", @"\[", s => ("-LSB-", 1));
        Add("]", @"\]", s => ("-RSB-", 1));
        Add("(", @"\(", s => ("-LRB-", 1));
        Add(")", @"\)", s => ("-RRB-", 1));
        Add("HYPHENS", @"-+", s => (s.Length is >= 3 and <= 4 ? "--" : s, s.Length));
        Add("LDOTS", @"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", s => ("...", s.Length));
        Add("FNMARKS", "@+|#+|_+", Keep);
        Add("ASTS", @"\*+|(?:\\\*){1,3}", Keep);
        Add("INSENTP", InSentP, Keep);
        Add("?!", "[?!]+", Keep);
        Add("PERIOD", @"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]", Keep);
        Add("=", "=", Keep);
        Add("/", "/", Keep);
        Add("HTHING.", HThing + @"\.", SoftHyphens, InSentP);
        Add("HTHING", HThing, SoftHyphens);
        Add("THING.", Thing + @"\.", Right, InSentP);
        Add("THING", Thing, Right);
        Add("THINGA.", ThingA + @"\.", s => (NormalizeAmp(s), s.Length), InSentP);
        Add("THINGA", ThingA, s => (NormalizeAmp(s), s.Length));
        foreach (string quotes in new[] { Apos, "''", @"[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091-\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2}" })
        {
            Add("QUOTES/letter", quotes, Left, Letter + @"[^ \t\u00A0\u2000-\u200A\u3000\r\n\u2028\u2029\u000B\u000C\u0085]");
            Add("QUOTES/aiu", quotes, Left, @"[AaIiUu][ \t\u00A0\u2000-\u200A\u3000\r\n\u2028\u2029\u000B\u000C\u0085]");
            Add("QUOTES", quotes, Right);
        }
        Add("REDAUX", RedAux, Right);
        Add("FAKEDUCKFEET", "<<|>>", Keep);
        Add("MISCSYMBOL", MiscSymbol, Keep);
        Add("SPACES", Space + "+|\0|[\u200B\u200E\u200F\uFEFF]", s => (null, s.Length));
        Add("NEWLINE", @"\n", s => (Newline, s.Length));
        return rules;
    }

    private static string RemoveSoftHyphens(string s)
    {
        string r = s.Replace("\u00AD", "");
        return r.Length == 0 ? "-" : r;
    }

    private static string RemoveFromNumber(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
            if (c is not ('\u00AD' or '\u066C' or '\u2009' or '\u202F')) sb.Append(c);
        return sb.Length == s.Length ? s : sb.ToString().Trim();
    }

    private static string NormalizeAmp(string s) => AmpEntity().Replace(s, "&");

    private static string NormalizeFraction(string s) => s switch
    {
        "\u00BC" => "1/4",
        "\u00BD" => "1/2",
        "\u00BE" => "3/4",
        "\u2153" => "1/3",
        "\u2154" => "2/3",
        _ => s,
    };

    private static string NormalizeCurrency(string s) => s switch
    {
        "\u00A2" => "cents",
        "\u00A3" => "#",
        "\u0080" or "\u00A4" or "\u20A0" or "\u20AC" => "$",
        _ => s,
    };

    /// <summary>PTBLexer's <c>latexQuotes</c>: straight quotes by the left/right guess, curly ones by their direction.</summary>
    private static string LatexQuotes(string s, bool probablyLeft)
    {
        s = SingleQuote().Replace(s, probablyLeft ? "`" : "'");
        s = DoubleQuote().Replace(s, probablyLeft ? "``" : "''");
        s = LeftSingleQuote().Replace(s, "`");
        s = RightSingleQuote().Replace(s, "'");
        s = LeftDoubleQuote().Replace(s, "``");
        s = RightDoubleQuote().Replace(s, "''");
        return s;
    }

    [GeneratedRegex("(?i:&amp;)")]
    private static partial Regex AmpEntity();

    [GeneratedRegex("&apos;|'")]
    private static partial Regex SingleQuote();

    [GeneratedRegex("\"|&quot;")]
    private static partial Regex DoubleQuote();

    [GeneratedRegex("[\u0091\u2018\u201A\u201B\u2039]")]
    private static partial Regex LeftSingleQuote();

    [GeneratedRegex("[\u0092\u2019\u203A\u00B4]")]
    private static partial Regex RightSingleQuote();

    [GeneratedRegex("[\u0093\u201C\u201E\u00AB]")]
    private static partial Regex LeftDoubleQuote();

    [GeneratedRegex("[\u0094\u201D\u00BB]")]
    private static partial Regex RightDoubleQuote();
}
