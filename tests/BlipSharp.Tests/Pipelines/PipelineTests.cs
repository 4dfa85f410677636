using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Pipelines;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pipelines;

/// <summary>
/// The public task API end to end: image files and strings in, the fixture's transformers results out.
/// </summary>
[Trait("Category", "Parity")]
public sealed class PipelineTests
{
    public static IEnumerable<object[]> CaptionRuns() => PipelineFixtures.Runs(nameof(BlipForConditionalGeneration));
    public static IEnumerable<object[]> AnswerRuns() => PipelineFixtures.Runs(nameof(BlipForQuestionAnswering));

    [Theory]
    [MemberData(nameof(CaptionRuns))]
    public void CaptionerReproducesEveryRecordedRunFromImageFiles(string model, string run)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var spec = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty(run);
        string? prompt = spec.TryGetProperty("prompt", out var p) && p.ValueKind == System.Text.Json.JsonValueKind.String ? p.GetString() : null;
        var images = PipelineFixtures.RunImages(cases, spec);
        using var captioner = Captioner.FromPretrained(dir);
        var results = captioner.Caption(images.Select(f => (ImageSource)f).ToList(),
            new CaptionOptions { Generation = PipelineFixtures.Options(spec), Prompt = prompt });

        var rows = spec.GetProperty("sequences").EnumerateArray().ToList();
        var texts = spec.GetProperty("decoded_skip_special").EnumerateArray().Select(t => t.GetString()!).ToList();
        int promptLength = spec.GetProperty("prompt_len").GetInt32();
        Assert.Equal(images.Count, results.Count);
        for (int i = 0; i < images.Count; i++)
        {
            Assert.Equal(images[i], results[i].Source);
            Assert.Single(results[i].Captions);
            Assert.Equal(PipelineFixtures.Trimmed(rows[i], promptLength), results[i].Captions[0].TokenIds);
            // transformers decodes the prompt too; the pipeline returns the continuation only.
            string expected = prompt is null ? texts[i] : texts[i][(prompt.Length + 1)..];
            if (prompt is not null) Assert.StartsWith(prompt + " ", texts[i]);
            Assert.Equal(expected, results[i].Text);
        }
        if (spec.TryGetProperty("sequences_scores", out var scores))
            for (int i = 0; i < images.Count; i++)
                Assert.Equal(scores[i].GetDouble(), results[i].Captions[0].Score!.Value, 4);
    }

    [Theory]
    [MemberData(nameof(AnswerRuns))]
    public void QuestionAnswererReproducesEveryRecordedRunFromImageFiles(string model, string run)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var spec = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty(run);
        var questions = cases.Json.GetProperty("cases").GetProperty("questions");
        var texts = questions.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();
        var files = PipelineFixtures.ImageFiles(cases);
        var images = questions.GetProperty("image_index").EnumerateArray().Select(i => (ImageSource)files[i.GetInt32()]).ToList();
        using var answerer = QuestionAnswerer.FromPretrained(dir);
        var results = answerer.Answer(images, texts, new AnswerOptions { Generation = PipelineFixtures.Options(spec) });

        var rows = spec.GetProperty("sequences").EnumerateArray().ToList();
        var decoded = spec.GetProperty("decoded_skip_special").EnumerateArray().Select(t => t.GetString()!).ToList();
        for (int i = 0; i < texts.Count; i++)
        {
            Assert.Equal(texts[i], results[i].Question);
            Assert.Equal(PipelineFixtures.Trimmed(rows[i], 1), results[i].TokenIds);
            Assert.Equal(decoded[i], results[i].Text);
        }
    }

    [Fact]
    public void MultipleCaptionsPerImageComeBestFirstWithDecreasingScores()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var cases = new FixtureCases(dir);
        using var captioner = Captioner.FromPretrained(dir);
        var image = PipelineFixtures.ImageFiles(cases)[0];
        var options = new CaptionOptions { Generation = GenerationOptions.BeamSearch with { NumBeams = 4, NumReturnSequences = 3 } };
        var result = captioner.Caption(image, options);
        Assert.Equal(3, result.Captions.Count);
        var scores = result.Captions.Select(c => c.Score!.Value).ToList();
        Assert.True(scores[0] >= scores[1] && scores[1] >= scores[2], string.Join(", ", scores));
        Assert.Equal(3, result.Captions.Select(c => string.Join(",", c.TokenIds)).Distinct().Count());

        // Sampling: a seed reproduces the captions; another seed changes them.
        var sampling = new CaptionOptions { Generation = GenerationOptions.Nucleus with { Seed = 7, NumReturnSequences = 4 } };
        var first = captioner.Caption(image, sampling).Captions.Select(c => string.Join(",", c.TokenIds)).ToList();
        var again = captioner.Caption(image, sampling).Captions.Select(c => string.Join(",", c.TokenIds)).ToList();
        var other = captioner.Caption(image, sampling with { Generation = sampling.Generation with { Seed = 8 } }).Captions.Select(c => string.Join(",", c.TokenIds)).ToList();
        Assert.Equal(4, first.Count);
        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
        Assert.All(first, ids => Assert.StartsWith("30522,", ids));
    }

    [Fact]
    public void ImagesFromFilesStreamsBytesAndDecodedImagesGiveTheSameCaption()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var cases = new FixtureCases(dir);
        using var captioner = Captioner.FromPretrained(dir);
        string file = PipelineFixtures.ImageFiles(cases)[1];
        var options = new CaptionOptions { Generation = GenerationOptions.Greedy };
        var fromFile = captioner.Caption(file, options);
        using var stream = File.OpenRead(file);
        var fromStream = captioner.Caption(ImageSource.FromStream(stream, "s"), options);
        var fromBytes = captioner.Caption(File.ReadAllBytes(file), options);
        var fromImage = captioner.Caption(ImageDecoder.Decode(file), options);
        Assert.Equal(fromFile.Captions[0].TokenIds, fromStream.Captions[0].TokenIds);
        Assert.Equal(fromFile.Captions[0].TokenIds, fromBytes.Captions[0].TokenIds);
        Assert.Equal(fromFile.Captions[0].TokenIds, fromImage.Captions[0].TokenIds);
        Assert.Equal("s", fromStream.Source);
    }

    [Fact]
    public void AnUnreadableImageIsReportedByName()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var captioner = Captioner.FromPretrained(dir);
        string bad = Path.Combine(Path.GetTempPath(), $"blip-bad-{Guid.NewGuid():N}.jpg");
        File.WriteAllBytes(bad, [0xFF, 0xD8, 0xFF, 0x00, 0x01]);
        try
        {
            var e = Assert.Throws<ImageDecodeException>(() => captioner.Caption(bad));
            Assert.Contains(bad, e.Message);
        }
        finally { File.Delete(bad); }
    }

    [Fact]
    public void MatcherAndEmbedderReproduceTheRetrievalFixture()
    {
        foreach (var dir in PipelineFixtures.Dirs(nameof(BlipForImageTextRetrieval)))
        {
            using var cases = new FixtureCases(dir);
            var files = PipelineFixtures.ImageFiles(cases).Take((int)cases.Tensor("pixel_values").shape[0]).Select(f => (ImageSource)f).ToList();
            var itm = cases.Json.GetProperty("cases").GetProperty("itm");
            var itmTexts = itm.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();
            var allTexts = cases.Json.GetProperty("cases").GetProperty("itc_all_texts").GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();
            using var matcher = ImageTextMatcher.FromPretrained(dir);

            var scores = matcher.Match(files, allTexts);
            var cosine = tensor(scores.Cosine.SelectMany(r => r).ToArray(), [files.Count, allTexts.Count]);
            FixtureModels.Check(cases, "itc_all_texts.cosine", cosine);
            // ITM of image i with itm text i: the diagonal of the pairs that are in both lists.
            var probs = cases.Tensor("itm.probs");
            for (int i = 0; i < itmTexts.Count; i++)
            {
                int column = allTexts.IndexOf(itmTexts[i]);
                Assert.True(column >= 0, $"{itmTexts[i]} is not among the all-texts case");
                double expected = probs[i, 1].ToDouble();
                Assert.True(Math.Abs(expected - scores.MatchProbability[i][column]) <= cases.Tolerance("itm.probs"),
                    $"{Path.GetFileName(dir)} ITM image {i} text {column}: {scores.MatchProbability[i][column]} vs {expected}");
            }

            using var embedder = ImageTextEmbedder.Create(matcher.Model, matcher.Processor);
            var imageFeatures = embedder.EmbedImages(files);
            var textFeatures = embedder.EmbedTexts(itmTexts);
            Assert.Equal(embedder.Dimension, imageFeatures[0].Length);
            FixtureModels.Check(cases, "itc.image_feat", tensor(imageFeatures.SelectMany(r => r).ToArray(), [imageFeatures.Length, embedder.Dimension]));
            FixtureModels.Check(cases, "itc.text_feat", tensor(textFeatures.SelectMany(r => r).ToArray(), [textFeatures.Length, embedder.Dimension]));
            Assert.Equal(1.0, Math.Sqrt(imageFeatures[0].Sum(v => (double)v * v)), 5);
        }
    }

    [Fact]
    public void RankedAnswersAreOrderedByTheirTeacherForcedLikelihood()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForQuestionAnswering))[0];
        using var cases = new FixtureCases(dir);
        using var answerer = QuestionAnswerer.FromPretrained(dir);
        string image = PipelineFixtures.ImageFiles(cases)[0];
        string question = cases.Json.GetProperty("cases").GetProperty("questions").GetProperty("texts")[0].GetString()!;
        string[] candidates = ["two", "three cats", "pink", "a red couch", "none"];
        var ranked = answerer.RankAnswers(image, question, candidates);
        Assert.Equal(candidates.Length, ranked.Count);
        Assert.Equal(candidates.Order(), ranked.Select(r => r.Text).Order());

        // Independent check: log p(candidate) summed token by token from the decoder's logits, one candidate at a time.
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var pixels = answerer.Processor.ImageProcessor.Preprocess(image);
        var q = answerer.Processor.Tokenizer.EncodeToTensors([question]);
        var states = answerer.Model.EncodeQuestion(answerer.Model.EncodeImage(pixels), q.InputIds, q.AttentionMask);
        foreach (var r in ranked)
        {
            var ids = answerer.Processor.Tokenizer.Encode(r.Text);
            ids[0] = 30522;
            var input = tensor(ids, [1, ids.Length]);
            var logProbs = answerer.Model.text_decoder.Forward(input, null, states, q.AttentionMask).Logits.log_softmax(2);
            double sum = 0;
            for (int t = 1; t < ids.Length; t++) sum += logProbs[0, t - 1, ids[t]].ToDouble();
            Assert.True(Math.Abs(sum - r.LogLikelihood) < 1e-4, $"{r.Text}: {r.LogLikelihood} vs {sum}");
        }
        for (int i = 1; i < ranked.Count; i++) Assert.True(ranked[i - 1].LogLikelihood >= ranked[i].LogLikelihood);

        // The first-token filter keeps the k candidates whose first token is most probable.
        var top2 = answerer.RankAnswers(image, question, candidates, topK: 2);
        var expectedKept = ranked.OrderByDescending(r => r.FirstTokenProbability).Take(2).Select(r => r.Text).Order();
        Assert.Equal(expectedKept, top2.Select(r => r.Text).Order());
    }

    [Fact]
    public void CaptioningTwoHundredTimesLeavesNoTensorBehind()
    {
        string dir = PipelineFixtures.Dirs(nameof(BlipForConditionalGeneration))[0];
        using var cases = new FixtureCases(dir);
        using var captioner = Captioner.FromPretrained(dir);
        var image = ImageDecoder.Decode(PipelineFixtures.ImageFiles(cases)[0]);
        var options = new CaptionOptions { Generation = GenerationOptions.BeamSearch };
        captioner.Caption(image, options);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 200; i++) captioner.Caption(image, options);
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.Equal(before, after);
    }
}
