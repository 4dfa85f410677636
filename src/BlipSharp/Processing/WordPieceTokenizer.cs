namespace BlipSharp.Processing;

/// <summary>
/// Port of transformers' <c>WordpieceTokenizer</c>: greedy longest-match-first over the vocabulary, with
/// <c>##</c> marking a piece that continues a word. A word longer than <see cref="MaxInputCharsPerWord"/>
/// code points, or one that cannot be covered by vocabulary pieces, becomes the unknown token.
/// </summary>
internal sealed class WordPieceTokenizer
{
    /// <summary>The prefix of continuation pieces.</summary>
    public const string ContinuationPrefix = "##";

    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _pieces;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _continuations;

    /// <summary>The token emitted for a word that cannot be tokenized.</summary>
    public string UnknownToken { get; }

    /// <summary>Words with more code points than this become <see cref="UnknownToken"/> (HF: 100).</summary>
    public int MaxInputCharsPerWord { get; }

    /// <summary>Creates the tokenizer over <paramref name="vocabulary"/> (token to id).</summary>
    public WordPieceTokenizer(IReadOnlyDictionary<string, int> vocabulary, string unknownToken, int maxInputCharsPerWord = 100)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxInputCharsPerWord);
        var pieces = new Dictionary<string, int>(vocabulary, StringComparer.Ordinal);
        var continuations = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in vocabulary)
        {
            if (token.StartsWith(ContinuationPrefix, StringComparison.Ordinal)) continuations[token[ContinuationPrefix.Length..]] = id;
        }
        _pieces = pieces.GetAlternateLookup<ReadOnlySpan<char>>();
        _continuations = continuations.GetAlternateLookup<ReadOnlySpan<char>>();
        UnknownToken = unknownToken;
        MaxInputCharsPerWord = maxInputCharsPerWord;
    }

    /// <summary>Splits each whitespace-separated word of <paramref name="text"/> into vocabulary pieces.</summary>
    public List<string> Tokenize(string text)
    {
        var output = new List<string>();
        foreach (string word in PythonUnicode.Split(text)) TokenizeWord(word, output);
        return output;
    }

    /// <summary>Appends the pieces of one word (or the unknown token) to <paramref name="output"/>.</summary>
    public void TokenizeWord(string word, List<string> output)
    {
        // Offsets of the code points: Python slices by code point, so a surrogate pair is never cut.
        var bounds = new List<int>(word.Length + 1);
        for (int i = 0; i < word.Length;)
        {
            bounds.Add(i);
            PythonUnicode.CodePointAt(word, i, out int len);
            i += len;
        }
        bounds.Add(word.Length);
        int count = bounds.Count - 1;
        if (count > MaxInputCharsPerWord)
        {
            output.Add(UnknownToken);
            return;
        }

        int firstNew = output.Count;
        int start = 0;
        while (start < count)
        {
            int end = count;
            string? piece = null;
            while (start < end)
            {
                var span = word.AsSpan(bounds[start], bounds[end] - bounds[start]);
                if (start == 0 ? _pieces.ContainsKey(span) : _continuations.ContainsKey(span))
                {
                    piece = start == 0 ? span.ToString() : ContinuationPrefix + span.ToString();
                    break;
                }
                end--;
            }
            if (piece is null)
            {
                output.RemoveRange(firstNew, output.Count - firstNew);
                output.Add(UnknownToken);
                return;
            }
            output.Add(piece);
            start = end;
        }
    }
}
