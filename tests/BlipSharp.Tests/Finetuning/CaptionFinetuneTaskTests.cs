using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Captioning;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// The caption fine-tuning task's plumbing: the recipe's <c>model</c> and <c>evaluation</c> sections (every bad key
/// named), the evaluation images of Karpathy, NoCaps and synthetic files (ids as BLIP writes them; malformed records
/// named), and the registration under its name.
/// </summary>
public sealed class CaptionFinetuneTaskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-caption-task-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static TrainingConfig Recipe(params string[] overrides) =>
        TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "caption-tiny.json"), overrides);

    [Fact]
    public void TheTaskIsRegisteredUnderItsName() => Assert.IsType<CaptionFinetuneTask>(FinetuneTasks.Get("caption"));

    [Fact]
    public void ThePaperRecipeHasBlipsCocoSettings()
    {
        var config = TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "caption-coco.json"));
        var recipe = CaptionRecipe.Read(config);
        Assert.Equal("a picture of ", recipe.Options.Prompt);
        Assert.Equal(0.1, recipe.Options.LabelSmoothing);
        Assert.Equal(40, recipe.Options.MaxTextLength);
        Assert.Equal(384, recipe.Model.VisionConfig.ImageSize);
        Assert.Equal(768, recipe.Model.VisionConfig.HiddenSize);
        Assert.Equal(768, recipe.Model.TextConfig.EncoderHiddenSize);
        Assert.Equal(30522, recipe.Model.TextConfig.BosTokenId);                       // [DEC]
        Assert.Equal(1e-5, config.Train.Lr);
        Assert.Equal(5, config.Train.Epochs);
        Assert.Equal("", config.Data.Prompt);
        var settings = CaptionFinetuneTask.ReadEvaluation(config, "test");
        Assert.Equal(3, settings.Generation.NumBeams);
        Assert.Equal(20, settings.Generation.MaxLength);
        Assert.Equal(5, settings.Generation.MinLength);
        Assert.Equal(1.0, settings.Generation.RepetitionPenalty);
        Assert.NotNull(settings.GroundTruth);
        Assert.Equal(1, CaptionFinetuneTask.ReadEvaluation(TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "caption-coco.json"),
            ["evaluation.num_beams=1"]), "val").Generation.NumBeams);
    }

    [Theory]
    [InlineData("model.queue_size=256", "model.queue_size")]
    [InlineData("model.tokenizer=null", "model.tokenizer")]
    [InlineData("model.init=null", "model.init")]
    [InlineData("model.max_text_length=2", "model.max_text_length")]
    [InlineData("model.max_text_length=100", "model.max_text_length")]
    [InlineData("model.label_smoothing=2", "model.label_smoothing")]
    [InlineData("model.prompt=3", "model.prompt")]
    public void ABadModelKeyIsNamed(string assignment, string key)
    {
        var e = Assert.Throws<TrainingConfigException>(() => CaptionRecipe.Read(Recipe(assignment)));
        Assert.Contains(key, e.Message);
    }

    [Theory]
    [InlineData("evaluation.num_beams=0", "evaluation.num_beams")]
    [InlineData("evaluation.min_length=30", "evaluation.min_length")]
    [InlineData("evaluation.batch_size=0", "evaluation.batch_size")]
    [InlineData("evaluation.splits.test.annotation=null", "evaluation.splits.test.annotation")]
    [InlineData("evaluation.splits.test.gt=5", "evaluation.splits.test.gt")]
    public void ABadEvaluationKeyIsNamed(string assignment, string key)
    {
        var e = Assert.Throws<TrainingConfigException>(() => CaptionFinetuneTask.ReadEvaluation(Recipe(assignment), "test"));
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void AMissingGroundTruthFileIsNamedBeforeAnyImageIsCaptioned()
    {
        string gt = Path.Combine(_dir, "missing_gt.json");
        var e = Assert.Throws<TrainingConfigException>(() => new CaptionFinetuneTask().Evaluate(Recipe($"evaluation.splits.test.gt={gt}"),
            new EvaluationRequest { OutputDirectory = Path.Combine(_dir, "eval") }));
        Assert.Contains("evaluation.splits.test.gt", e.Message);
        Assert.Contains(gt, e.Message);
    }

    [Fact]
    public void TrainingRefusesADataPromptBecauseTheTaskAddsTheModelPrompt()
    {
        var e = Assert.Throws<TrainingConfigException>(() => new CaptionFinetuneTask().Train(Recipe("data.prompt=\"a picture of \""),
            new FinetuneContext { RunDirectory = Path.Combine(_dir, "run") }));
        Assert.Contains("data.prompt", e.Message);
        Assert.Contains("model.prompt", e.Message);
    }

    [Fact]
    public void KarpathyImagesGetTheIdBlipReadsFromTheFileNameAsANumber()
    {
        string file = Write("coco_karpathy_test.json", """
            [{"image": "val2014/COCO_val2014_000000391895.jpg", "caption": ["a man", "a person"]},
             {"image": "val2014/COCO_val2014_000000060623.jpg", "caption": ["a dog"]},
             {"image": "val2014/COCO_val2014_000000391895.jpg", "caption": ["again"]}]
            """);
        var images = CaptionEvalImages.Load(file, "/data/coco", out int duplicates);
        Assert.Equal(["391895", "60623"], images.Select(i => i.ImageId));
        Assert.Equal(1, duplicates);
        Assert.Equal("391895", images[0].JsonId.ToJsonString());                          // a JSON number, as BLIP's int(img_id)
        Assert.Equal(Path.Combine("/data/coco", "val2014/COCO_val2014_000000391895.jpg"), images[0].Image.Name);
    }

    [Fact]
    public void NoCapsImagesNeedNoCaptionsAndUseImgId()
    {
        string file = Write("nocaps_val.json", """
            [{"image": "val/0013ea2087020901.jpg", "img_id": 0},
             {"image": "val/0024bfe1e4d3e74c.jpg", "img_id": 1}]
            """);
        var images = CaptionEvalImages.Load(file, null, out _);
        Assert.Equal(["0", "1"], images.Select(i => i.ImageId));
        Assert.Equal("[0,1]", new JsonArray(images.Select(i => (JsonNode?)i.JsonId).ToArray()).ToJsonString());
    }

    [Fact]
    public void SyntheticImagesKeepTheirStringIds()
    {
        string file = Write("test.json", """[{"image": "images/test/000000.png", "caption": ["a red circle"], "image_id": "test_000000"}]""");
        var image = Assert.Single(CaptionEvalImages.Load(file, null, out _));
        Assert.Equal("\"test_000000\"", image.JsonId.ToJsonString());
    }

    [Theory]
    [InlineData("""[{"image": "a.jpg", "img_id": 3}, {"caption": ["no image"]}]""", "record 1", "image")]
    [InlineData("""[{"image": "a.jpg", "img_id": 3}, {"image": "b.jpg", "img_id": [1]}]""", "record 1", "img_id")]
    [InlineData("""[{"image": "photos/beach.jpg"}]""", "record 0", "no 'image_id'")]
    [InlineData("""{"image": "a.jpg"}""", "line 1", "no 'image_id'")]
    [InlineData("""[]""", "file", "lists no image")]
    public void AMalformedEvaluationFileIsNamedWithItsRecord(string json, string location, string problem)
    {
        string file = Write("bad.json", json);
        var e = Assert.Throws<DataFormatException>(() => CaptionEvalImages.Load(file, null, out _));
        Assert.Contains(file, e.Message);
        Assert.Contains(problem, e.Message);
        Assert.Contains(location, e.Message);
    }

    private string Write(string name, string json)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, json);
        return path;
    }
}
