using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Cli;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Finetuning;

/// <summary>The parts every fine-tuning task shares: resumable sample batches, weights resolution, evaluation output and the verbs' checks.</summary>
public sealed class FinetuneInfrastructureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-finetune-infra-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class IndexBatch(SampleBatchRequest request) : IDisposable
    {
        public SampleBatchRequest Request { get; } = request;

        public bool Disposed { get; private set; }

        public void Dispose() => Disposed = true;
    }

    private static SampleBatchSource<IndexBatch> Source(int count, int batchSize, long seed, Func<SampleBatchRequest, IndexBatch?>? build = null) =>
        new(count, batchSize, seed, (r, _) => build is null ? new IndexBatch(r) : build(r), b => b.Request.Indices.Count, b => b.Request.Position);

    [Fact]
    public void EveryEpochVisitsEachSampleOnceInASeededOrderAndDropsTheIncompleteBatch()
    {
        var source = Source(count: 23, batchSize: 5, seed: 7);
        Assert.Equal(4, source.BatchesPerEpoch); // 23 / 5, the last 3 dropped as drop_last=True
        var batches = source.Read(default, CancellationToken.None).Take(8).ToList();
        var epoch0 = batches.Take(4).SelectMany(b => b.Request.Indices).ToList();
        var epoch1 = batches.Skip(4).SelectMany(b => b.Request.Indices).ToList();
        Assert.Equal(20, epoch0.Distinct().Count());
        Assert.Equal(source.EpochOrder(0).Take(20), epoch0);
        Assert.Equal(source.EpochOrder(1).Take(20), epoch1);
        Assert.NotEqual(epoch0, epoch1);                                     // reshuffled every epoch
        Assert.Equal(Enumerable.Range(0, 23), source.EpochOrder(0).Order()); // a permutation
        Assert.Equal(new LoaderPosition(1, 2), batches[6].Request.Position);
        Assert.Equal(source.EpochOrder(0), Source(23, 5, 7).EpochOrder(0));  // a function of the seed
        Assert.NotEqual(source.EpochOrder(0), Source(23, 5, 8).EpochOrder(0));
    }

    [Fact]
    public void ReadingFromAPositionGivesTheSameBatchesAndSeedsAsAnUninterruptedRead()
    {
        var source = Source(count: 30, batchSize: 4, seed: 3);
        var whole = source.Read(default, CancellationToken.None).Take(20).ToList();
        var resumed = source.Read(new LoaderPosition(1, 3), CancellationToken.None).Take(10).ToList();
        var expected = whole.Skip(source.BatchesPerEpoch + 3).Take(10).ToList();
        Assert.Equal(expected.Select(b => b.Request.Position), resumed.Select(b => b.Request.Position));
        for (int i = 0; i < resumed.Count; i++)
        {
            Assert.Equal(expected[i].Request.Indices, resumed[i].Request.Indices);
            Assert.Equal(expected[i].Request.Seed, resumed[i].Request.Seed);
        }
        Assert.Equal(whole.Count, whole.Select(b => b.Request.Seed).Distinct().Count()); // each batch its own seed
    }

    [Fact]
    public void ASkippedBatchIsLeftOutAndABuildErrorReachesTheReader()
    {
        var skipping = Source(12, 3, 1, r => r.Position.Batch == 1 ? null : new IndexBatch(r));
        var positions = skipping.Read(default, CancellationToken.None).Take(3).Select(b => b.Request.Position).ToList();
        Assert.Equal([new LoaderPosition(0, 0), new LoaderPosition(0, 2), new LoaderPosition(0, 3)], positions);

        var failing = Source(12, 3, 1, r => r.Position.Batch == 2 ? throw new InvalidDataException("image 7 is corrupt") : new IndexBatch(r));
        var e = Assert.Throws<InvalidDataException>(() => failing.Read(default, CancellationToken.None).Take(5).ToList());
        Assert.Equal("image 7 is corrupt", e.Message);
    }

    [Fact]
    public void BatchesBuiltAheadAreDisposedWhenTheReaderStops()
    {
        var built = new List<IndexBatch>();
        var source = Source(40, 2, 1, r =>
        {
            var b = new IndexBatch(r);
            lock (built) built.Add(b);
            return b;
        });
        var read = source.Read(default, CancellationToken.None).Take(2).ToList();
        lock (built)
        {
            Assert.True(built.Count > 2, "the source builds ahead");
            Assert.All(built.Except(read), b => Assert.True(b.Disposed, $"batch {b.Request.Position} was built ahead and not disposed"));
        }
    }

    [Fact]
    public void WeightsResolveFromAFileACheckpointFolderOrARunFolder()
    {
        string run = Path.Combine(_dir, "run");
        string old = Path.Combine(run, "checkpoints", CheckpointStore.NameOf(10));
        string newest = Path.Combine(run, "checkpoints", CheckpointStore.NameOf(20));
        foreach (string d in new[] { old, newest })
        {
            Directory.CreateDirectory(d);
            File.WriteAllText(Path.Combine(d, "model.safetensors"), "x");
            File.WriteAllText(Path.Combine(d, CheckpointStore.StateFile), "{}");
        }
        Directory.CreateDirectory(Path.Combine(run, "checkpoints", CheckpointStore.NameOf(30))); // incomplete: no trainer state

        Assert.Equal(Path.Combine(newest, "model.safetensors"), FinetuneWeights.Resolve(run, "model.init"));
        Assert.Equal(Path.Combine(old, "model.safetensors"), FinetuneWeights.Resolve(old, "model.init"));
        string file = Path.Combine(_dir, "model_base.pth");
        File.WriteAllText(file, "x");
        Assert.Equal(file, FinetuneWeights.Resolve(file, "model.init"));

        var missing = Assert.Throws<FileNotFoundException>(() => FinetuneWeights.Resolve(Path.Combine(_dir, "nope"), "model.init"));
        Assert.Contains("model.init", missing.Message);
        Assert.Contains("nope", missing.Message);
        string emptyRun = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(Path.Combine(emptyRun, "checkpoints"));
        Assert.Contains("no complete checkpoint", Assert.Throws<FileNotFoundException>(() => FinetuneWeights.Resolve(emptyRun, "--weights")).Message);
        Assert.Contains("without model.safetensors", Assert.Throws<FileNotFoundException>(() => FinetuneWeights.Resolve(_dir, "--weights")).Message);
    }

    private static TrainingConfig Recipe(string evaluation) => TrainingConfigLoader.FromJson(new JsonObject
    {
        ["task"] = "retrieval",
        ["data"] = new JsonObject { ["train_files"] = new JsonArray("train.json") },
        ["evaluation"] = JsonNode.Parse(evaluation),
    });

    [Fact]
    public void AnEvaluationSplitIsReadFromTheRecipeAndItsErrorsNameTheKey()
    {
        var recipe = Recipe("""{"k_test": 16, "splits": {"test": {"annotation": "test.json"}, "val": 3}}""");
        var test = EvaluationOutput.Split(recipe, "test");
        Assert.Equal("test.json", EvaluationOutput.RequiredString(test, "annotation", "evaluation.splits.test"));
        Assert.Equal(16, EvaluationOutput.Read(recipe.Evaluation, "k_test", 256, "evaluation"));
        Assert.Equal(256, EvaluationOutput.Read(recipe.Evaluation, "missing", 256, "evaluation"));

        Assert.Equal("evaluation.splits has no split 'train' (it has: test, val)", Assert.Throws<TrainingConfigException>(() => EvaluationOutput.Split(recipe, "train")).Message);
        Assert.Equal("evaluation.splits.val must be an object", Assert.Throws<TrainingConfigException>(() => EvaluationOutput.Split(recipe, "val")).Message);
        Assert.Equal("evaluation.splits.test.image_root is required",
            Assert.Throws<TrainingConfigException>(() => EvaluationOutput.RequiredString(test, "image_root", "evaluation.splits.test")).Message);
        Assert.StartsWith("evaluation.k_test has a value of the wrong type",
            Assert.Throws<TrainingConfigException>(() => EvaluationOutput.Read(recipe.Evaluation, "k_test", "x", "evaluation")).Message);
        Assert.StartsWith("evaluation.splits must be an object", Assert.Throws<TrainingConfigException>(() => EvaluationOutput.Split(Recipe("{}"), "test")).Message);
    }

    [Fact]
    public void FinishWritesMetricsJsonWithTheScoresAndTheFiles()
    {
        var request = new EvaluationRequest { Split = "val", OutputDirectory = Path.Combine(_dir, "eval") };
        var metrics = new Dictionary<string, double> { ["txt_r1"] = 50, ["r_mean"] = 62.5 };
        var report = EvaluationOutput.Finish("retrieval", request, metrics, "r_mean", Path.Combine(_dir, "eval", "results.json"), null);
        Assert.Equal(62.5, report.Primary);
        using var json = JsonDocument.Parse(File.ReadAllText(report.MetricsFile));
        var root = json.RootElement;
        Assert.Equal("retrieval", root.GetProperty("task").GetString());
        Assert.Equal("val", root.GetProperty("split").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("weights").ValueKind);
        Assert.Equal(50, root.GetProperty("metrics").GetProperty("txt_r1").GetDouble());
        Assert.Equal("r_mean", root.GetProperty("primary_metric").GetString());
        Assert.EndsWith("results.json", root.GetProperty("results").GetString());
        Assert.Empty(Directory.GetFiles(Path.Combine(_dir, "eval"), "*.tmp-*"));
        Assert.Throws<ArgumentException>(() => EvaluationOutput.Finish("retrieval", request, metrics, "CIDEr", null, null));
    }

    [Fact]
    public void TheVerbsRefuseAnUnknownTaskAndARecipeForAnotherTask()
    {
        string recipe = Path.Combine(_dir, "recipe.json");
        File.WriteAllText(recipe, """{"task": "pretrain", "data": {"train_files": ["train.json"]}}""");
        foreach (string verb in new[] { "finetune", "evaluate" })
        {
            var (code, _, error) = CliRunner.Run(verb, "segmentation", "--config", recipe);
            Assert.Equal(BlipCli.UsageError, code);
            Assert.Contains("'segmentation' is not a known fine-tuning task (available: ", error);
        }
        Assert.Equal(["caption", "nlvr", "retrieval", "video-retrieval", "vqa"], FinetuneTasks.Names);
        foreach (string task in FinetuneTasks.Names)
        {
            var (code, _, error) = CliRunner.Run("evaluate", task, "--config", recipe);
            Assert.Equal(BlipCli.UsageError, code);
            Assert.Contains($"the recipe is for task 'pretrain', not '{task}'", error);
        }
    }
}
