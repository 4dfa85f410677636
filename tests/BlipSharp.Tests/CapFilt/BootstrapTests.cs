using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.CapFilt;
using BlipSharp.Training.Evaluation;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.CapFilt;

public sealed class BootstrapTests : IDisposable
{
    private static readonly string RecipePath = Path.Combine(Fixtures.RepoRoot, "configs", "bootstrap-synthetic.json");
    private readonly string _root = Directory.CreateTempSubdirectory("blipsharp-bootstrap-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void ShippedRecipeLoadsWithStageRecipesResolvedNextToIt()
    {
        var recipe = BootstrapRecipe.Load(RecipePath);

        string configs = Path.Combine(Fixtures.RepoRoot, "configs");
        Assert.Equal(Path.Combine(configs, "vit-tiny.json"), recipe.Vit.Config);
        Assert.Equal(Path.Combine(configs, "pretrain-tiny.json"), recipe.Pretrain.Config);
        Assert.Equal(Path.Combine(configs, "caption-tiny.json"), recipe.Captioner.Config);
        Assert.Equal(Path.Combine(configs, "retrieval-tiny.json"), recipe.Filter.Config);
        Assert.Null(recipe.World.Dir);
        Assert.Equal(32, recipe.World.Size);
        Assert.Equal(0.5, recipe.World.Noise);
        Assert.Equal(BootstrapSchedule.Steps, recipe.Schedule);
        Assert.Equal(5, recipe.CapFilt.MinLength);
        Assert.Equal(20, recipe.CapFilt.MaxLength);

        var changed = BootstrapRecipe.Load(RecipePath, ["seed=7", "capfilt.threshold=0.3", "schedule=epochs", "pretrain.set=[\"train.epochs=1\"]"]);
        Assert.Equal(7, changed.Seed);
        Assert.Equal(0.3, changed.CapFilt.Threshold);
        Assert.Equal(BootstrapSchedule.Epochs, changed.Schedule);
        Assert.Equal(["train.epochs=1"], changed.Pretrain.Set);
    }

    [Theory]
    [InlineData("capfilt.treshold=0.4", "capfilt.treshold")]
    [InlineData("capfilt.top_p=1.5", "capfilt.top_p")]
    [InlineData("capfilt.max_length=3", "capfilt.max_length")]
    [InlineData("capfilt.threshold=\"high\"", "capfilt.threshold")]
    [InlineData("capfilt.num_captions=1.5", "capfilt.num_captions")]
    [InlineData("world.noise=1.5", "world.noise")]
    [InlineData("world.size=8", "world.size")]
    [InlineData("schedule=weekly", "schedule")]
    [InlineData("pretrain.config=no-such-recipe.json", "pretrain.config")]
    [InlineData("filter.set=[\"lr\"]", "filter.set")]
    [InlineData("vit=3", "vit")]
    [InlineData("evaluation.beams=0", "evaluation.beams")]
    [InlineData("extra=1", "extra")]
    public void RecipeErrorsNameTheFileAndTheKey(string assignment, string key)
    {
        var e = Assert.Throws<TrainingConfigException>(() => BootstrapRecipe.Load(RecipePath, [assignment]));

        Assert.Equal(key, e.Key);
        Assert.StartsWith(key + " ", e.Message);
        Assert.Contains(RecipePath, e.Message);
    }

    [Fact]
    public void StagesRunInOrderWithTheirDataAndTheResultsCompareBothPretrainings()
    {
        var runner = new FakeRunner();
        var recipe = Recipe();

        var result = new BootstrapPipeline(recipe, runner).Run();

        Assert.True(result.Completed);
        Assert.Equal(BootstrapPipeline.Stages, result.Ran);
        Assert.Empty(result.Skipped);
        Assert.Equal(["synth world", "train vit", "train pretrain-raw", "train captioner", "train filter", "capfilt", "steps", "train pretrain-capfilt", "evaluate pretrain-raw", "evaluate pretrain-capfilt"], runner.Calls);

        string world = Path.Combine(_root, "run", "world");
        var raw = runner.Requests["pretrain-raw"];
        Assert.Equal("pretrain", raw.Task);
        Assert.Contains($"data.train_files=[\"{Path.Combine(world, "pretrain.json")}\",\"{Path.Combine(world, "human_train.json")}\"]", raw.Overrides);
        Assert.Contains($"model.vision_init=\"{Path.Combine(_root, "run", "vit")}\"", raw.Overrides);
        Assert.Contains("seed=3", raw.Overrides);
        Assert.Equal("caption", runner.Requests["captioner"].Task);
        Assert.Equal("retrieval", runner.Requests["filter"].Task);
        Assert.Contains($"model.init=\"{Path.Combine(_root, "run", "pretrain-raw")}\"", runner.Requests["filter"].Overrides);
        Assert.Contains($"data.train_files=[\"{Path.Combine(world, "human_train.json")}\"]", runner.Requests["captioner"].Overrides);
        // the bootstrapped pretraining: from the ViT stage, on CapFilt's dataset, the baseline's 100 steps at 7 per epoch
        var boot = runner.Requests["pretrain-capfilt"];
        Assert.Contains($"data.train_files=[\"{Path.Combine(_root, "run", "capfilt", CapFiltMerge.DatasetFile)}\"]", boot.Overrides);
        Assert.Contains($"model.vision_init=\"{Path.Combine(_root, "run", "vit")}\"", boot.Overrides);
        Assert.Equal(["train.epochs=15", "train.max_steps=100"], boot.Overrides.TakeLast(2));
        Assert.Equal(0.25, runner.CapFiltOptions!.Threshold);
        Assert.Equal([Path.Combine(world, "human_train.json")], runner.CapFiltOptions.Human);

        var c = result.Comparison!;
        Assert.Equal(0.40, c.Raw.ImageToTextR1, 12);
        Assert.Equal(0.55, c.CapFilt.ImageToTextR1, 12);
        Assert.Equal(100, c.CapFilt.Steps);
        Assert.Equal(new BootstrapCapFiltCounts(600, 330, 600, 420, 40, 0.9, 0.8, 0.95), c.Counts);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(_root, "run", BootstrapPipeline.ResultsFile)))!;
        Assert.Equal(0.15, json["margin"]!["image_to_text_r1"]!.GetValue<double>(), 12);
        Assert.Equal(-0.05, json["margin"]!["caption_accuracy"]!.GetValue<double>(), 12);
        Assert.Equal(270, json["capfilt_counts"]!["web"]!["dropped"]!.GetValue<long>());
        string report = File.ReadAllText(Path.Combine(_root, "run", BootstrapPipeline.ReportFile));
        Assert.Contains("| raw noisy web + human | 100 | 40.0 | 30.0 | 50.0 |", report);
        Assert.Contains("| CapFilt (bootstrapped) | 100 | 55.0 | 35.0 | 45.0 |", report);
        Assert.Contains("| margin | | +15.0 | +5.0 | -5.0 |", report);
        Assert.Contains("precision 90.0 % and recall 80.0 %", report);
    }

    [Fact]
    public void ARunAgainSkipsCompletedStages()
    {
        var recipe = Recipe();
        new BootstrapPipeline(recipe, new FakeRunner()).Run();
        var again = new FakeRunner();

        var result = new BootstrapPipeline(recipe, again).Run();

        Assert.True(result.Completed);
        Assert.Empty(result.Ran);
        Assert.Equal(BootstrapPipeline.Stages, result.Skipped);
        Assert.Empty(again.Calls);
        Assert.Equal(0.55, result.Comparison!.CapFilt.ImageToTextR1, 12);
    }

    [Fact]
    public void AnInterruptedStageIsResumedAndTheStagesBeforeItAreNotRedone()
    {
        var recipe = Recipe();
        var first = new FakeRunner { StopAt = "pretrain-raw" };

        var stopped = new BootstrapPipeline(recipe, first).Run();

        Assert.False(stopped.Completed);
        Assert.Null(stopped.Comparison);
        Assert.Equal(["synth world", "train vit", "train pretrain-raw"], first.Calls);
        Assert.False(File.Exists(Path.Combine(_root, "run", "pretrain-raw", BootstrapPipeline.StageMarker)));

        var second = new FakeRunner();
        var resumed = new BootstrapPipeline(recipe, second).Run();

        Assert.True(resumed.Completed);
        Assert.Equal(["world", "vit"], resumed.Skipped);
        Assert.Equal("train pretrain-raw", second.Calls[0]);
        Assert.True(second.Resumed["pretrain-raw"]); // the fake saw the run folder its predecessor left
    }

    [Fact]
    public void ACompletedStageMadeWithOtherSettingsIsAnErrorNamingItAndTheKey()
    {
        new BootstrapPipeline(Recipe(), new FakeRunner()).Run();

        var e = Assert.Throws<BootstrapException>(() => new BootstrapPipeline(Recipe("capfilt.threshold=0.6"), new FakeRunner()).Run());

        Assert.Contains("stage capfilt", e.Message);
        Assert.Contains("capfilt.threshold: 0.25 -> 0.6", e.Message);
        Assert.Contains("pretrain-capfilt, evaluation", e.Message);
    }

    [Fact]
    public void ANamedWorldIsUsedInsteadOfMakingOne()
    {
        string world = Path.Combine(_root, "my-world");
        Directory.CreateDirectory(world);
        var missing = Assert.Throws<BootstrapException>(() => new BootstrapPipeline(Recipe($"world.dir={world}"), new FakeRunner()).Run());
        Assert.Contains($"world.dir names {world}, which has no pretrain.json", missing.Message);

        File.WriteAllText(Path.Combine(world, "pretrain.json"), "[]");
        var runner = new FakeRunner();
        var result = new BootstrapPipeline(Recipe($"world.dir={world}"), runner).Run();

        Assert.DoesNotContain("synth world", runner.Calls);
        Assert.DoesNotContain("world", result.Ran);
        Assert.Contains($"data.train_files=[\"{Path.Combine(world, "classify.json")}\"]", runner.Requests["vit"].Overrides);
        Assert.Equal([Path.Combine(world, "pretrain.json")], runner.CapFiltOptions!.Inputs);
    }

    [Fact]
    public void AnEpochScheduleKeepsTheRecipesEpochs()
    {
        var runner = new FakeRunner();

        new BootstrapPipeline(Recipe("schedule=epochs"), runner).Run();

        Assert.DoesNotContain("steps", runner.Calls);
        Assert.DoesNotContain(runner.Requests["pretrain-capfilt"].Overrides, o => o.StartsWith("train.max_steps", StringComparison.Ordinal));
    }

    /// <summary>
    /// The real verbs on a shrunken recipe (96 web images, one epoch per stage): every stage runs, the dataset and the
    /// results are written, and the same command again skips everything.
    /// </summary>
    [Fact]
    public void TheBootstrapVerbRunsEveryStageOnAShrunkenWorldAndSkipsThemWhenRunAgain()
    {
        string run = Path.Combine(_root, "cli");
        string[] args =
        [
            "bootstrap", "--config", RecipePath, "--out", run, "--threads", "1", "--json",
            "--set", "world.pretrain_images=96", "--set", "world.human_images=24", "--set", "world.test_images=10", "--set", "world.classify_images=64",
            "--set", "vit.set=[\"train.epochs=1\",\"train.warmup_steps=1\"]",
            "--set", "pretrain.set=[\"train.epochs=1\",\"train.warmup_steps=1\",\"data.batch_size=16\"]",
            "--set", "captioner.set=[\"train.epochs=1\"]", "--set", "filter.set=[\"train.epochs=1\"]",
            "--set", "capfilt.chunk_size=50", "--set", "capfilt.threshold=0.0",
        ];

        var first = JsonNode.Parse(TinyPretrainedWorld.Blip(args))!;

        Assert.True(first["completed"]!.GetValue<bool>());
        Assert.Equal(BootstrapPipeline.Stages, first["ran"]!.AsArray().Select(s => s!.GetValue<string>()));
        var counts = first["results"]!["capfilt_counts"]!;
        Assert.Equal(96, counts["web"]!["total"]!.GetValue<long>());
        Assert.Equal(96, counts["web"]!["kept"]!.GetValue<long>()); // threshold 0 keeps every text
        Assert.Equal(96, counts["synthetic"]!["kept"]!.GetValue<long>());
        Assert.Equal(48, counts["human"]!.GetValue<long>());
        // 96 web + 96 synthetic + 48 human pairs in batches of 16: 15 steps per epoch; the baseline's 144 pairs give 9 steps
        var raw = first["results"]!["raw"]!;
        var boot = first["results"]!["capfilt"]!;
        Assert.Equal(9, raw["steps"]!.GetValue<long>());
        Assert.Equal(9, boot["steps"]!.GetValue<long>());
        Assert.Equal(10, raw["images"]!.GetValue<int>());
        Assert.Equal(96 + 96 + 48, File.ReadLines(Path.Combine(run, "capfilt", CapFiltMerge.DatasetFile)).Count());
        Assert.True(File.Exists(Path.Combine(run, BootstrapPipeline.ReportFile)));

        var second = JsonNode.Parse(TinyPretrainedWorld.Blip(args))!;

        Assert.Empty(second["ran"]!.AsArray());
        Assert.Equal(BootstrapPipeline.Stages, second["skipped"]!.AsArray().Select(s => s!.GetValue<string>()));
        Assert.Equal(first["results"]!.ToJsonString(), second["results"]!.ToJsonString());
    }

    private BootstrapRecipe Recipe(params string[] extra) =>
        BootstrapRecipe.Load(RecipePath, ["seed=3", "capfilt.threshold=0.25", $"output.dir={Path.Combine(_root, "run")}", .. extra]);

    /// <summary>Records the stage calls and makes the folders and files the real stages would.</summary>
    private sealed class FakeRunner : IBootstrapStageRunner
    {
        public List<string> Calls { get; } = [];
        public Dictionary<string, BootstrapTrainRequest> Requests { get; } = [];
        public Dictionary<string, bool> Resumed { get; } = [];
        public CapFiltOptions? CapFiltOptions { get; private set; }
        public string? StopAt { get; init; }

        public void Synthesize(BootstrapWorld world, string directory)
        {
            Calls.Add("synth world");
            Directory.CreateDirectory(directory);
            File.WriteAllText(Path.Combine(directory, "pretrain.json"), "[]");
        }

        public BootstrapTrainResult Train(BootstrapTrainRequest request)
        {
            Calls.Add("train " + request.Stage);
            Requests[request.Stage] = request;
            Resumed[request.Stage] = Directory.Exists(request.RunDirectory);
            Directory.CreateDirectory(request.RunDirectory);
            return request.Stage == StopAt ? new BootstrapTrainResult(false, 40, 100) : new BootstrapTrainResult(true, 100, 100);
        }

        public long StepsPerEpoch(string config, IReadOnlyList<string> overrides)
        {
            Calls.Add("steps");
            return 7;
        }

        public bool CapFilt(CapFiltOptions options, string captioner, string filter)
        {
            Calls.Add("capfilt");
            CapFiltOptions = options;
            Directory.CreateDirectory(options.OutputDirectory);
            var summary = new JsonObject
            {
                ["web"] = new JsonObject { ["total"] = 600, ["kept"] = 330 },
                ["synthetic"] = new JsonObject { ["total"] = 600, ["kept"] = 420 },
                ["human"] = new JsonObject { ["total"] = 40, ["kept"] = 40 },
                ["planted_noise"] = new JsonObject { ["precision"] = 0.9, ["recall"] = 0.8, ["clean_kept_fraction"] = 0.95 },
            };
            File.WriteAllText(Path.Combine(options.OutputDirectory, CapFiltMerge.SummaryFile), summary.ToJsonString());
            return true;
        }

        public SyntheticEvaluationResult Evaluate(string pretrainRun, string testFile, SyntheticEvaluationOptions options)
        {
            string name = Path.GetFileName(pretrainRun);
            Calls.Add("evaluate " + name);
            return name == "pretrain-raw"
                ? new SyntheticEvaluationResult(20, 100, 0.40, 0.70, 0.30, 0.05, 0.50, [])
                : new SyntheticEvaluationResult(20, 100, 0.55, 0.80, 0.35, 0.05, 0.45, []);
        }
    }
}
