using BlipSharp.Training.Data;
using BlipSharp.Training.Synthetic;
using TorchSharp;
using Xunit;

namespace BlipSharp.Tests.Training;

public sealed class LoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-loader-").FullName;
    private readonly ImageTextDataset _dataset;

    public LoaderTests()
    {
        SyntheticWorld.Generate(_dir, new SyntheticWorldOptions
        {
            Seed = 5, ImageSize = 32, PretrainImages = 42, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0,
        });
        _dataset = BlipAnnotations.Load(Path.Combine(_dir, SyntheticWorld.PretrainFile));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static BlipTrainTransform Transform(double flip = 0.5) =>
        new(new BlipTrainTransformOptions { ImageSize = 24, FlipProbability = flip });

    private ImageTextLoader Loader(DataLoaderOptions? options = null, BlipTrainTransform? transform = null) =>
        new(_dataset, transform ?? Transform(), options ?? new DataLoaderOptions { BatchSize = 8, Seed = 3 });

    [Fact]
    public void BatchesFollowTheSeededEpochOrder()
    {
        var loader = Loader();
        Assert.Equal(5, loader.BatchesPerEpoch); // 42 / 8, last partial batch dropped
        var order = loader.EpochOrder(0);
        Assert.Equal(Enumerable.Range(0, 42), order.Order());
        Assert.NotEqual(Enumerable.Range(0, 42), order);
        Assert.NotEqual(order, loader.EpochOrder(1));
        Assert.Equal(order, Loader().EpochOrder(0));
        Assert.NotEqual(order, Loader(new DataLoaderOptions { BatchSize = 8, Seed = 4 }).EpochOrder(0));

        var batches = loader.ReadEpoch(0).ToList();
        try
        {
            Assert.Equal(5, batches.Count);
            for (int b = 0; b < 5; b++)
            {
                Assert.Equal(new LoaderPosition(0, b), batches[b].Position);
                Assert.Equal(order.Skip(b * 8).Take(8), batches[b].Indices);
                Assert.Equal(new long[] { 8, 3, 24, 24 }, batches[b].Pixels.shape);
                Assert.Equal(8, batches[b].Captions.Count);
                Assert.All(batches[b].Captions, c => Assert.Equal(TextCleaning.PreCaption(c, 30), c)); // already cleaned
            }
            Assert.Equal(new LoaderPosition(1, 0), batches[^1].Next);
            for (int i = 0; i < 8; i++)
                Assert.Equal(TextCleaning.PreCaption(_dataset[batches[2].Indices[i]].Captions[0], 30), batches[2].Captions[i]);
        }
        finally
        {
            batches.ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void WithoutShuffleAndDropLastEveryoneComesInOrder()
    {
        var loader = Loader(new DataLoaderOptions { BatchSize = 8, Shuffle = false, DropLast = false, Workers = 1 });
        Assert.Equal(6, loader.BatchesPerEpoch);
        var batches = loader.ReadEpoch(0).ToList();
        Assert.Equal(Enumerable.Range(0, 42), batches.SelectMany(b => b.Indices));
        Assert.Equal(2, batches[^1].Count);
        batches.ForEach(b => b.Dispose());
    }

    [Fact]
    public void ResumingAtAPositionReproducesTheRun()
    {
        var full = Loader().Read().Take(8).ToList(); // crosses into epoch 1
        var resumed = Loader(new DataLoaderOptions { BatchSize = 8, Seed = 3, Workers = 1, Prefetch = 1 }).Read(full[3].Next).Take(4).ToList();
        try
        {
            Assert.Equal(new LoaderPosition(1, 0), full[5].Position);
            for (int i = 0; i < 4; i++)
            {
                var a = full[4 + i];
                var b = resumed[i];
                Assert.Equal(a.Position, b.Position);
                Assert.Equal(a.Indices, b.Indices);
                Assert.Equal(a.Captions, b.Captions);
                Assert.Equal(a.Flipped, b.Flipped);
                Assert.True(a.Pixels.allclose(b.Pixels, 0, 0), $"pixels of batch {a.Position} differ after resuming");
            }
            // The synchronous path gives the same batch too.
            using var direct = Loader().LoadBatch(full[6].Position)!;
            Assert.True(direct.Pixels.allclose(full[6].Pixels, 0, 0));
            // Another epoch augments the same image differently.
            Assert.NotEqual(full[0].Flipped.Concat(full[1].Flipped), full[5].Flipped.Concat(full[6].Flipped));
        }
        finally
        {
            full.ForEach(b => b.Dispose());
            resumed.ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void StoppingEarlyDisposesWhatWasPrefetched()
    {
        var loader = Loader(new DataLoaderOptions { BatchSize = 4, Seed = 1, Prefetch = 3 });
        using (var e = loader.Read().GetEnumerator())
        {
            Assert.True(e.MoveNext());
            e.Current.Dispose();
        } // the producer is cancelled and joined here
        var batch = loader.LoadBatch(new LoaderPosition(0, 0))!;
        var pixels = batch.DetachPixels();
        batch.Dispose(); // leaves the detached tensor alone
        Assert.Equal(4, pixels.shape[0]);
        pixels.Dispose();
        Assert.Throws<ObjectDisposedException>(() => batch.Pixels);
    }

    [Fact]
    public void UnreadableImagesAreSkippedAndLogged()
    {
        File.Delete(Path.Combine(_dir, SyntheticWorld.ImagePath(SyntheticSplit.Pretrain, 3)));
        File.WriteAllBytes(Path.Combine(_dir, SyntheticWorld.ImagePath(SyntheticSplit.Pretrain, 5)), [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        var loader = Loader(new DataLoaderOptions { BatchSize = 8, Shuffle = false });
        var first = loader.ReadEpoch(0).First();
        Assert.Equal([0, 1, 2, 4, 6, 7], first.Indices);
        Assert.Equal(2, first.Skipped);
        Assert.Equal(6, first.Pixels.shape[0]);
        first.Dispose();
        Assert.Equal(2, loader.Issues.Count);
        var issues = loader.Issues.Issues.OrderBy(i => i.Location, StringComparer.Ordinal).ToList();
        Assert.Equal(["record 3", "record 5"], issues.Select(i => i.Location));
        Assert.Contains("000003.png", issues[0].Reason);
        Assert.Contains("does not exist", issues[0].Reason);

        var strict = Loader(new DataLoaderOptions { BatchSize = 8, Shuffle = false, Strict = true });
        var e = Assert.Throws<DataFormatException>(() => strict.ReadEpoch(0).ToList().ForEach(b => b.Dispose()));
        Assert.Contains(SyntheticWorld.PretrainFile, e.Message);
        Assert.Matches("record [35]: ", e.Message); // whichever worker fails first
    }

    [Fact]
    public void FlippedCaptionsSwapLeftAndRightWhenAsked()
    {
        var options = new DataLoaderOptions { BatchSize = 42, Shuffle = false, DropLast = false, SwapLeftRightOnFlip = true, Prompt = "a picture of " };
        using var batch = Loader(options, Transform(flip: 1)).LoadBatch(new LoaderPosition(0, 0))!;
        Assert.All(batch.Flipped, Assert.True);
        int swapped = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            string raw = TextCleaning.PreCaption(_dataset[batch.Indices[i]].Captions[0], 30);
            Assert.Equal("a picture of " + TextCleaning.SwapLeftRight(raw), batch.Captions[i]);
            if (raw.Contains("left") || raw.Contains("right")) swapped++;
        }
        Assert.True(swapped > 0);
    }

    [Fact]
    public void MultiCaptionEntriesPickOneDeterministically()
    {
        var world = Path.Combine(_dir, "eval");
        SyntheticWorld.Generate(world, new SyntheticWorldOptions { Seed = 2, ImageSize = 32, PretrainImages = 0, HumanImages = 0, ValImages = 0, TestImages = 16, VqaImages = 0 });
        var eval = CocoKarpathy.LoadEval(Path.Combine(world, SyntheticWorld.TestFile));
        var options = new DataLoaderOptions { BatchSize = 16, Seed = 9 };
        var transform = new BlipEvalTransform(16);
        using var a = new ImageTextLoader(eval, transform, options).LoadBatch(new LoaderPosition(0, 0))!;
        using var b = new ImageTextLoader(eval, transform, options).LoadBatch(new LoaderPosition(0, 0))!;
        using var c = new ImageTextLoader(eval, transform, options).LoadBatch(new LoaderPosition(1, 0))!;
        Assert.Equal(a.Captions, b.Captions);
        for (int i = 0; i < a.Count; i++)
            Assert.Contains(a.Captions[i], eval[a.Indices[i]].Captions.Select(x => TextCleaning.PreCaption(x, 30)));
        var epoch0 = a.Indices.Zip(a.Captions).ToDictionary(p => p.First, p => p.Second);
        var epoch1 = c.Indices.Zip(c.Captions).ToDictionary(p => p.First, p => p.Second);
        Assert.Contains(epoch0.Keys, k => epoch0[k] != epoch1[k]); // a new draw each epoch
    }
}
