using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Pipelines;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Docs;

/// <summary>The README's usage example, run on a fixture checkpoint, so the README cannot drift from the API.</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public void ReadmeRetrievalExampleRuns()
    {
        string dir = Fixtures.HfModelDirs().First(d => File.ReadAllText(Path.Combine(d, "config.json")).Contains("\"BlipForImageTextRetrieval\""));
        string photo = Fixtures.HfImages()[0].Path;

        // --- as in README.md ---
        var processor = BlipProcessor.FromPretrained(dir);
        using var model = BlipForImageTextRetrieval.FromPretrained(dir);

        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var inputs = processor.Process([photo, photo], ["two cats on a couch", "a pizza"]);
        var itm = model.ImageTextMatching(inputs.PixelValues!, inputs.InputIds!, inputs.AttentionMask!);
        var itc = model.ContrastiveSimilarity(inputs.PixelValues![..1], inputs.InputIds!, inputs.AttentionMask!);
        // --- end ---

        Assert.Equal(new long[] { 2, 2 }, itm.Probabilities.shape);
        Assert.Equal(new long[] { 1, 2 }, itc.Cosine.shape);
        Assert.True((itm.Probabilities.sum(1) - 1).abs().max().item<float>() < 1e-6);
        Assert.True(itc.Cosine.abs().max().item<float>() <= 1.0f + 1e-6);
    }

    [Fact]
    public void ReadmePipelineExampleRuns()
    {
        string Dir(string architecture) => Fixtures.HfModelDirs().First(d => File.ReadAllText(Path.Combine(d, "config.json")).Contains($"\"{architecture}\""));
        string photo = Fixtures.HfImages()[0].Path;
        string captionModel = Dir(nameof(BlipForConditionalGeneration)), vqaModel = Dir(nameof(BlipForQuestionAnswering)), itmModel = Dir(nameof(BlipForImageTextRetrieval));

        // --- as in README.md (hub ids replaced by fixture folders, "photo.jpg" by a fixture image) ---
        using var captioner = Captioner.FromPretrained(captionModel);
        string caption = captioner.Caption(photo).Text;
        var sampled = captioner.Caption(photo, new CaptionOptions
        {
            Generation = GenerationOptions.Nucleus with { NumReturnSequences = 3, Seed = 42 },
            Prompt = "a picture of",
        });

        using var vqa = QuestionAnswerer.FromPretrained(vqaModel);
        string answer = vqa.Answer(photo, "how many cats are there?").Text;
        var ranked = vqa.RankAnswers(photo, "what color is the couch?", ["red", "pink", "blue"]);

        using var matcher = ImageTextMatcher.FromPretrained(itmModel);
        var scores = matcher.Match([photo], ["two cats on a couch", "a pizza"]);

        using var embedder = ImageTextEmbedder.Create(matcher.Model, matcher.Processor);
        float[] image = embedder.EmbedImage(photo), text = embedder.EmbedText("two cats");
        // --- end ---

        Assert.False(string.IsNullOrWhiteSpace(caption));
        Assert.Equal(3, sampled.Captions.Count);
        Assert.All(sampled.Captions, c => Assert.Equal(new long[] { 30522, 1037, 3861, 1997 }, c.TokenIds.Take(4))); // [DEC] a picture of
        Assert.NotNull(answer);
        Assert.Equal(3, ranked.Count);
        Assert.Equal(2, scores.MatchProbability[0].Length);
        Assert.Equal(image.Length, text.Length);
        Assert.Equal(scores.Cosine[0][1], embedder.EmbedText("a pizza").Zip(image).Sum(x => x.First * x.Second), 4);
    }
}
