namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>BLEU counts of one image (coco-caption's <c>cook_test</c> with <c>option='closest'</c>).</summary>
/// <param name="TestLength">Words in the candidate.</param>
/// <param name="ReferenceLength">Length of the reference closest to <paramref name="TestLength"/> (the shorter on a tie).</param>
/// <param name="Guess">Candidate n-grams of each order 1..n.</param>
/// <param name="Correct">Candidate n-grams of each order clipped by their largest count in any single reference.</param>
public sealed record BleuStats(int TestLength, int ReferenceLength, IReadOnlyList<int> Guess, IReadOnlyList<int> Correct);

/// <summary>
/// BLEU-1..n as coco-caption's <c>BleuScorer</c> computes it: per image and for the corpus (summed counts), with the
/// 1e-15 / 1e-9 smoothing epsilons and the 'closest' reference length for the brevity penalty.
/// </summary>
public sealed class Bleu
{
    private const double Tiny = 1e-15;
    private const double Small = 1e-9;

    /// <summary>Creates a scorer for BLEU-1..<paramref name="n"/> (COCO uses 4).</summary>
    public Bleu(int n = 4)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "BLEU needs n >= 1");
        N = n;
    }

    /// <summary>The highest n-gram order.</summary>
    public int N { get; }

    /// <summary>The counts of one candidate against its references (tokenised strings).</summary>
    public BleuStats Stats(string candidate, IReadOnlyList<string> references)
    {
        if (references.Count == 0) throw new ArgumentException("BLEU needs at least one reference", nameof(references));
        var maxCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        var lengths = new List<int>(references.Count);
        foreach (string reference in references)
        {
            var words = NGrams.Words(reference);
            lengths.Add(words.Length);
            foreach (var (gram, _, count) in NGrams.Count(words, N).Items)
                maxCounts[gram] = Math.Max(maxCounts.GetValueOrDefault(gram), count);
        }
        var test = NGrams.Words(candidate);
        int testLength = test.Length;
        // min((abs(l - c), l) for l in reflen)[1]: the closest length, the shorter one on a tie.
        int refLength = lengths.OrderBy(l => Math.Abs(l - testLength)).ThenBy(l => l).First();
        var guess = new int[N];
        var correct = new int[N];
        for (int k = 1; k <= N; k++) guess[k - 1] = Math.Max(0, testLength - k + 1);
        foreach (var (gram, order, count) in NGrams.Count(test, N).Items)
            correct[order - 1] += Math.Min(maxCounts.GetValueOrDefault(gram), count);
        return new BleuStats(testLength, refLength, guess, correct);
    }

    /// <summary>BLEU-1..n of one set of counts (one image, or the corpus sums).</summary>
    public IReadOnlyList<double> Score(BleuStats stats)
    {
        var scores = new double[N];
        double bleu = 1.0;
        for (int k = 0; k < N; k++)
        {
            bleu *= (stats.Correct[k] + Tiny) / (stats.Guess[k] + Small);
            scores[k] = Math.Pow(bleu, 1.0 / (k + 1));
        }
        double ratio = (stats.TestLength + Tiny) / (stats.ReferenceLength + Small);
        if (ratio < 1)
            for (int k = 0; k < N; k++) scores[k] *= Math.Exp(1 - 1 / ratio);
        return scores;
    }

    /// <summary>The corpus counts: every field summed over the images.</summary>
    public BleuStats Sum(IEnumerable<BleuStats> images)
    {
        int test = 0, reference = 0;
        var guess = new int[N];
        var correct = new int[N];
        foreach (var s in images)
        {
            test += s.TestLength;
            reference += s.ReferenceLength;
            for (int k = 0; k < N; k++)
            {
                guess[k] += s.Guess[k];
                correct[k] += s.Correct[k];
            }
        }
        return new BleuStats(test, reference, guess, correct);
    }
}
