namespace BlipSharp.Generation;

/// <summary>
/// The n best finished hypotheses of one input during beam search, scored as transformers' <c>BeamHypotheses</c>:
/// sum of log-probabilities / (length ^ length penalty). The caller passes the length its
/// <see cref="BeamLengthNormalization"/> counts: the generated length (prompt excluded, end token of a finished
/// hypothesis included; transformers 4.2x+) or the whole hypothesis (prompt included, end token excluded; 4.15).
/// </summary>
internal sealed class BeamHypotheses(int numBeams, double lengthPenalty, bool earlyStopping)
{
    private readonly List<(double Score, long[] Tokens)> _beams = [];
    private double _worstScore = 1e9;

    public int Count => _beams.Count;

    public IReadOnlyList<(double Score, long[] Tokens)> Beams => _beams;

    /// <summary>Adds a hypothesis if it beats the worst kept one (or fewer than n are kept).</summary>
    public void Add(long[] tokens, double sumLogProbs, int normalizingLength)
    {
        double score = sumLogProbs / Math.Pow(normalizingLength, lengthPenalty);
        if (_beams.Count < numBeams || score > _worstScore)
        {
            _beams.Add((score, tokens));
            if (_beams.Count > numBeams)
            {
                // As Python's sorted([(s, idx)]): by score, then by insertion index.
                var order = _beams.Select((b, i) => (b.Score, Index: i)).OrderBy(x => x.Score).ThenBy(x => x.Index).ToList();
                _beams.RemoveAt(order[0].Index);
                _worstScore = order[1].Score;
            }
            else
            {
                _worstScore = Math.Min(score, _worstScore);
            }
        }
    }

    /// <summary>Whether no open beam can beat the kept hypotheses any more (transformers' <c>is_done</c>, early_stopping True/False).</summary>
    /// <param name="bestSumLogProbs">The best running score among this step's candidates.</param>
    /// <param name="normalizingLength">The length that score is divided by (the same rule as <see cref="Add"/>).</param>
    public bool IsDone(double bestSumLogProbs, int normalizingLength)
    {
        if (_beams.Count < numBeams) return false;
        if (earlyStopping) return true;
        double highestAttainable = bestSumLogProbs / Math.Pow(normalizingLength, lengthPenalty);
        return _worstScore >= highestAttainable;
    }

    /// <summary>The best <paramref name="count"/> hypotheses, best first (ties: the later added first, as Python's sorted + pop).</summary>
    public List<(double Score, long[] Tokens)> Best(int count)
    {
        var ascending = _beams.OrderBy(b => b.Score).ToList(); // stable
        var best = new List<(double, long[])>(count);
        for (int i = 0; i < count && ascending.Count > 0; i++)
        {
            best.Add(ascending[^1]);
            ascending.RemoveAt(ascending.Count - 1);
        }
        return best;
    }
}
