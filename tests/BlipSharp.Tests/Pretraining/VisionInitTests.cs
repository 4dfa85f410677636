using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Configuration;
using BlipSharp.Modeling.Vision;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Classification;
using BlipSharp.Training.Data;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// Starting BLIP's ViT from a pretrained one (<c>model.vision_init</c>): timm/DeiT keys (here the ViT of the original
/// fixture checkpoint with its <c>visual_encoder.</c> prefix removed, which is DeiT's layout), this library's keys, a
/// <c>classify</c> run folder; position embeddings interpolated; errors that name the key. And the classify task itself.
/// </summary>
public sealed class VisionInitTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-vinit-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string PretrainDir => OriginalFixtures.CaseDirs(OriginalFixtures.PretrainModel).First();

    /// <summary>The fixture's ViT in DeiT's layout (no prefix), plus a classifier head as DeiT checkpoints have.</summary>
    private static Dictionary<string, Tensor> DeitLayout()
    {
        var all = TorchCheckpoint.LoadStateDict(Path.Combine(PretrainDir, "model.pth"));
        var deit = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, value) in all)
        {
            if (key.StartsWith("visual_encoder.", StringComparison.Ordinal)) deit[key["visual_encoder.".Length..]] = value;
            else value.Dispose();
        }
        Assert.NotEmpty(deit);
        long width = deit["cls_token"].shape[2];
        deit["head.weight"] = zeros(10, width);
        deit["head.bias"] = zeros(10);
        return deit;
    }

    private static void AssertSameWeights(nn.Module expected, nn.Module actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys.Order(StringComparer.Ordinal), b.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, value) in a) Assert.True(value.eq(b[key]).all().ToBoolean(), $"{key} differs");
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void DeitLayoutLoadsTheSameWeightsAsTheOriginalCheckpoint()
    {
        var config = OriginalFixtures.PretrainingConfig(PretrainDir);
        using var reference = OriginalBlipCheckpoint.LoadPretraining(Path.Combine(PretrainDir, "model.pth"), config);
        var deit = DeitLayout();
        using var vision = new BlipVisionModel(config.VisionConfig);
        var log = new List<string>();
        PretrainedVisionEncoder.LoadInto(vision, deit, "deit.pth", log.Add);
        AssertSameWeights(reference.vision_model, vision);
        Assert.Contains("timm/DeiT layout", log.Single(), StringComparison.Ordinal);
        Assert.Contains("2 entries outside the ViT not loaded: head.weight, head.bias", log.Single(), StringComparison.Ordinal);
        foreach (var t in deit.Values) t.Dispose();
    }

    [Fact]
    public void PositionEmbeddingsAreInterpolatedToTheModelsGrid()
    {
        var config = OriginalFixtures.PretrainingConfig(PretrainDir);
        var deit = DeitLayout();
        var larger = config.VisionConfig with { ImageSize = config.VisionConfig.ImageSize * 2 };
        using var vision = new BlipVisionModel(larger);
        var log = new List<string>();
        PretrainedVisionEncoder.LoadInto(vision, deit, "deit.pth", log.Add);
        var expected = PositionEmbeddings.Interpolate(deit["pos_embed"], larger.GridSize, larger.GridSize);
        Assert.True(vision.embeddings.position_embedding.eq(expected).all().ToBoolean());
        Assert.Contains($"interpolated (bicubic) from {config.VisionConfig.GridSize * config.VisionConfig.GridSize} to {larger.GridSize * larger.GridSize} patches",
            log.Single(), StringComparison.Ordinal);
        foreach (var t in deit.Values) t.Dispose();
    }

    [Fact]
    public void AMissingOrMisshapenEntryIsNamed()
    {
        var config = OriginalFixtures.PretrainingConfig(PretrainDir);
        using var vision = new BlipVisionModel(config.VisionConfig);
        var deit = DeitLayout();
        deit.Remove("blocks.0.norm1.weight", out var removed);
        var e = Assert.Throws<CheckpointFormatException>(() => PretrainedVisionEncoder.LoadInto(vision, deit, "deit.pth"));
        Assert.Contains("encoder.layers.0.layer_norm1.weight", e.Message, StringComparison.Ordinal);
        deit["blocks.0.norm1.weight"] = zeros(3);
        e = Assert.Throws<CheckpointFormatException>(() => PretrainedVisionEncoder.LoadInto(vision, deit, "deit.pth"));
        Assert.Contains("encoder.layers.0.layer_norm1.weight", e.Message, StringComparison.Ordinal);
        removed!.Dispose();

        var text = new Dictionary<string, Tensor> { ["text_encoder.embeddings.word_embeddings.weight"] = zeros(4, 4) };
        e = Assert.Throws<CheckpointFormatException>(() => PretrainedVisionEncoder.LoadInto(vision, text, "bert.bin"));
        Assert.Contains("bert.bin: no vision encoder weights found", e.Message, StringComparison.Ordinal);
        var notARun = Assert.Throws<FileNotFoundException>(() => PretrainedVisionEncoder.LoadInto(vision, _dir));
        Assert.Contains("not a run folder with a checkpoint", notARun.Message, StringComparison.Ordinal);
        foreach (var t in deit.Values.Concat(text.Values)) t.Dispose();
    }

    private static BlipVisionConfig TinyVit => new()
    {
        HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2, ImageSize = 16, PatchSize = 4, LayerNormEps = 1e-6,
    };

    private string World()
    {
        string world = Path.Combine(_dir, "world");
        SyntheticWorld.Generate(world, new SyntheticWorldOptions
        {
            Seed = 5, ImageSize = 16, PretrainImages = 8, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0, ClassifyImages = 24,
        });
        return world;
    }

    private static TrainingConfig ClassifyRecipe(string world, string run, params string[] overrides) =>
        TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "vit-tiny.json"),
        [
            $"data.train_files=[{JsonSerializer.Serialize(Path.Combine(world, SyntheticWorld.ClassifyFile))}]", "data.image_size=16", "data.batch_size=8", "data.workers=1",
            $"model.vision_config={JsonSerializer.Serialize(TinyVit)}", $"output.dir={JsonSerializer.Serialize(run)}", .. overrides,
        ]);

    [Fact]
    public void TheClassifyTaskLearnsItsClassesFromTheCaptionsAndItsLossIsSmoothedCrossEntropy()
    {
        string world = World();
        var config = ClassifyRecipe(world, Path.Combine(_dir, "run"));
        var dataset = TrainingData.LoadDataset(config.Data, _ => { });
        manual_seed(1);
        using var task = ClassificationTrainingTask.Create(config, new TrainingTaskContext(dataset, _ => { }));
        var labels = dataset.Select(ClassificationTrainingTask.LabelOf).ToList();
        Assert.Equal(labels.Distinct().Order(StringComparer.Ordinal), task.Classes);
        Assert.All(task.Classes, c => Assert.Contains(c, new[] { "circle", "square", "triangle", "star", "diamond", "hexagon", "cross" }));

        var loader = TrainingData.CreateLoader(dataset, config.Data, config.Seed, _ => { });
        using var batch = loader.LoadBatch(new LoaderPosition(0, 0))!;
        var output = task.Step(batch, new StepContext { Epoch = 0, Step = 0, BatchInEpoch = 0, BatchesPerEpoch = 1 });
        var logits = task.Classifier.forward(batch.Pixels);
        var target = tensor(batch.Entries.Select(e => (long)task.Classes.ToList().IndexOf(ClassificationTrainingTask.LabelOf(e))).ToArray());
        // Label smoothing 0.1 by hand: (1 - 0.1) * NLL + 0.1 * mean over classes of -log p.
        var logp = logits.log_softmax(1);
        var expected = (0.9 * -logp.gather(1, target.unsqueeze(1)).squeeze(1) - 0.1 * logp.mean([1])).mean();
        Assert.Equal(expected.item<float>(), output.Loss.item<float>(), 1e-5);
        var accuracy = logits.argmax(1).eq(target).to_type(ScalarType.Float32).mean().item<float>();
        Assert.Equal(accuracy, output.Metrics!["acc"].item<float>(), 1e-6);
    }

    [Fact]
    public void AClassNotListedIsARecipeErrorNamingTheRecord()
    {
        string world = World();
        var config = ClassifyRecipe(world, Path.Combine(_dir, "run"), "model.classes=[\"circle\",\"square\"]");
        var dataset = TrainingData.LoadDataset(config.Data, _ => { });
        var firstOther = dataset.Select((e, i) => (Label: ClassificationTrainingTask.LabelOf(e), i)).First(x => x.Label is not ("circle" or "square"));
        var e = Assert.Throws<TrainingConfigException>(() => ClassificationTrainingTask.Create(config, new TrainingTaskContext(dataset, _ => { })));
        Assert.Contains($"classify.json, record {firstOther.i}: class '{firstOther.Label}' is not in model.classes (circle, square)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PretrainingStartsFromAClassifyRunWithTheMomentumCopyEqual()
    {
        string world = World();
        string run = Path.Combine(_dir, "vit");
        var (code, _, error) = CliRunner.Run("pretrain", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "vit-tiny.json"), "--out", run, "--threads", "1",
            "--set", $"data.train_files=[{JsonSerializer.Serialize(Path.Combine(world, SyntheticWorld.ClassifyFile))}]", "--set", "data.image_size=16",
            "--set", "data.batch_size=8", "--set", "data.workers=1", "--set", $"model.vision_config={JsonSerializer.Serialize(TinyVit)}", "--set", "train.max_steps=2");
        Assert.True(code == 0, error);
        Assert.Contains("classify: ViT 16x1 at 16 px (patch 4)", error, StringComparison.Ordinal);

        var weights = SafeTensors.Load(PretrainedVisionEncoder.ResolveFile(run));
        var recipe = TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json"),
        [
            $"model.tokenizer={JsonSerializer.Serialize(Path.Combine(world, SyntheticVocabulary.DirectoryName))}", "data.image_size=16",
            $"model.vision_config={JsonSerializer.Serialize(TinyVit)}", $"model.vision_init={JsonSerializer.Serialize(run)}",
        ]);
        var log = new List<string>();
        using var task = PretrainingTrainingTask.Create(recipe, new TrainingTaskContext(new ImageTextDataset("none", []), log.Add));
        foreach (var (key, value) in task.PretrainingModel.vision_model.state_dict())
            Assert.True(value.eq(weights["vision_model." + key]).all().ToBoolean(), $"vision_model.{key} is not the classify run's");
        AssertSameWeights(task.PretrainingModel.vision_model, task.PretrainingModel.vision_model_m);
        Assert.Contains(log, l => l.Contains("vision encoder initialised from", StringComparison.Ordinal) && l.Contains("head.bias, head.weight", StringComparison.Ordinal));
        foreach (var t in weights.Values) t.Dispose();

        var missing = Assert.Throws<TrainingConfigException>(() => PretrainingTrainingTask.Create(
            TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json"),
                [$"model.tokenizer={JsonSerializer.Serialize(Path.Combine(world, SyntheticVocabulary.DirectoryName))}", "model.vision_init=nowhere/deit.pth"]),
            new TrainingTaskContext(new ImageTextDataset("none", []), _ => { })));
        Assert.Contains("model.vision_init (nowhere/deit.pth) cannot initialise the vision encoder: nowhere/deit.pth does not exist.", missing.Message, StringComparison.Ordinal);
    }
}
