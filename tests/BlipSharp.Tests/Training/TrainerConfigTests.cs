using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>Training recipes: the files in configs/, dotted overrides, errors that name the key, the resolved recipe.</summary>
public sealed class TrainerConfigTests
{
    private static string ConfigPath(string name) => Path.Combine(Fixtures.RepoRoot, "configs", name);

    private static JsonObject Minimal() => JsonNode.Parse("""{ "task": "pretrain", "data": { "train_files": ["a.json"] } }""")!.AsObject();

    [Fact]
    public void BaseRecipeHasBlipsViTBPretrainingValues()
    {
        var c = TrainingConfigLoader.Load(ConfigPath("pretrain-base.json"));
        Assert.Equal("pretrain", c.Task);
        Assert.Equal(42, c.Seed);
        Assert.Equal((224, 75, 0.2, 30), (c.Data.ImageSize, c.Data.BatchSize, c.Data.MinScale, c.Data.MaxWords));
        var t = c.Train;
        Assert.Equal((20, 3e-4, 1e-6, 1e-6, 3000), (t.Epochs, t.Lr, t.MinLr, t.WarmupLr, t.WarmupSteps));
        Assert.Equal((LearningRateDecay.Step, 0.9, 0.05), (t.LrDecay, t.LrDecayRate, t.WeightDecay));
        Assert.Equal([0.9, 0.999], t.Betas);
        Assert.Empty(t.LrScales); // one learning rate for every parameter, as BLIP
        Assert.True(t.GradientCheckpointing);
        Assert.Equal(57600, (int)c.Model["queue_size"]!);
        Assert.Equal(0.4, (double)c.Model["alpha"]!);
        Assert.Equal(256, (int)c.Model["embed_dim"]!);
        Assert.Equal(768, (int)c.Model["vision_config"]!["hidden_size"]!);
        Assert.Equal(30524, (int)c.Model["text_config"]!["vocab_size"]!);
        Assert.Equal(0, 57600 % c.Data.BatchSize); // BLIP asserts queue_size % batch_size == 0
    }

    [Fact]
    public void TinyRecipeIsSmallEnoughForACpu()
    {
        var c = TrainingConfigLoader.Load(ConfigPath("pretrain-tiny.json"));
        Assert.Equal(32, c.Data.ImageSize);
        Assert.Equal(32, (int)c.Model["vision_config"]!["image_size"]!);
        Assert.True((int)c.Model["vision_config"]!["hidden_size"]! <= 128);
        Assert.Equal(0, (int)c.Model["queue_size"]! % c.Data.BatchSize);
        Assert.Equal(["data/synth/pretrain.json"], c.Data.TrainFiles);
        Assert.Equal("data/synth/tokenizer", (string)c.Model["tokenizer"]!);                    // what blip synth writes
        Assert.Equal(SyntheticVocabulary.DecTokenId, (int)c.Model["text_config"]!["bos_token_id"]!);
        Assert.Equal(SyntheticVocabulary.EncTokenId, (int)c.Model["enc_token_id"]!);
        Assert.Equal(SyntheticVocabulary.SepTokenId, (int)c.Model["text_config"]!["sep_token_id"]!);     // where captions end
        long steps = (long)c.Train.Epochs * (new SyntheticWorldOptions().PretrainImages / c.Data.BatchSize); // blip synth's default world
        Assert.InRange(steps, 200, 1000);
    }

    [Fact]
    public void OverridesSetDottedKeysWithJsonOrStringValues()
    {
        var c = TrainingConfigLoader.FromJson(Minimal(),
        [
            "train.lr=1e-4", "train.precision=bfloat16", "train.clip_grad_norm=1.5", "output.dir=runs/x y",
            "data.train_files=[\"b.json\",\"c.json\"]", "train.betas=[0.9,0.98]", "model.queue_size=1024", "model.vision_config.hidden_size=64",
            "train.max_steps=null", "seed=3", "train.lr_scales.vision_model=0.3", "data.min_scale=0.8", "data.min_ratio=1", "data.max_ratio=1",
        ]);
        Assert.Equal(1e-4, c.Train.Lr);
        Assert.Equal(Precision.BFloat16, c.Train.Precision);
        Assert.Equal(1.5, c.Train.ClipGradNorm);
        Assert.Equal("runs/x y", c.Output.Dir);
        Assert.Equal(["b.json", "c.json"], c.Data.TrainFiles);
        Assert.Equal([0.9, 0.98], c.Train.Betas);
        Assert.Equal(1024, (int)c.Model["queue_size"]!);
        Assert.Equal(64, (int)c.Model["vision_config"]!["hidden_size"]!);
        Assert.Null(c.Train.MaxSteps);
        Assert.Equal(3, c.Seed);
        Assert.Equal(0.3, Assert.Single(c.Train.LrScales, kv => kv.Key == "vision_model").Value);
        var crop = TrainingData.TrainTransform(c.Data).Crop;                   // what the loader applies
        Assert.Equal((0.8, 1.0, 1.0, 1.0), (crop.MinScale, crop.MaxScale, crop.MinRatio, crop.MaxRatio));
        crop = TrainingData.TrainTransform(TrainingConfigLoader.FromJson(Minimal()).Data).Crop;
        Assert.Equal((3.0 / 4.0, 4.0 / 3.0), (crop.MinRatio, crop.MaxRatio));   // torchvision's, as BLIP
    }

    [Theory]
    [InlineData("train.lrr=1e-4", "train.lrr is not a known key", "did you mean 'train.lr'")]
    [InlineData("trian.lr=1e-4", "trian is not a known key", "did you mean 'train'")]
    [InlineData("train.lr=fast", "train.lr has a value of the wrong type (got \"fast\"): expected a number", null)]
    [InlineData("train.precision=fp8", "train.precision has a value of the wrong type (got \"fp8\"): expected one of float32, bfloat16", null)]
    [InlineData("train.max_steps=1.5", "train.max_steps has a value of the wrong type (got 1.5): expected an integer or null", null)]
    [InlineData("train.lr=-1", "train.lr must be a positive number (got -1)", null)]
    [InlineData("data.batch_size=0", "data.batch_size must be at least 1 (got 0)", null)]
    [InlineData("data.max_ratio=0.5", "data.min_ratio and data.max_ratio must satisfy 0 < min_ratio <= max_ratio (got 0.75 and 0.5)", null)]
    [InlineData("train.betas=[0.9]", "train.betas must be two numbers within [0, 1)", null)]
    [InlineData("train=3", "train must be an object (got 3)", null)]
    [InlineData("data.train_files=[]", "data.train_files must list at least one annotation file", null)]
    [InlineData("data.train_files.first=1", "data.train_files is not a section, cannot set data.train_files.first", null)]
    [InlineData("train.lr.value=1", "train.lr has a value of the wrong type (got {\"value\":1}): expected a number", null)]
    [InlineData("nonsense", "override 'nonsense' must look like key=value", null)]
    public void BadValuesNameTheirKey(string assignment, string message, string? hint)
    {
        var e = Assert.Throws<TrainingConfigException>(() => TrainingConfigLoader.FromJson(Minimal(), [assignment]));
        Assert.StartsWith(message, e.Message);
        if (hint is not null) Assert.Contains(hint, e.Message);
    }

    [Fact]
    public void ResolvedRecipeHasEveryKeyAndRoundTrips()
    {
        var c = TrainingConfigLoader.FromJson(Minimal(), ["train.lr=2e-4"]);
        var json = TrainingConfigLoader.ToJson(c);
        Assert.Equal(2e-4, (double)json["train"]!["lr"]!);
        Assert.Equal(3000, (int)json["train"]!["warmup_steps"]!);             // a default, written out
        Assert.Equal("step", (string)json["train"]!["lr_decay"]!);
        Assert.Equal("float32", (string)json["train"]!["precision"]!);
        Assert.Equal(1000, (int)json["output"]!["checkpoint_every"]!);
        var again = TrainingConfigLoader.FromJson(json);
        Assert.Equal(TrainingConfigLoader.ToJsonText(c), TrainingConfigLoader.ToJsonText(again));
    }

    [Fact]
    public void FilesWithCommentsLoadAndBrokenFilesSaySo()
    {
        string dir = Directory.CreateTempSubdirectory("blipsharp-config-").FullName;
        try
        {
            string good = Path.Combine(dir, "good.json");
            File.WriteAllText(good, "{ // a comment\n \"task\": \"x\", \"data\": { \"train_files\": [\"a.json\"], }, }");
            Assert.Equal("x", TrainingConfigLoader.Load(good).Task);
            string bad = Path.Combine(dir, "bad.json");
            File.WriteAllText(bad, "{ \"task\": ");
            Assert.Contains("not valid JSON", Assert.Throws<TrainingConfigException>(() => TrainingConfigLoader.Load(bad)).Message);
            File.WriteAllText(bad, "[1, 2]");
            Assert.Contains("must be a JSON object", Assert.Throws<TrainingConfigException>(() => TrainingConfigLoader.Load(bad)).Message);
            Assert.Throws<FileNotFoundException>(() => TrainingConfigLoader.Load(Path.Combine(dir, "missing.json")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void UnknownTasksAndBadPretrainSettingsAreClearErrors()
    {
        var dataset = new BlipSharp.Training.Data.ImageTextDataset("none", []);
        var context = new TrainingTaskContext(dataset, _ => { });
        var unknown = TrainingConfigLoader.FromJson(Minimal(), ["task=nope"]);
        var e = Assert.Throws<TrainingConfigException>(() => TrainingTasks.Create(unknown, context));
        Assert.Equal("task", e.Key);
        Assert.Contains("'nope' is not a known task (available: ", e.Message);
        Assert.Contains("pretrain", TrainingTasks.Names);

        var tiny = ConfigPath("pretrain-tiny.json");
        (string Set, string Message)[] cases =
        [
            ("model.hidden=3", "model.hidden is not a known key of the pretrain task"),
            ("model.tokenizer=null", "model.tokenizer must name the tokenizer"),
            ("model.alpha=2", "model.alpha must be within 0..1 (got 2)"),
            ("model.queue_size=250", "model.queue_size (250) must be a multiple of data.batch_size (32), as BLIP asserts"),
            ("data.image_size=64", "model.vision_config.image_size (32) must equal data.image_size (64)"),
            ("model.embed_dim=0", "model: embed_dim must be positive, got 0."),
            ("model.max_text_length=100", "model.max_text_length (100) exceeds text_config.max_position_embeddings (64)"),
        ];
        foreach (var (set, message) in cases)
        {
            var recipe = TrainingConfigLoader.Load(tiny, [set]);
            var error = Assert.Throws<TrainingConfigException>(() => TrainingTasks.Create(recipe, context));
            Assert.StartsWith(message, error.Message);
        }

        // The model and the tokenizer must agree on the ids BLIP writes into texts.
        string tokenizer = Fixtures.HfModelDirs().First(d => File.Exists(Path.Combine(d, "vocab.txt")));
        (string[] Set, string Message)[] mismatches =
        [
            (["model.text_config.vocab_size=30523", "model.text_config.bos_token_id=30521", "model.enc_token_id=30522"],
                $"model.text_config.vocab_size (30523) is smaller than the vocabulary of the tokenizer {tokenizer} (30524 tokens)"),
            (["model.text_config.bos_token_id=5"], $"model.text_config.bos_token_id (5) is not the id of [DEC] in the tokenizer {tokenizer} (30522)"),
            (["model.enc_token_id=6"], $"model.enc_token_id (6) is not the id of [ENC] in the tokenizer {tokenizer} (30523)"),
            (["model.text_config.pad_token_id=1"], $"model.text_config.pad_token_id (1) is not the id of [PAD] in the tokenizer {tokenizer} (0)"),
            (["model.text_config.sep_token_id=3"],
                $"model.text_config.sep_token_id (3) is not the id of [SEP] in the tokenizer {tokenizer} (102); captions would never end"),
        ];
        foreach (var (set, message) in mismatches)
        {
            var recipe = TrainingConfigLoader.Load(tiny, // the tiny recipe made to fit BERT's vocabulary, then one key off
                ["model.tokenizer=" + tokenizer, "model.text_config.vocab_size=30524", "model.text_config.bos_token_id=30522", "model.enc_token_id=30523",
                    "model.text_config.sep_token_id=102", .. set]);
            var error = Assert.Throws<TrainingConfigException>(() => TrainingTasks.Create(recipe, context));
            Assert.Equal(message, error.Message);
        }
    }
}
