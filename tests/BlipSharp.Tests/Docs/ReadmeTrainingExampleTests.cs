using BlipSharp.Training.Data;
using BlipSharp.Training.Synthetic;
using Xunit;

namespace BlipSharp.Tests.Docs;

/// <summary>The README's training-data example, run as written (in a temporary folder, 64 images), so it cannot drift from the API.</summary>
public sealed class ReadmeTrainingExampleTests
{
    [Fact]
    public void ReadmeTrainingDataExampleRuns()
    {
        string root = Directory.CreateTempSubdirectory("blipsharp-readme-").FullName;
        string previous = Environment.CurrentDirectory;
        var seen = new List<(long[] Shape, int Captions, bool HasNoisy)>();
        try
        {
            Environment.CurrentDirectory = root;

            // --- as in README.md (sizes reduced) ---
            SyntheticWorld.Generate("synth", new SyntheticWorldOptions { Seed = 1, PretrainImages = 64, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0 });
            var dataset = BlipAnnotations.Load("synth/pretrain.json");
            var transform = new BlipTrainTransform(new BlipTrainTransformOptions { ImageSize = 32 });
            var loader = new ImageTextLoader(dataset, transform,
                new DataLoaderOptions { BatchSize = 32, Seed = 1, SwapLeftRightOnFlip = true });
            foreach (var batch in loader.ReadEpoch(epoch: 0))
            {
                using (batch)
                {
                    seen.Add((batch.Pixels.shape, batch.Captions.Count, batch.Entries[0].Extra.ContainsKey("noisy")));
                }
            }
            // --- end ---
        }
        finally
        {
            Environment.CurrentDirectory = previous;
            Directory.Delete(root, recursive: true);
        }
        Assert.Equal(2, seen.Count);
        Assert.All(seen, s =>
        {
            Assert.Equal(new long[] { 32, 3, 32, 32 }, s.Shape);
            Assert.Equal(32, s.Captions);
            Assert.True(s.HasNoisy);
        });
    }
}
