namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>
/// CIDEr-D as coco-caption's <c>CiderScorer</c> ("CIDEr" in COCO's output): TF-IDF vectors of 1..4-grams with
/// document frequencies over the references of the evaluated images only, clipped similarity, a Gaussian penalty
/// (sigma 6) on the difference in bigram counts, the mean over n and references, times 10.
/// </summary>
public sealed class CiderD
{
    /// <summary>Creates the scorer (COCO: n 4, sigma 6).</summary>
    public CiderD(int n = 4, double sigma = 6.0)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "CIDEr needs n >= 1");
        N = n;
        Sigma = sigma;
    }

    /// <summary>The highest n-gram order.</summary>
    public int N { get; }

    /// <summary>The length penalty's standard deviation.</summary>
    public double Sigma { get; }

    /// <summary>
    /// Scores every image: <paramref name="candidates"/>[i] against <paramref name="references"/>[i] (tokenised
    /// strings). The document frequencies come from these references, so the scores depend on the whole set.
    /// </summary>
    public IReadOnlyList<double> Score(IReadOnlyList<string> candidates, IReadOnlyList<IReadOnlyList<string>> references)
    {
        if (candidates.Count != references.Count) throw new ArgumentException($"{candidates.Count} candidates but {references.Count} reference sets");
        var refCounts = references.Select(refs =>
        {
            if (refs.Count == 0) throw new ArgumentException("CIDEr needs at least one reference per image", nameof(references));
            return refs.Select(r => NGrams.Count(NGrams.Words(r), N)).ToList();
        }).ToList();
        var documentFrequency = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var refs in refCounts)
            foreach (string gram in refs.SelectMany(r => r.Items.Select(i => i.Gram)).Distinct(StringComparer.Ordinal))
                documentFrequency[gram] = documentFrequency.GetValueOrDefault(gram) + 1;
        double refLength = Math.Log(candidates.Count);

        var scores = new double[candidates.Count];
        for (int i = 0; i < candidates.Count; i++)
        {
            var hyp = Vector(NGrams.Count(NGrams.Words(candidates[i]), N), documentFrequency, refLength);
            var score = new double[N];
            foreach (var reference in refCounts[i])
            {
                var r = Vector(reference, documentFrequency, refLength);
                var sim = Similarity(hyp, r);
                for (int n = 0; n < N; n++) score[n] += sim[n];
            }
            double mean = 0;
            foreach (double s in score) mean += s;
            mean /= N;
            mean /= refCounts[i].Count;
            scores[i] = mean * 10.0;
        }
        return scores;
    }

    private sealed record TfIdf(List<Dictionary<string, double>> Vectors, List<List<string>> Order, double[] Norms, int Bigrams);

    private TfIdf Vector(OrderedCounts counts, Dictionary<string, int> documentFrequency, double refLength)
    {
        var vectors = Enumerable.Range(0, N).Select(_ => new Dictionary<string, double>(StringComparer.Ordinal)).ToList();
        var order = Enumerable.Range(0, N).Select(_ => new List<string>()).ToList();
        var norms = new double[N];
        int bigrams = 0;
        foreach (var (gram, length, termFrequency) in counts.Items)
        {
            double df = Math.Log(Math.Max(1.0, documentFrequency.GetValueOrDefault(gram)));
            int n = length - 1;
            double value = termFrequency * (refLength - df);
            vectors[n][gram] = value;
            order[n].Add(gram);
            norms[n] += Math.Pow(value, 2);
            if (n == 1) bigrams += termFrequency;
        }
        for (int n = 0; n < N; n++) norms[n] = Math.Sqrt(norms[n]);
        return new TfIdf(vectors, order, norms, bigrams);
    }

    private double[] Similarity(TfIdf hyp, TfIdf reference)
    {
        double delta = hyp.Bigrams - reference.Bigrams;
        var value = new double[N];
        for (int n = 0; n < N; n++)
        {
            foreach (string gram in hyp.Order[n])
            {
                double h = hyp.Vectors[n][gram];
                double r = reference.Vectors[n].GetValueOrDefault(gram);
                value[n] += Math.Min(h, r) * r;
            }
            if (hyp.Norms[n] != 0 && reference.Norms[n] != 0) value[n] /= hyp.Norms[n] * reference.Norms[n];
            value[n] *= Math.Pow(Math.E, -(delta * delta) / (2 * Sigma * Sigma));
        }
        return value;
    }
}
