using BlipSharp.Modeling;
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
}
