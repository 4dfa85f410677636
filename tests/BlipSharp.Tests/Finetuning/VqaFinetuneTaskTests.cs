using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Checkpoints;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using BlipSharp.Training.Vqa;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// A small synthetic world (8 VQA training images of 32 px, 4 questions each; 2 test images) and a randomly initialised
/// pretraining checkpoint of configs/vqa-tiny.json's architecture, shared by <see cref="VqaFinetuneTaskTests"/>.
/// </summary>
public sealed class VqaTaskWorld : IDisposable
{
    public VqaTaskWorld()
    {
        Root = Directory.CreateTempSubdirectory("blipsharp-vqa-task-").FullName;
        World = Path.Combine(Root, "world");
        SyntheticWorld.Generate(World, new SyntheticWorldOptions
        {
            Seed = 5, ImageSize = 32, PretrainImages = 4, HumanImages = 2, ValImages = 2, TestImages = 2, VqaImages = 10, ClassifyImages = 2, NlvrPairs = 2,
        });
        var recipe = TrainingConfigLoader.Load(Recipe);
        var section = (JsonObject)recipe.Model.DeepClone();
        foreach (string key in new[] { "init", "tokenizer" }) section.Remove(key);
        Architecture = BlipPretrainingConfig.Parse(section.ToJsonString());
        Pretrained = Path.Combine(Root, "pretrained.safetensors");
        manual_seed(3);
        using var model = new BlipPretrainingModel(Architecture);
        SafeTensors.Save(Pretrained, model.state_dict());
        Tokenizer = BlipTokenizer.FromPretrained(Path.Combine(World, "tokenizer"));
    }

    public static string Recipe => Path.Combine(Fixtures.RepoRoot, "configs", "vqa-tiny.json");

    public string Root { get; }
    public string World { get; }
    public string Pretrained { get; }
    public BlipPretrainingConfig Architecture { get; }
    public BlipTokenizer Tokenizer { get; }

    /// <summary>The tiny recipe pointed at this world and checkpoint, with further overrides.</summary>
    public TrainingConfig Config(params string[] overrides) => TrainingConfigLoader.Load(Recipe, Overrides().Concat(overrides));

    public IEnumerable<string> Overrides() =>
    [
        $"data.train_files=[\"{Path.Combine(World, "vqa_train.json")}\"]",
        $"model.init={Pretrained}",
        $"model.tokenizer={Path.Combine(World, "tokenizer")}",
        $"evaluation.answer_list={Path.Combine(World, "answer_list.json")}",
        $"evaluation.splits.test.annotation={Path.Combine(World, "vqa_test.json")}",
        $"evaluation.splits.test.questions={Path.Combine(World, "vqa_test_questions.json")}",
        $"evaluation.splits.test.annotations={Path.Combine(World, "vqa_test_annotations.json")}",
        "data.workers=1",
    ];

    public string NewFolder(string name) => Directory.CreateDirectory(Path.Combine(Root, name + "-" + Guid.NewGuid().ToString("N")[..8])).FullName;

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

/// <summary>
/// The <c>vqa</c> fine-tuning task's plumbing: the model starts from a pretraining checkpoint as <c>blip_vqa</c> does,
/// training records find their images under their dataset's root, a batch is a function of its request (mirrored
/// images swap left and right in question and answers), recipe mistakes name their key, malformed files name the file
/// and record, and an evaluation writes BLIP's result file, scores it (or, without official files, only counts).
/// </summary>
public sealed class VqaFinetuneTaskTests(VqaTaskWorld world) : IClassFixture<VqaTaskWorld>
{
    private readonly VqaFinetuneTask _task = new();

    [Fact]
    public void TheTaskIsRegisteredAsVqa()
    {
        Assert.IsType<VqaFinetuneTask>(FinetuneTasks.Get("vqa"));
        Assert.Equal("vqa", _task.Name);
    }

    [Fact]
    public void ThePaperRecipeIsBlipsVqaYaml()
    {
        // salesforce/BLIP configs/vqa.yaml: image_size 480, batch_size_train 16, init_lr 2e-5, weight_decay 0.05, min_lr 0,
        // max_epoch 10 (cosine per epoch), k_test 128, inference rank, batch_size_test 32; vit_grad_ckpt False.
        var config = TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "vqa.json"));
        Assert.Equal("vqa", config.Task);
        Assert.Equal(3, config.Data.TrainFiles.Count);
        Assert.Equal((480, 16, 0.5, true), (config.Data.ImageSize, config.Data.BatchSize, config.Data.MinScale, config.Data.RandAugment));
        Assert.Equal((2e-5, 0.0, 0.05, 10, 0), (config.Train.Lr, config.Train.MinLr, config.Train.WeightDecay, config.Train.Epochs, config.Train.WarmupSteps));
        Assert.Equal(LearningRateDecay.Cosine, config.Train.LrDecay);
        Assert.False(config.Train.LrPerStep);
        Assert.False(config.Train.GradientCheckpointing);
        Assert.Equal(480, config.Model["vision_config"]!["image_size"]!.GetValue<int>());
        Assert.Equal("rank", config.Evaluation["inference"]!.GetValue<string>());
        Assert.Equal(128, config.Evaluation["k_test"]!.GetValue<int>());
        Assert.Equal(32, config.Evaluation["batch_size"]!.GetValue<int>());
    }

    [Fact]
    public void TheModelStartsFromThePretrainedViTTextEncoderAndTextDecoder()
    {
        var log = new List<string>();
        using var model = VqaFinetuneTask.CreateModel(world.Config(), log.Add);
        var pretrained = SafeTensors.Load(world.Pretrained);
        try
        {
            var state = model.state_dict();
            // blip_vqa.load_checkpoint: the question encoder IS the pretrained text encoder, the answer decoder the pretrained decoder.
            foreach (var (key, value) in state)
            {
                Assert.True(pretrained.TryGetValue(key, out var source), $"{key} is not in the pretraining checkpoint");
                Assert.True(value.equal(source).all().ToBoolean(), $"{key} differs from the pretraining checkpoint");
            }
            Assert.Contains("text_encoder.encoder.layer.1.crossattention.self.query.weight", state.Keys);
            Assert.Contains("text_decoder.bert.encoder.layer.1.crossattention.self.query.weight", state.Keys);
            Assert.Contains(log, l => l.Contains("skipped", StringComparison.Ordinal) && l.Contains("'vision_model_m.*'", StringComparison.Ordinal)
                && l.Contains("'itm_head.*'", StringComparison.Ordinal) && l.Contains("'image_queue*'", StringComparison.Ordinal));
        }
        finally
        {
            foreach (var t in pretrained.Values) t.Dispose();
        }
    }

    [Fact]
    public void TrainingRecordsFindTheirImagesUnderTheirDatasetsRoot()
    {
        string dir = world.NewFolder("roots");
        foreach (string sub in new[] { "coco/train2014", "vg/image", "fallback/image", "annotation/image" }) Directory.CreateDirectory(Path.Combine(dir, sub));
        foreach (string file in new[] { "coco/train2014/a.png", "vg/image/b.png", "fallback/image/b.png", "annotation/image/b.png", "annotation/image/a.png" })
            File.Copy(Path.Combine(world.World, "images", "vqa", "000000.png"), Path.Combine(dir, file));
        string annotations = Path.Combine(dir, "annotation", "train.json");
        File.WriteAllText(annotations, """
            [
              {"question_id": 1, "question": "What color is it?", "answer": ["red", "red", "blue"], "image": "train2014/a.png", "dataset": "vqa"},
              {"question_id": 2, "question": "What shape?", "answer": "circle", "image": "image/b.png", "dataset": "vg"}
            ]
            """);

        var both = VqaTrainingData.Load([annotations], new VqaImageRoots(Path.Combine(dir, "coco"), Path.Combine(dir, "vg"), Path.Combine(dir, "fallback")));
        Assert.Equal(Path.Combine(dir, "coco", "train2014", "a.png"), both[0].Image);
        Assert.Equal(Path.Combine(dir, "vg", "image", "b.png"), both[1].Image);
        Assert.Equal("what color is it?", both[0].Item.Question);
        Assert.Equal([new WeightedAnswer("red", 2.0 / 3), new WeightedAnswer("blue", 1.0 / 3)], both[0].Item.Answers);
        Assert.Equal([new WeightedAnswer("circle", 0.2)], both[1].Item.Answers);

        var fallback = VqaTrainingData.Load([annotations], new VqaImageRoots(Path.Combine(dir, "coco"), null, Path.Combine(dir, "fallback")));
        Assert.Equal(Path.Combine(dir, "fallback", "image", "b.png"), fallback[1].Image);

        var e = Assert.Throws<DataFormatException>(() => VqaTrainingData.Load([annotations], new VqaImageRoots()));
        Assert.Contains(annotations, e.Message, StringComparison.Ordinal);
        Assert.Contains("record 0", e.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(dir, "annotation", "train2014", "a.png"), e.Message, StringComparison.Ordinal);
        Assert.Contains("\"vqa\"", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ATrainingRecordWithoutAnswerFailsNamingTheFileAndRecord()
    {
        string dir = world.NewFolder("noanswer");
        string path = Path.Combine(dir, "train.json");
        File.WriteAllText(path, """[{"question_id": 1, "question": "q?", "answer": ["a"], "image": "x.png", "dataset": "vqa"}, {"question_id": 2, "question": "q?", "image": "x.png", "dataset": "vqa"}]""");
        var e = Assert.Throws<DataFormatException>(() => VqaTrainingData.Load([path], new VqaImageRoots()));
        Assert.Equal(path, e.Issue.Source);
        Assert.Equal("record 1", e.Issue.Location);
        Assert.Contains("'answer'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ABatchIsAFunctionOfItsRequestAndAMirroredImageSwapsLeftAndRight()
    {
        string dir = world.NewFolder("swap");
        string path = Path.Combine(dir, "train.json");
        string image = Path.Combine(world.World, "images", "vqa", "000001.png");
        File.WriteAllText(path, $$"""
            [
              {"question_id": 1, "question": "Where is the red circle?", "answer": ["left", "left", "center"], "image": "{{image}}", "dataset": "vqa"},
              {"question_id": 2, "question": "What shape is on the right?", "answer": ["star"], "image": "{{image}}", "dataset": "vqa"}
            ]
            """);
        var samples = VqaTrainingData.Load([path], new VqaImageRoots());
        var mirror = new BlipTrainTransform(new BlipTrainTransformOptions { ImageSize = 32, MinScale = 0.9, FlipProbability = 1.0 });
        var request = new SampleBatchRequest([1, 0], new LoaderPosition(2, 3), Seed: 77);

        using var swapped = VqaTrainingData.Build(samples, request, world.Tokenizer, mirror, new VqaBatchOptions { SwapLeftRightOnFlip = true, Workers = 1 });
        using var again = VqaTrainingData.Build(samples, request, world.Tokenizer, mirror, new VqaBatchOptions { SwapLeftRightOnFlip = true, Workers = 2 });
        using var kept = VqaTrainingData.Build(samples, request, world.Tokenizer, mirror, new VqaBatchOptions { SwapLeftRightOnFlip = false, Workers = 1 });

        Assert.Equal(new LoaderPosition(2, 3), swapped.Position);
        Assert.Equal(2, swapped.Count);
        Assert.Equal([2L, 3, 32, 32], swapped.Tensors.PixelValues.shape);
        Assert.True(swapped.Tensors.PixelValues.equal(again.Tensors.PixelValues).all().ToBoolean());
        Assert.Equal([1L, 2], swapped.Tensors.AnswerCounts.data<long>().ToArray());          // sample 1 first: one answer, then two
        Assert.Equal([1f, 2f / 3, 1f / 3], swapped.Tensors.Weights.data<float>().ToArray());

        string Text(Tensor ids, int row) => world.Tokenizer.Decode(ids[row].data<long>().ToArray(), skipSpecialTokens: true);
        Assert.Equal("what shape is on the left?", Text(swapped.Tensors.QuestionIds, 0));
        Assert.Equal("where is the red circle?", Text(swapped.Tensors.QuestionIds, 1));
        Assert.Equal(["star", "right", "center"], Enumerable.Range(0, 3).Select(i => Text(swapped.Tensors.AnswerIds, i)).ToArray());
        Assert.Equal("what shape is on the right?", Text(kept.Tensors.QuestionIds, 0));
        Assert.Equal(["star", "left", "center"], Enumerable.Range(0, 3).Select(i => Text(kept.Tensors.AnswerIds, i)).ToArray());
        Assert.Equal(world.Tokenizer.EncTokenId, swapped.Tensors.QuestionIds[0, 0].ToInt64());
        Assert.Equal(world.Tokenizer.BosTokenId, swapped.Tensors.AnswerIds[0, 0].ToInt64());
    }

    [Theory]
    [InlineData("""{"a": 1}""", "file", "expected a JSON list")]
    [InlineData("""["yes", 2]""", "item 1", "non-empty string")]
    [InlineData("""["yes", "no", "yes"]""", "item 2", "repeats the answer \"yes\" of item 0")]
    [InlineData("""[]""", "file", "empty list")]
    [InlineData("""["yes" """, "line 1", "not valid JSON")]
    public void AMalformedAnswerListFailsNamingTheFileAndItem(string json, string location, string reason)
    {
        string path = Path.Combine(world.NewFolder("answers"), "answer_list.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<DataFormatException>(() => VqaAnswerList.Read(path));
        Assert.Equal(path, e.Issue.Source);
        Assert.Equal(location, e.Issue.Location);
        Assert.Contains(reason, e.Issue.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("model.vqa_rooot=x", "model.vqa_rooot")]
    [InlineData("model.init=null", "model.init")]
    [InlineData("model.tokenizer=null", "model.tokenizer")]
    [InlineData("data.image_size=48", "model.vision_config.image_size")]
    [InlineData("model.enc_token_id=7", "model.enc_token_id")]
    [InlineData("evaluation.inference=beam", "evaluation.inference")]
    [InlineData("evaluation.answer_list=null", "evaluation.answer_list")]
    [InlineData("evaluation.k_test=0", "evaluation.k_test")]
    [InlineData("evaluation.min_length=11", "evaluation.min_length")]
    [InlineData("evaluation.top_k=3", "evaluation.top_k")]
    [InlineData("evaluation.splits.test.annotation=null", "evaluation.splits.test.annotation")]
    [InlineData("evaluation.splits.test.annotations=null", "evaluation.splits.test.annotations")]
    [InlineData("evaluation.splits.test.questions=null", "evaluation.splits.test.questions")]
    [InlineData("evaluation.splits.test.image_rooot=x", "evaluation.splits.test.image_rooot")]
    public void RecipeMistakesNameTheKey(string assignment, string key)
    {
        var config = world.Config(assignment);
        var e = Assert.Throws<TrainingConfigException>(() => _task.Evaluate(config, new EvaluationRequest { OutputDirectory = world.NewFolder("bad") }));
        Assert.StartsWith(key, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnUnknownSplitIsRefusedListingTheRecipesSplits()
    {
        var e = Assert.Throws<TrainingConfigException>(() => _task.Evaluate(world.Config(), new EvaluationRequest { Split = "val", OutputDirectory = world.NewFolder("val") }));
        Assert.Contains("has no split 'val' (it has: test)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMissingTrainingFileOrTestImageIsNamed()
    {
        string missing = Path.Combine(world.Root, "nope.json");
        var train = Assert.Throws<InvalidDataException>(() => _task.Train(world.Config($"data.train_files=[\"{missing}\"]"),
            new FinetuneContext { RunDirectory = world.NewFolder("run") }));
        Assert.Contains(missing, train.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", train.Message, StringComparison.Ordinal);

        string root = world.NewFolder("emptyroot");
        var test = Assert.Throws<InvalidDataException>(() => _task.Evaluate(world.Config($"evaluation.splits.test.image_root={root}"),
            new EvaluationRequest { OutputDirectory = world.NewFolder("eval") }));
        Assert.Contains(Path.Combine(world.World, "vqa_test.json"), test.Message, StringComparison.Ordinal);
        Assert.Contains("record 0", test.Message, StringComparison.Ordinal);
        Assert.Contains("evaluation.splits.test.image_root", test.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TrainingWritesACheckpointThatRankAndGenerateEvaluationsLoadAndScore()
    {
        string run = world.NewFolder("run");
        var trained = _task.Train(world.Config("train.max_steps=2", "data.batch_size=8"), new FinetuneContext { RunDirectory = run });
        Assert.True(trained.Completed);
        Assert.Equal(2, trained.Step);
        Assert.NotNull(trained.Checkpoint);
        Assert.True(double.IsFinite(trained.LastLoss!.Value));

        var answerList = VqaAnswerList.Read(Path.Combine(world.World, "answer_list.json"));
        var expectedIds = JsonDocument.Parse(File.ReadAllText(Path.Combine(world.World, "vqa_test.json"))).RootElement.EnumerateArray()
            .Select(e => e.GetProperty("question_id").GetInt64()).ToList();
        foreach (string inference in new[] { "rank", "generate" })
        {
            string dir = world.NewFolder("eval-" + inference);
            var progress = new List<EvaluationProgress>();
            var report = _task.Evaluate(world.Config($"evaluation.inference={inference}"),
                new EvaluationRequest { Weights = run, OutputDirectory = dir, Progress = new SyncProgress<EvaluationProgress>(progress.Add) });
            Assert.Equal("overall", report.PrimaryMetric);
            Assert.Equal(Path.GetFullPath(trained.Checkpoint!), Path.GetDirectoryName(Path.GetFullPath(report.Weights!)));
            Assert.InRange(report.Primary, 0, 100);
            Assert.Equal(expectedIds.Count, report.Metrics["questions"]);
            Assert.Contains("number", report.Metrics.Keys);
            Assert.Contains("other", report.Metrics.Keys);
            Assert.Equal(Path.Combine(dir, "vqa_result.json"), report.ResultsFile);
            Assert.Equal(expectedIds.Count, progress[^1].Done);
            Assert.Equal(expectedIds.Count, progress[^1].Total);

            var results = JsonDocument.Parse(File.ReadAllText(report.ResultsFile!)).RootElement.EnumerateArray().ToList();
            Assert.Equal(expectedIds, results.Select(r => r.GetProperty("question_id").GetInt64()).ToList()); // numbers, in file order
            Assert.All(results, r => Assert.Equal(2, r.EnumerateObject().Count()));
            if (inference == "rank") Assert.All(results, r => Assert.Contains(r.GetProperty("answer").GetString()!, answerList));
            using var metrics = JsonDocument.Parse(File.ReadAllText(report.MetricsFile));
            Assert.Equal(report.Primary, metrics.RootElement.GetProperty("metrics").GetProperty("overall").GetDouble());
        }
    }

    [Fact]
    public void ASplitWithoutOfficialFilesIsAnsweredAndCountedNotScored()
    {
        string dir = world.NewFolder("testdev");
        var logs = new List<string>();
        var report = _task.Evaluate(world.Config("evaluation.splits.test.questions=null", "evaluation.splits.test.annotations=null"),
            new EvaluationRequest { OutputDirectory = dir, Log = logs.Add });
        Assert.Equal("questions", report.PrimaryMetric);
        Assert.Equal(["questions"], report.Metrics.Keys.ToArray());
        Assert.Equal(8, report.Primary);
        Assert.Null(report.Weights);
        Assert.True(File.Exists(report.ResultsFile));
        Assert.Contains(logs, l => l.Contains("not scored", StringComparison.Ordinal));
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
