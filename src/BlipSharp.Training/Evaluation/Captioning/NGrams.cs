namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>N-gram counting as coco-caption's <c>precook</c>: words from <c>str.split()</c>, n = 1..max, insertion order kept.</summary>
internal static class NGrams
{
    /// <summary>The words of a tokenised caption (Python <c>str.split()</c>: runs of whitespace, no empty words).</summary>
    public static string[] Words(string s) => s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Counts every n-gram of length 1..<paramref name="n"/>, keyed by the words joined with a space, in first-seen order.</summary>
    public static OrderedCounts Count(string[] words, int n)
    {
        var counts = new OrderedCounts();
        for (int k = 1; k <= n; k++)
            for (int i = 0; i + k <= words.Length; i++)
                counts.Add(string.Join(' ', words, i, k), k);
        return counts;
    }
}

/// <summary>N-gram counts in first-seen order (Python dict order), so sums run in the reference's order.</summary>
internal sealed class OrderedCounts
{
    private readonly Dictionary<string, int> _index = new(StringComparer.Ordinal);

    public List<(string Gram, int Order, int Count)> Items { get; } = [];

    public void Add(string gram, int order)
    {
        if (_index.TryGetValue(gram, out int i)) Items[i] = Items[i] with { Count = Items[i].Count + 1 };
        else
        {
            _index[gram] = Items.Count;
            Items.Add((gram, order, 1));
        }
    }

    public int Get(string gram) => _index.TryGetValue(gram, out int i) ? Items[i].Count : 0;
}
