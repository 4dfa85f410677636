namespace BlipSharp.Processing;

/// <summary>
/// Port of transformers' <c>tokenization_utils.Trie</c>: splits a text around every occurrence of the added
/// tokens in one pass. Where matches overlap it prefers the one that starts first and, among those, the
/// longest; the port keeps the reference algorithm step for step so that its corner cases agree too.
/// </summary>
internal sealed class AddedTokenTrie
{
    private sealed class Node
    {
        public readonly Dictionary<char, Node> Children = [];
        public bool IsEnd;
    }

    private readonly Node _root = new();
    private readonly HashSet<string> _tokens = new(StringComparer.Ordinal);

    /// <summary>The tokens in the trie.</summary>
    public IReadOnlySet<string> Tokens => _tokens;

    /// <summary>Adds a token; the empty string is ignored.</summary>
    public void Add(string word)
    {
        if (word.Length == 0) return;
        _tokens.Add(word);
        var node = _root;
        foreach (char c in word)
        {
            if (!node.Children.TryGetValue(c, out var next)) node.Children[c] = next = new Node();
            node = next;
        }
        node.IsEnd = true;
    }

    /// <summary>Splits <paramref name="text"/> so that every matched token is a piece of its own.</summary>
    public List<string> Split(string text)
    {
        // states: partial matches as (start, node), in order of start (Python's insertion-ordered dict).
        var states = new List<(int Start, Node Node)>();
        var offsets = new List<int> { 0 };
        int skip = 0;
        var toRemove = new List<int>();

        for (int current = 0; current < text.Length; current++)
        {
            if (skip != 0 && current < skip) continue;
            char currentChar = text[current];
            toRemove.Clear();
            bool reset = false;

            for (int si = 0; si < states.Count; si++)
            {
                int start = states[si].Start;
                var pointer = states[si].Node;
                if (pointer.IsEnd)
                {
                    // A match is complete; look ahead for a longer one starting at or before it.
                    int end = current;
                    foreach (var (lookStart, lookNode) in states)
                    {
                        var lookPointer = lookNode;
                        int lookaheadIndex;
                        if (lookStart > start) break;
                        if (lookStart < start)
                        {
                            // This earlier partial match was already advanced past the current character.
                            lookaheadIndex = current + 1;
                            end = current + 1;
                        }
                        else
                        {
                            lookaheadIndex = current;
                            end = current;
                        }
                        char? nextChar = lookaheadIndex < text.Length ? text[lookaheadIndex] : null;
                        if (lookPointer.IsEnd)
                        {
                            start = lookStart;
                            end = lookaheadIndex;
                            skip = lookaheadIndex;
                        }
                        while (nextChar is { } nc && lookPointer.Children.TryGetValue(nc, out var deeper))
                        {
                            lookPointer = deeper;
                            lookaheadIndex++;
                            if (lookPointer.IsEnd)
                            {
                                start = lookStart;
                                end = lookaheadIndex;
                                skip = lookaheadIndex;
                            }
                            if (lookaheadIndex == text.Length) break;
                            nextChar = text[lookaheadIndex];
                        }
                    }
                    offsets.Add(start);
                    offsets.Add(end);
                    reset = true;
                    break;
                }
                if (pointer.Children.TryGetValue(currentChar, out var child))
                {
                    states[si] = (start, child);
                }
                else
                {
                    toRemove.Add(start);
                }
            }

            if (reset) states.Clear();
            else if (toRemove.Count > 0) states.RemoveAll(s => toRemove.Contains(s.Start));

            if (current >= skip && _root.Children.TryGetValue(currentChar, out var first))
            {
                states.Add((current, first));
            }
        }

        // A match that runs to the end of the text.
        foreach (var (start, pointer) in states)
        {
            if (pointer.IsEnd)
            {
                offsets.Add(start);
                offsets.Add(text.Length);
                break;
            }
        }
        return CutText(text, offsets);
    }

    private static List<string> CutText(string text, List<int> offsets)
    {
        offsets.Add(text.Length);
        var pieces = new List<string>();
        int start = 0;
        foreach (int end in offsets)
        {
            // start > end would be a bug in the algorithm; the reference logs it and skips the offset.
            if (start >= end) continue;
            pieces.Add(text[start..end]);
            start = end;
        }
        return pieces;
    }
}
