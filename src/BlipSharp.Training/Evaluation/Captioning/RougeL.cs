namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>
/// ROUGE-L as coco-caption's <c>Rouge</c>: tokens from <c>split(" ")</c> (an empty caption is one empty token), the
/// largest LCS precision and the largest LCS recall over the references taken separately, F with beta 1.2.
/// </summary>
public sealed class RougeL
{
    /// <summary>The recall weight of the F measure.</summary>
    public const double Beta = 1.2;

    /// <summary>ROUGE-L of one candidate against its references (tokenised strings).</summary>
    public double Score(string candidate, IReadOnlyList<string> references)
    {
        if (references.Count == 0) throw new ArgumentException("ROUGE-L needs at least one reference", nameof(references));
        var c = candidate.Split(' ');
        double maxPrecision = double.NegativeInfinity, maxRecall = double.NegativeInfinity;
        foreach (string reference in references)
        {
            var r = reference.Split(' ');
            int lcs = Lcs(r, c);
            maxPrecision = Math.Max(maxPrecision, lcs / (double)c.Length);
            maxRecall = Math.Max(maxRecall, lcs / (double)r.Length);
        }
        if (maxPrecision == 0 || maxRecall == 0) return 0.0;
        double beta2 = Beta * Beta;
        return (1 + beta2) * maxPrecision * maxRecall / (maxRecall + beta2 * maxPrecision);
    }

    /// <summary>Length of the longest common subsequence of two token sequences.</summary>
    public static int Lcs(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var previous = new int[b.Count + 1];
        var current = new int[b.Count + 1];
        for (int i = 1; i <= a.Count; i++)
        {
            for (int j = 1; j <= b.Count; j++)
                current[j] = string.Equals(a[i - 1], b[j - 1], StringComparison.Ordinal) ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return previous[b.Count];
    }
}
