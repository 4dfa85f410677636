using System.Text.Json;
using BlipSharp.Training.Evaluation.Captioning;
using Xunit;

namespace BlipSharp.Tests.Metrics;

/// <summary>Tokenisation and BLEU / ROUGE-L / CIDEr-D against every image of the captioning golden fixture.</summary>
[Trait("Category", "Metrics")]
public sealed class CaptionMetricsTests
{
    [Theory]
    [MemberData(nameof(CaptioningFixture.Tokenizations), MemberType = typeof(CaptioningFixture))]
    public void TokenizerReproducesEveryTokenizedString(string tokenization)
    {
        var items = CaptioningFixture.Items();
        var expected = CaptioningFixture.Results(tokenization).GetProperty("per_image").EnumerateArray().ToList();
        Assert.Equal(items.Count, expected.Count);
        var tokenizer = CaptionTokenizers.Create(CaptioningFixture.Kind(tokenization));
        var references = tokenizer.Tokenize(items.SelectMany(i => i.References).ToList());
        var candidates = tokenizer.Tokenize(items.Select(i => i.Candidate).ToList());
        var failures = new List<string>();
        int at = 0;
        for (int i = 0; i < items.Count; i++)
        {
            string id = items[i].ImageId;
            Assert.Equal(id, expected[i].GetProperty("image_id").GetRawText().Trim('"'));
            string want = expected[i].GetProperty("candidate_tokenized").GetString()!;
            if (candidates[i] != want) failures.Add($"{id} candidate '{items[i].Candidate}': expected '{want}', got '{candidates[i]}'");
            var wantRefs = expected[i].GetProperty("references_tokenized").EnumerateArray().Select(r => r.GetString()!).ToList();
            for (int r = 0; r < wantRefs.Count; r++)
                if (references[at + r] != wantRefs[r]) failures.Add($"{id} reference {r} '{items[i].References[r]}': expected '{wantRefs[r]}', got '{references[at + r]}'");
            at += items[i].References.Count;
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(CaptioningFixture.Tokenizations), MemberType = typeof(CaptioningFixture))]
    public void ScorersOnTheFixtureTokensReproduceEveryImage(string tokenization)
    {
        // The scorers alone, fed the fixture's own tokenised strings: independent of the tokenizer.
        var expected = CaptioningFixture.Results(tokenization).GetProperty("per_image").EnumerateArray().ToList();
        var candidates = expected.Select(e => e.GetProperty("candidate_tokenized").GetString()!).ToList();
        var references = expected.Select(e => (IReadOnlyList<string>)e.GetProperty("references_tokenized").EnumerateArray().Select(r => r.GetString()!).ToList()).ToList();
        var bleu = new Bleu(4);
        var rouge = new RougeL();
        var cider = new CiderD().Score(candidates, references);
        var allStats = new List<BleuStats>();
        for (int i = 0; i < expected.Count; i++)
        {
            var e = expected[i];
            string id = e.GetProperty("image_id").GetRawText();
            var stats = bleu.Stats(candidates[i], references[i]);
            AssertStats(e.GetProperty("bleu_stats"), stats, "closest_reflen", $"image {id}");
            allStats.Add(stats);
            var b = bleu.Score(stats);
            for (int k = 0; k < 4; k++) CaptioningFixture.Close(e.GetProperty($"Bleu_{k + 1}").GetDouble(), b[k], $"image {id} Bleu_{k + 1}");
            CaptioningFixture.Close(e.GetProperty("ROUGE_L").GetDouble(), rouge.Score(candidates[i], references[i]), $"image {id} ROUGE_L");
            CaptioningFixture.Close(e.GetProperty("CIDEr").GetDouble(), cider[i], $"image {id} CIDEr");
        }
        var results = CaptioningFixture.Results(tokenization);
        var corpusStats = bleu.Sum(allStats);
        AssertStats(results.GetProperty("bleu_corpus_stats"), corpusStats, "reflen", "corpus");
        var corpus = results.GetProperty("corpus");
        var cb = bleu.Score(corpusStats);
        for (int k = 0; k < 4; k++) CaptioningFixture.Close(corpus.GetProperty($"Bleu_{k + 1}").GetDouble(), cb[k], $"corpus Bleu_{k + 1}");
    }

    [Theory]
    [MemberData(nameof(CaptioningFixture.Tokenizations), MemberType = typeof(CaptioningFixture))]
    public void EvaluatorReproducesCorpusAndPerImageScores(string tokenization)
    {
        var result = CaptionEvaluator.Evaluate(CaptioningFixture.Items(), CaptioningFixture.Kind(tokenization));
        var expected = CaptioningFixture.Results(tokenization);
        AssertScores(expected.GetProperty("corpus"), result.Corpus, "corpus");
        AssertStats(expected.GetProperty("bleu_corpus_stats"), result.BleuCorpusStats, "reflen", "corpus");
        var perImage = expected.GetProperty("per_image").EnumerateArray().ToList();
        Assert.Equal(perImage.Count, result.Images.Count);
        for (int i = 0; i < perImage.Count; i++)
        {
            string id = result.Images[i].ImageId;
            Assert.Equal(perImage[i].GetProperty("image_id").GetRawText().Trim('"'), id);
            AssertScores(perImage[i], result.Images[i].Scores, $"image {id}");
            AssertStats(perImage[i].GetProperty("bleu_stats"), result.Images[i].BleuStats, "closest_reflen", $"image {id}");
            Assert.Equal(perImage[i].GetProperty("candidate_tokenized").GetString(), result.Images[i].CandidateTokenized);
        }
    }

    internal static void AssertScores(JsonElement expected, CaptionScores actual, string what)
    {
        CaptioningFixture.Close(expected.GetProperty("Bleu_1").GetDouble(), actual.Bleu1, $"{what} Bleu_1");
        CaptioningFixture.Close(expected.GetProperty("Bleu_2").GetDouble(), actual.Bleu2, $"{what} Bleu_2");
        CaptioningFixture.Close(expected.GetProperty("Bleu_3").GetDouble(), actual.Bleu3, $"{what} Bleu_3");
        CaptioningFixture.Close(expected.GetProperty("Bleu_4").GetDouble(), actual.Bleu4, $"{what} Bleu_4");
        CaptioningFixture.Close(expected.GetProperty("ROUGE_L").GetDouble(), actual.RougeL, $"{what} ROUGE_L");
        CaptioningFixture.Close(expected.GetProperty("CIDEr").GetDouble(), actual.Cider, $"{what} CIDEr");
    }

    private static void AssertStats(JsonElement expected, BleuStats actual, string refLenKey, string what)
    {
        Assert.True(expected.GetProperty("testlen").GetInt32() == actual.TestLength, $"{what} testlen");
        Assert.True(expected.GetProperty(refLenKey).GetInt32() == actual.ReferenceLength, $"{what} {refLenKey}");
        Assert.Equal(expected.GetProperty("guess").EnumerateArray().Select(g => g.GetInt32()), actual.Guess);
        Assert.Equal(expected.GetProperty("correct").EnumerateArray().Select(g => g.GetInt32()), actual.Correct);
    }
}
