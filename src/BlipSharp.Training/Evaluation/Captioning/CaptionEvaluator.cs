namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>One image to score: its id, the candidate caption and the reference captions (raw text).</summary>
/// <param name="ImageId">The image id as written in the files (ints and strings are compared as text).</param>
/// <param name="Candidate">The generated caption.</param>
/// <param name="References">The human captions (at least one).</param>
public sealed record CaptionEvaluationItem(string ImageId, string Candidate, IReadOnlyList<string> References);

/// <summary>The six COCO numbers for one image or the corpus.</summary>
/// <param name="Bleu1">BLEU-1.</param>
/// <param name="Bleu2">BLEU-2.</param>
/// <param name="Bleu3">BLEU-3.</param>
/// <param name="Bleu4">BLEU-4.</param>
/// <param name="RougeL">ROUGE-L.</param>
/// <param name="Cider">CIDEr-D as COCO reports it (papers print this x100).</param>
public sealed record CaptionScores(double Bleu1, double Bleu2, double Bleu3, double Bleu4, double RougeL, double Cider);

/// <summary>One image's scores, BLEU counts and the tokenised strings the scorers saw.</summary>
/// <param name="ImageId">The image id.</param>
/// <param name="Scores">The image's BLEU-1..4, ROUGE-L and CIDEr-D.</param>
/// <param name="BleuStats">The image's BLEU counts.</param>
/// <param name="CandidateTokenized">The tokenised candidate.</param>
/// <param name="ReferencesTokenized">The tokenised references.</param>
public sealed record ImageCaptionScores(string ImageId, CaptionScores Scores, BleuStats BleuStats, string CandidateTokenized, IReadOnlyList<string> ReferencesTokenized);

/// <summary>The result of <see cref="CaptionEvaluator.Evaluate(IReadOnlyList{CaptionEvaluationItem}, CaptionTokenization)"/>.</summary>
/// <param name="Corpus">Corpus BLEU (from summed counts), mean ROUGE-L and mean CIDEr-D.</param>
/// <param name="BleuCorpusStats">The summed BLEU counts.</param>
/// <param name="Images">Per image, in input order.</param>
/// <param name="Tokenization">The tokenisation used.</param>
public sealed record CaptionEvaluationResult(CaptionScores Corpus, BleuStats BleuCorpusStats, IReadOnlyList<ImageCaptionScores> Images, CaptionTokenization Tokenization);

/// <summary>
/// COCO caption evaluation (<c>COCOEvalCap.evaluate()</c> without METEOR and SPICE): tokenise the references and the
/// candidates in two separate calls, then BLEU-1..4 (closest reference length), ROUGE-L and CIDEr-D.
/// </summary>
public static class CaptionEvaluator
{
    /// <summary>Scores <paramref name="items"/> (one candidate per image) with <paramref name="tokenization"/>.</summary>
    public static CaptionEvaluationResult Evaluate(IReadOnlyList<CaptionEvaluationItem> items, CaptionTokenization tokenization = CaptionTokenization.Ptb) =>
        Evaluate(items, CaptionTokenizers.Create(tokenization), tokenization);

    /// <summary>Scores <paramref name="items"/> with a given tokenizer.</summary>
    public static CaptionEvaluationResult Evaluate(IReadOnlyList<CaptionEvaluationItem> items, ICaptionTokenizer tokenizer, CaptionTokenization tokenization)
    {
        if (items.Count == 0) throw new ArgumentException("no images to score", nameof(items));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            if (!seen.Add(item.ImageId)) throw new ArgumentException($"image {item.ImageId} appears twice; COCO scores one candidate per image", nameof(items));
            if (item.References.Count == 0) throw new ArgumentException($"image {item.ImageId} has no reference captions", nameof(items));
        }
        var flatReferences = tokenizer.Tokenize(items.SelectMany(i => i.References).ToList());
        var candidates = tokenizer.Tokenize(items.Select(i => i.Candidate).ToList());
        var references = new List<IReadOnlyList<string>>(items.Count);
        int at = 0;
        foreach (var item in items)
        {
            references.Add(flatReferences.Skip(at).Take(item.References.Count).ToList());
            at += item.References.Count;
        }

        var bleu = new Bleu(4);
        var rouge = new RougeL();
        var cider = new CiderD().Score(candidates, references);
        var images = new List<ImageCaptionScores>(items.Count);
        for (int i = 0; i < items.Count; i++)
        {
            var stats = bleu.Stats(candidates[i], references[i]);
            var b = bleu.Score(stats);
            images.Add(new ImageCaptionScores(items[i].ImageId,
                new CaptionScores(b[0], b[1], b[2], b[3], rouge.Score(candidates[i], references[i]), cider[i]),
                stats, candidates[i], references[i]));
        }
        var corpusStats = bleu.Sum(images.Select(i => i.BleuStats));
        var cb = bleu.Score(corpusStats);
        var corpus = new CaptionScores(cb[0], cb[1], cb[2], cb[3], images.Average(i => i.Scores.RougeL), cider.Average());
        return new CaptionEvaluationResult(corpus, corpusStats, images, tokenization);
    }
}
