using System.Formats.Tar;
using System.Text;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Training;
using TorchSharp;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>
/// <c>data.train_files</c> through <see cref="TrainingData.LoadDataset"/>: annotation files and WebDataset shards in one
/// list (a CapFilt merge's <c>bootstrapped.jsonl</c> and <c>shards/chunk-*.tar</c>), caption lists expanded into one pair
/// per caption, image indices dense over every file, and errors that name the shard.
/// </summary>
public sealed class TrainingDataShardTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-train-shards-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A 4x4 RGB PNG of one colour.</summary>
    private static byte[] Png(byte r, byte g, byte b) =>
        PngBuilder.Build(4, 4, 8, PngBuilder.Rgb, Enumerable.Range(0, 16).SelectMany(_ => new[] { r, g, b }).ToArray());

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    private string WriteBytes(string name, byte[] data)
    {
        string path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, data);
        return path;
    }

    private string Shard(string name, params (string Member, byte[] Data)[] members) =>
        WriteBytes(name, TarReaderTests.BuildTar(TarEntryFormat.Ustar, members));

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static DataConfig Data(params string[] files) => new() { TrainFiles = files, ImageSize = 32, BatchSize = 2 };

    [Fact]
    public void AnnotationFilesAndShardsMixInOrderWithDenseIndicesThatNeverCrossKinds()
    {
        WriteBytes("img/a.png", Png(255, 0, 0));
        WriteBytes("img/b.png", Png(0, 255, 0));
        string first = Write("a.json", """
            [{"image": "img/a.png", "caption": "one", "image_id": "7"},
             {"image": "img/b.png", "caption": ["two", "three"]}]
            """);
        // Sample 000001 has image_id 7 like a.json's first record: a shard image is never an annotation image.
        string s1 = Shard("s1.tar",
            ("000001.png", Png(0, 0, 255)), ("000001.json", Utf8("""{"caption": ["x", "y"], "image_id": "7"}""")),
            ("000002.png", Png(9, 9, 9)), ("000002.txt", Utf8("z")));
        string second = Write("b.jsonl", """{"image": "img/a.png", "caption": "again", "image_id": "7"}""" + "\n");
        // Shards share one id space, as WebDataset.Load reads several: image_id 7 again is s1's sample 000001.
        string s2 = Shard("s2.tar", ("k.png", Png(0, 0, 255)), ("k.json", Utf8("""{"caption": "w", "image_id": "7"}""")));

        var issues = new List<DataIssue>();
        var dataset = TrainingData.LoadDataset(Data(first, s1, second, s2), issues.Add);

        Assert.Empty(issues);
        Assert.Equal(["one", "two", "three", "x", "y", "z", "again", "w"], dataset.Select(e => Assert.Single(e.Captions)));
        Assert.Equal([0, 1, 1, 2, 2, 3, 0, 2], dataset.Select(e => e.ImageIndex));
        Assert.Equal(4, dataset.ImageCount);
        Assert.Equal([first, first, first, s1, s1, s1, second, s2], dataset.Select(e => e.Source));
        Assert.Equal("record 1, caption 2 of 2", dataset[2].Location);
        Assert.Equal("sample '000001' (#0), caption 1 of 2", dataset[3].Location);
        Assert.Equal("sample '000002' (#1)", dataset[5].Location);
        Assert.Equal($"{s1}:000001.png", dataset[3].Image.Name);

        // Through the loader: the shard images are read in place and every pair is one sample.
        var loader = new ImageTextLoader(dataset, new BlipTrainTransform(new BlipTrainTransformOptions { ImageSize = 8, FlipProbability = 0 }),
            new DataLoaderOptions { BatchSize = 8, Shuffle = false, DropLast = false, Workers = 1 });
        using var batch = Assert.Single(loader.ReadEpoch(0));
        Assert.Equal(["one", "two", "three", "x", "y", "z", "again", "w"], batch.Captions);
        Assert.Equal(0, batch.Skipped);
        Assert.Equal(new long[] { 8, 3, 8, 8 }, batch.Pixels.shape);
    }

    /// <summary>
    /// What a CapFilt run over shards writes (one sample per image, its kept texts as a caption list, the scores as lists)
    /// and what it writes over annotation files (one record per kept text) are the same training pairs: same order, same
    /// images, same image grouping, the same pixels and captions batch after batch.
    /// </summary>
    [Fact]
    public void ACapFiltShardSampleTrainsExactlyAsTheJsonFormatsOneRecordPerText()
    {
        var images = new[] { Png(200, 10, 10), Png(10, 200, 10), Png(10, 10, 200) };
        var texts = new[] { new[] { "a red square", "a picture of red" }, new[] { "green" }, new[] { "blue thing", "a blue tile", "blue" } };
        var members = new List<(string, byte[])>();
        var lines = new StringBuilder();
        for (int i = 0; i < images.Length; i++)
        {
            string key = i.ToString("D12");
            WriteBytes($"images/{key}.png", images[i]);
            members.Add(($"{key}.png", images[i]));
            string captions = string.Join(", ", texts[i].Select(t => $"\"{t}\""));
            string sources = string.Join(", ", texts[i].Select(_ => "\"web\""));
            members.Add(($"{key}.json", Utf8($$"""{"caption": [{{captions}}], "capfilt_source": [{{sources}}], "image_id": "img{{i}}"}""")));
            foreach (string t in texts[i])
                lines.Append($$"""{"image": "images/{{key}}.png", "caption": "{{t}}", "image_id": "img{{i}}", "capfilt_source": "web"}""").Append('\n');
        }
        string shard = Shard("chunk-000000.tar", [.. members]);
        string json = Write("bootstrapped.jsonl", lines.ToString());

        var fromShard = TrainingData.LoadDataset(Data(shard));
        var fromJson = TrainingData.LoadDataset(Data(json));

        Assert.Equal(6, fromShard.Count);
        Assert.Equal(fromJson.Select(e => e.Captions[0]), fromShard.Select(e => Assert.Single(e.Captions)));
        Assert.Equal([0, 0, 1, 2, 2, 2], fromShard.Select(e => e.ImageIndex));
        Assert.Equal(fromJson.Select(e => e.ImageIndex), fromShard.Select(e => e.ImageIndex));
        Assert.Equal(fromJson.Select(e => e.ImageId), fromShard.Select(e => e.ImageId));
        Assert.Equal(fromJson.Select(e => e.Image.ReadAllBytes()), fromShard.Select(e => e.Image.ReadAllBytes()));

        var transform = new BlipTrainTransform(new BlipTrainTransformOptions { ImageSize = 8 });
        var options = new DataLoaderOptions { BatchSize = 4, Seed = 5, Workers = 1 };
        var a = new ImageTextLoader(fromShard, transform, options).ReadEpoch(1).ToList();
        var b = new ImageTextLoader(fromJson, transform, options).ReadEpoch(1).ToList();
        try
        {
            Assert.Single(a);
            Assert.Equal(b.Count, a.Count);
            Assert.Equal(b[0].Captions, a[0].Captions);
            Assert.Equal(b[0].ImageIndices, a[0].ImageIndices);
            Assert.True(torch.equal(a[0].Pixels, b[0].Pixels).all().item<bool>());
        }
        finally
        {
            foreach (var batch in a.Concat(b)) batch.Dispose();
        }
    }

    [Fact]
    public void AnAnnotationRecordWithACaptionListIsExpandedToo()
    {
        WriteBytes("img/a.png", Png(1, 2, 3));
        string file = Write("list.json", """[{"image": "img/a.png", "caption": ["first", "second", "third"], "noisy": false}]""");

        var dataset = TrainingData.LoadDataset(Data(file));

        Assert.Equal(["first", "second", "third"], dataset.Select(e => Assert.Single(e.Captions)));
        Assert.All(dataset, e => Assert.Equal(0, e.ImageIndex));
        Assert.All(dataset, e => Assert.False(e.Extra["noisy"].GetBoolean()));
        Assert.Equal(["record 0, caption 1 of 3", "record 0, caption 2 of 3", "record 0, caption 3 of 3"], dataset.Select(e => e.Location));
    }

    [Fact]
    public void AMissingShardOrAFolderIsAnErrorNamingIt()
    {
        string annotation = Write("a.json", """[{"image": "a.png", "caption": "x"}]""");
        string missing = Path.Combine(_dir, "shards", "chunk-000003.tar");
        var e = Assert.Throws<FileNotFoundException>(() => TrainingData.LoadDataset(Data(annotation, missing)));
        Assert.Equal($"data.train_files: shard not found: {missing}", e.Message);

        string folder = Directory.CreateDirectory(Path.Combine(_dir, "folder.tar")).FullName;
        e = Assert.Throws<FileNotFoundException>(() => TrainingData.LoadDataset(Data(folder)));
        Assert.Equal($"data.train_files: {folder} is a folder, not an annotation file or a .tar shard", e.Message);

        string missingJson = Path.Combine(_dir, "none.json");
        e = Assert.Throws<FileNotFoundException>(() => TrainingData.LoadDataset(Data(missingJson)));
        Assert.Equal($"data.train_files: annotation file not found: {missingJson}", e.Message);
    }

    [Fact]
    public void BadSamplesAndATruncatedShardAreSkippedWithIssuesNamingTheShardAndSample()
    {
        string bad = Shard("bad.tar",
            ("000001.png", Png(1, 1, 1)), ("000001.txt", Utf8("kept")),
            ("000002.png", Png(2, 2, 2)),                                              // no caption
            ("000003.png", Png(3, 3, 3)), ("000003.json", Utf8("""{"caption": []}""")));  // empty caption list
        var whole = TarReaderTests.BuildTar(TarEntryFormat.Ustar,
            ("000004.png", Png(4, 4, 4)), ("000004.txt", Utf8("before the damage")),
            ("000005.png", Png(5, 5, 5)), ("000005.txt", Utf8("lost")));
        string truncated = WriteBytes("truncated.tar", whole[..(whole.Length - 1024 - 600)]); // cut inside the last sample

        var issues = new List<DataIssue>();
        var dataset = TrainingData.LoadDataset(Data(bad, truncated), issues.Add);

        Assert.Equal(["kept", "before the damage"], dataset.Select(e => Assert.Single(e.Captions)));
        Assert.Equal([0, 1], dataset.Select(e => e.ImageIndex));
        Assert.Equal(3, issues.Count);
        Assert.Equal(issues.Count, dataset.SkippedCount);
        Assert.Equal((bad, "sample '000002' (#1)"), (issues[0].Source, issues[0].Location));
        Assert.StartsWith("no caption", issues[0].Reason);
        Assert.Equal((bad, "sample '000003' (#2)"), (issues[1].Source, issues[1].Location));
        Assert.Contains("empty list", issues[1].Reason);
        Assert.Equal(truncated, issues[2].Source);
        Assert.Contains("sample '000005' and the rest of the shard are skipped", issues[2].Reason);
        Assert.StartsWith($"{bad}: sample '000002' (#1): no caption", issues[0].ToString());
    }

    [Fact]
    public void AnEmptyShardIsNoError()
    {
        // A CapFilt chunk in which no text was kept is a tar with no members.
        string empty = Shard("chunk-000007.tar");
        string next = Shard("chunk-000008.tar", ("000000000070.png", Png(7, 7, 7)), ("000000000070.json", Utf8("""{"caption": ["kept"]}""")));
        var issues = new List<DataIssue>();

        var dataset = TrainingData.LoadDataset(Data(empty, next), issues.Add);

        Assert.Empty(issues);
        var entry = Assert.Single(dataset);
        Assert.Equal(("000000000070", 0, next), (entry.ImageId, entry.ImageIndex, entry.Source));
    }
}
