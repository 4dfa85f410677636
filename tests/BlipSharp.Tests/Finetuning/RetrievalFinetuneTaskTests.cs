using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Retrieval;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// The retrieval fine-tuning task's plumbing: the recipe's <c>model</c> and <c>evaluation</c> sections (every bad key
/// named), the training files (image ids numbered as BLIP's <c>img_ids</c>, across files; malformed records named),
/// and the registration under its name.
/// </summary>
public sealed class RetrievalFinetuneTaskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-retrieval-task-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TrainingConfig Recipe(params string[] overrides) =>
        TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "retrieval-tiny.json"), overrides);

    [Fact]
    public void TheTaskIsRegisteredUnderItsName()
    {
        var task = FinetuneTasks.Get("retrieval");
        Assert.IsType<RetrievalFinetuneTask>(task);
        Assert.True(task.Trainable);
    }

    [Fact]
    public void TheTinyAndPaperRecipesDescribeBlipRetrieval()
    {
        var tiny = RetrievalRecipe.Read(Recipe());
        Assert.False(tiny.Model.TextDecoder);
        Assert.True(tiny.Model.IdQueue);
        Assert.Equal(35, tiny.MaxTextLength);
        Assert.Equal(0.4, tiny.Alpha);
        Assert.Equal(256, tiny.Model.QueueSize); // the tiny pretraining's queue: its queues are loaded
        Assert.Equal(16, RetrievalFinetuneTask.ReadEvaluation(Recipe(), "test", 35).Options.KTest);

        foreach (var (file, k) in new[] { ("retrieval-coco.json", 256), ("retrieval-flickr.json", 128) })
        {
            var config = TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", file));
            var recipe = RetrievalRecipe.Read(config);
            Assert.Equal(384, recipe.Model.VisionConfig.ImageSize);
            Assert.Equal(768, recipe.Model.VisionConfig.HiddenSize);
            Assert.Equal(57600, recipe.Model.QueueSize);
            Assert.Equal(1e-5, config.Train.Lr);
            Assert.Equal(6, config.Train.Epochs);
            Assert.Equal(32, config.Data.BatchSize);
            Assert.Equal(0.5, config.Data.MinScale);
            Assert.Equal(k, RetrievalFinetuneTask.ReadEvaluation(config, "test", recipe.MaxTextLength).Options.KTest);
            Assert.Equal(k, RetrievalFinetuneTask.ReadEvaluation(config, "val", recipe.MaxTextLength).Options.KTest);
        }
    }

    [Theory]
    [InlineData("model.colour=1", "model.colour")]
    [InlineData("model.tokenizer=null", "model.tokenizer")]
    [InlineData("model.init=null", "model.init")]
    [InlineData("model.text_decoder=true", "model.text_decoder")]
    [InlineData("model.id_queue=false", "model.id_queue")]
    [InlineData("model.alpha=1.5", "model.alpha")]
    [InlineData("model.max_text_length=100", "model.max_text_length")]
    [InlineData("model.alpha=\"high\"", "model.alpha")]
    public void ABadModelKeyIsNamed(string assignment, string key)
    {
        var e = Assert.Throws<TrainingConfigException>(() => RetrievalRecipe.Read(Recipe(assignment)));
        Assert.Contains(key, e.Message);
    }

    [Theory]
    [InlineData("evaluation.k_test=0", "test", "evaluation.k_test")]
    [InlineData("evaluation.batch_size=0", "test", "evaluation.batch_size")]
    [InlineData("evaluation.results_top_k=0", "test", "evaluation.results_top_k")]
    [InlineData("evaluation.splits.test.annotation=null", "test", "evaluation.splits.test.annotation")]
    [InlineData("evaluation.k_test=16", "train", "has no split 'train'")]
    public void ABadEvaluationKeyIsNamed(string assignment, string split, string expected)
    {
        var e = Assert.Throws<TrainingConfigException>(() => RetrievalFinetuneTask.ReadEvaluation(Recipe(assignment), split, 35));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TrainingChecksTheQueueAndThePromptBeforeLoadingAnything()
    {
        var task = new RetrievalFinetuneTask();
        var context = new FinetuneContext { RunDirectory = Path.Combine(_dir, "run") };
        var e = Assert.Throws<TrainingConfigException>(() => task.Train(Recipe("data.batch_size=24"), context));
        Assert.Contains("model.queue_size", e.Message);
        e = Assert.Throws<TrainingConfigException>(() => task.Train(Recipe("data.prompt=\"a picture of \""), context));
        Assert.Contains("data.prompt", e.Message);
        e = Assert.Throws<TrainingConfigException>(() => task.Train(Recipe("data.image_size=64"), context));
        Assert.Contains("model.vision_config.image_size", e.Message);
        Assert.False(Directory.Exists(context.RunDirectory));
    }

    [Fact]
    public void TrainingPairsAreNumberedByImageIdAcrossFiles()
    {
        string a = Write("a.json", """
            [{"image": "x.png", "caption": "a red circle", "image_id": "img1"},
             {"image": "y.png", "caption": "a blue square", "image_id": "img2"},
             {"image": "x.png", "caption": "a big red circle", "image_id": "img1"}]
            """);
        string b = Write("b.json", """
            [{"image": "z.png", "caption": "a green star", "image_id": "img1"},
             {"image": "w.png", "caption": "two shapes"},
             {"image": "z.png", "caption": "a small green star", "image_id": "img1"}]
            """);
        var log = new List<string>();
        var dataset = RetrievalFinetuneTask.LoadTrainingSet(new DataConfig { TrainFiles = [a, b] }, log.Add);

        Assert.Equal([0, 1, 0, 2, 2], dataset.Select(e => e.ImageIndex));        // b's "img1" is not a's
        Assert.Equal(["img1", "img2", "img1", "img1", "img1"], dataset.Select(e => e.ImageId));
        var skipped = Assert.Single(log);
        Assert.Contains(b, skipped);
        Assert.Contains("record 1", skipped);
        Assert.Contains("image_id", skipped);
    }

    [Fact]
    public void AMissingTrainingFileIsNamed()
    {
        string missing = Path.Combine(_dir, "nope.json");
        var e = Assert.Throws<FileNotFoundException>(() => RetrievalFinetuneTask.LoadTrainingSet(new DataConfig { TrainFiles = [missing] }, _ => { }));
        Assert.Contains("data.train_files", e.Message);
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void AMalformedEvaluationFileIsNamedWithItsRecord()
    {
        string eval = Write("test.json", """
            [{"image": "x.png", "caption": ["a red circle", "a circle"]},
             {"image": 7, "caption": ["a blue square"]}]
            """);
        var config = Recipe($"evaluation.splits.test.annotation={eval}");
        var e = Assert.Throws<DataFormatException>(() => new RetrievalFinetuneTask().Evaluate(config, new EvaluationRequest { OutputDirectory = Path.Combine(_dir, "eval") }));
        Assert.Contains(eval, e.Message);
        Assert.Contains("record 1", e.Message);
        Assert.Contains("image", e.Message);
    }

    private string Write(string name, string json)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, json);
        return path;
    }
}
