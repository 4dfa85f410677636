using System.Security.Cryptography;
using System.Text.Json;
using BlipSharp.Cli;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>
/// <c>blip capfilt</c> (the fixture models as captioner and filter) over the same synthetic web pairs given as an
/// annotation file and as a WebDataset shard, then its <c>train_files</c> through <see cref="TrainingData.LoadDataset"/>:
/// the JSON output (one record per kept text) and the shard output (one sample per image, its kept texts as a list)
/// must be the same training pairs.
/// </summary>
public sealed class CapFiltTrainFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-capfilt-train-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static List<string> CapFilt(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = BlipCli.RunAsync(["capfilt", .. args, "--json"], output, error).GetAwaiter().GetResult();
        Assert.True(code == BlipCli.Success, error.ToString());
        using var json = JsonDocument.Parse(output.ToString().Trim().Split('\n')[^1]);
        return json.RootElement.GetProperty("train_files").EnumerateArray().Select(f => f.GetString()!).ToList();
    }

    /// <summary>(image bytes' hash, caption) of every training pair, sorted.</summary>
    private static List<(string, string)> Pairs(ImageTextDataset dataset) => dataset
        .Select(e => (Convert.ToHexString(SHA256.HashData(e.Image.ReadAllBytes())), Assert.Single(e.Captions)))
        .Order().ToList();

    [Fact]
    public void TheShardOutputTrainsOnTheSamePairsAsTheJsonOutput()
    {
        string world = Path.Combine(_dir, "world");
        SyntheticWorld.Generate(world, new SyntheticWorldOptions
        {
            Seed = 3, PretrainImages = 40, HumanImages = 4, ValImages = 0, TestImages = 0, VqaImages = 0, ClassifyImages = 0,
            NlvrPairs = 0, VideoClips = 0, WriteShards = true,
        });
        string shard = Assert.Single(Directory.GetFiles(Path.Combine(world, "shards"), "*.tar"));
        string[] common =
        [
            "--captioner", Fixtures.HfModelDir("BlipForConditionalGeneration"), "--filter", Fixtures.HfModelDir("BlipForImageTextRetrieval"),
            "--human", Path.Combine(world, "human_train.json"), "--chunk-size", "8", "--batch-size", "4",
        ];

        var jsonFiles = CapFilt([.. common, "--input", Path.Combine(world, "pretrain.json"), "--out", Path.Combine(_dir, "json")]);
        var shardFiles = CapFilt([.. common, "--input", shard, "--out", Path.Combine(_dir, "shards")]);

        Assert.Single(jsonFiles);
        Assert.Equal(6, shardFiles.Count); // the human pairs' bootstrapped.jsonl and the 5 chunks' shards
        var issues = new List<DataIssue>();
        var fromJson = TrainingData.LoadDataset(new DataConfig { TrainFiles = jsonFiles }, issues.Add);
        var fromShards = TrainingData.LoadDataset(new DataConfig { TrainFiles = shardFiles }, issues.Add);

        Assert.Empty(issues);
        Assert.Equal(Pairs(fromJson), Pairs(fromShards));
        Assert.Equal(fromJson.ImageCount, fromShards.ImageCount);
        var shardPairs = fromShards.Where(e => e.Source.EndsWith(".tar", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(shardPairs);
        Assert.Contains(shardPairs, e => e.Location.EndsWith(", caption 2 of 2", StringComparison.Ordinal)); // an image that kept two texts
        Assert.Equal(8, fromShards.Count(e => e.Source.EndsWith("bootstrapped.jsonl", StringComparison.Ordinal))); // 4 human images x 2 captions
    }
}
