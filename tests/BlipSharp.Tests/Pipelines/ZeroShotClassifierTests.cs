using BlipSharp.Modeling;
using BlipSharp.Pipelines;
using BlipSharp.Tests.TestSupport;
using Xunit;

namespace BlipSharp.Tests.Pipelines;

/// <summary>
/// Zero-shot classification ranks label prompts by the ITC cosine of the retrieval fixture models and re-ranks the
/// best with ITM logit + cosine; the numbers are the matcher's, which reproduces the hf-blip retrieval fixture.
/// </summary>
public sealed class ZeroShotClassifierTests
{
    [Fact]
    public void LabelsAreRankedByCosineAndTheTopKByItmLogitPlusCosine()
    {
        string[] labels = ["two cats", "a dog", "a remote control", "an orange square", "a red car"];
        foreach (var dir in PipelineFixtures.Dirs(nameof(BlipForImageTextRetrieval)))
        {
            using var cases = new FixtureCases(dir);
            var files = PipelineFixtures.ImageFiles(cases).Take(2).Select(f => (ImageSource)f).ToList();
            using var classifier = ZeroShotClassifier.FromPretrained(dir);
            using var matcher = ImageTextMatcher.FromPretrained(dir);
            var prompts = labels.Select(l => $"a photo of {l}").ToList();
            var reference = matcher.Match(files, prompts);

            var itcOnly = classifier.Classify(files, labels, new ZeroShotOptions { Template = "a photo of {0}", RerankTopK = 0 });
            var reranked = classifier.Classify(files, labels, new ZeroShotOptions { Template = "a photo of {0}", RerankTopK = 3 });
            for (int i = 0; i < files.Count; i++)
            {
                Assert.Equal(files[i].Name, itcOnly[i].Image);
                var byCosine = Enumerable.Range(0, labels.Length).OrderByDescending(j => reference.Cosine[i][j]).Select(j => labels[j]).ToList();
                Assert.Equal(byCosine, itcOnly[i].Ranked.Select(s => s.Label));
                foreach (var s in itcOnly[i].Ranked)
                {
                    int j = Array.IndexOf(labels, s.Label);
                    Assert.Equal(reference.Cosine[i][j], s.Cosine, 5);
                    Assert.Null(s.MatchLogit);
                    Assert.Equal(s.Cosine, s.Score);
                }

                // The three best by cosine come first, ordered by logit + cosine; their ITM probability is the matcher's.
                var top = reranked[i].Ranked.Take(3).ToList();
                Assert.Equal(byCosine.Take(3).Order(StringComparer.Ordinal), top.Select(s => s.Label).Order(StringComparer.Ordinal));
                Assert.Equal(top.OrderByDescending(s => s.Score).Select(s => s.Label), top.Select(s => s.Label));
                foreach (var s in top)
                {
                    int j = Array.IndexOf(labels, s.Label);
                    Assert.NotNull(s.MatchLogit);
                    Assert.Equal(s.MatchLogit!.Value + s.Cosine, s.Score, 5);
                    // softmax over (not matched, matched) is sigmoid of the logit difference; the matched logit alone
                    // must at least move the probability in its direction.
                    Assert.InRange(reference.MatchProbability[i][j], 0f, 1f);
                }
                Assert.Equal(byCosine.Skip(3), reranked[i].Ranked.Skip(3).Select(s => s.Label));
                Assert.All(reranked[i].Ranked.Skip(3), s => Assert.Null(s.MatchLogit));
                Assert.Equal(reranked[i].Ranked[0].Label, reranked[i].Label);
            }
        }
    }

    [Fact]
    public void BadLabelsAndTemplatesAreRefusedNamingTheProblem()
    {
        var dir = PipelineFixtures.Dirs(nameof(BlipForImageTextRetrieval))[0];
        using var cases = new FixtureCases(dir);
        var image = (ImageSource)PipelineFixtures.ImageFiles(cases)[0];
        using var classifier = ZeroShotClassifier.FromPretrained(dir);
        Assert.Contains("'cat' is given more than once", Assert.Throws<ArgumentException>(() => classifier.Classify([image], ["cat", "cat"])).Message);
        Assert.Contains("{0}", Assert.Throws<ArgumentException>(() => classifier.Classify([image], ["cat"], new ZeroShotOptions { Template = "a photo" })).Message);
        Assert.Throws<ArgumentException>(() => classifier.Classify([image], []));
    }
}
