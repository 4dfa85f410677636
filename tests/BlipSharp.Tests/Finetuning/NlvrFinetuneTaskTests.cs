using System.Text.Json.Nodes;
using BlipSharp.Processing;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Nlvr;
using BlipSharp.Training.Training;
using TorchSharp;
using Xunit;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// The data plumbing and recipe checks of <c>blip finetune nlvr</c>: BLIP's random pair swap (with "left"/"right" in
/// the sentence), deterministic from the batch seed; batches of two image tensors in the order the model reads them;
/// the recipe's model and evaluation keys named in errors; malformed annotation files named with file and record.
/// </summary>
public sealed class NlvrFinetuneTaskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-nlvr-task-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Words = ["there", "is", "a", "red", "blue", "circle", "square", "in", "the", "left", "right", "image", "and", "are", "two", "objects"];

    /// <summary>A BERT tokenizer folder with BLIP's special tokens ([DEC] 5, [ENC] 6) and the words of the statements.</summary>
    private string Tokenizer()
    {
        string dir = Path.Combine(_dir, "tokenizer");
        Directory.CreateDirectory(dir);
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]" }.Concat(Words));
        File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"),
            """{"bos_token": "[DEC]", "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]", "additional_special_tokens": ["[ENC]"]}""");
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"do_lower_case": true, "tokenizer_class": "BertTokenizer"}""");
        return dir;
    }

    /// <summary>An 8x8 PNG of one colour, written under the test folder.</summary>
    private string Solid(string name, byte r, byte g, byte b)
    {
        var rows = new byte[8 * 8 * 3];
        for (int i = 0; i < rows.Length; i += 3) (rows[i], rows[i + 1], rows[i + 2]) = (r, g, b);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, PngBuilder.Build(8, 8, 8, PngBuilder.Rgb, rows));
        return name;
    }

    private static NlvrItem Item(string sentence, bool label, string left = "l.png", string right = "r.png") =>
        new(ImageSource.FromFile(left), ImageSource.FromFile(right), sentence, label, "mem.json", "record 0");

    [Fact]
    public void TheWordSwapExchangesExactlyTheWordsLeftAndRightAsBlipSplitsThem()
    {
        Assert.Equal("there is a red circle in the right image and a square in the left image",
            NlvrExamples.SwapLeftRightWords("there is a red circle in the left image and a square in the right image"));
        // BLIP compares the pieces of sentence.split(' '): punctuation that pre_caption keeps (commas, hyphens) protects a word.
        Assert.Equal("left, right-hand leftmost left", NlvrExamples.SwapLeftRightWords("left, right-hand leftmost right"));
        Assert.Equal("", NlvrExamples.SwapLeftRightWords(""));
    }

    [Fact]
    public void ATrainingExampleIsCleanedAndSwappedWithImagesAndWordsTogetherAboutHalfTheTime()
    {
        var item = Item("There is a RED circle in the left image.", true);
        int swapped = 0;
        const int Draws = 2000;
        for (int seed = 0; seed < Draws; seed++)
        {
            var e = NlvrExamples.ForTraining(item, NlvrExamples.BlipMaxWords, new Random(seed));
            Assert.Equal(1, e.Target);
            Assert.Same(item, e.Item);
            if (e.Swapped)
            {
                swapped++;
                Assert.Equal("r.png", e.First.Name);
                Assert.Equal("l.png", e.Second.Name);
                Assert.Equal("there is a red circle in the right image", e.Sentence);
            }
            else
            {
                Assert.Equal("l.png", e.First.Name);
                Assert.Equal("r.png", e.Second.Name);
                Assert.Equal("there is a red circle in the left image", e.Sentence);
            }
        }
        Assert.InRange(swapped, 900, 1100); // p = 0.5: 1000 +- 4.5 sd

        var evaluation = NlvrExamples.ForEvaluation(Item("There are two objects in the RIGHT image!", false), NlvrExamples.BlipMaxWords);
        Assert.False(evaluation.Swapped);
        Assert.Equal(0, evaluation.Target);
        Assert.Equal("l.png", evaluation.First.Name);
        Assert.Equal("there are two objects in the right image", evaluation.Sentence);
        Assert.Equal("there is a", NlvrExamples.ForEvaluation(Item("There is a red circle", true), 3).Sentence); // max_words
    }

    [Fact]
    public void TheSwapsOfABatchFollowFromTheBatchSeedAndSlot()
    {
        var items = Enumerable.Range(0, 64).Select(i => Item($"there is a circle in the left image {i}", i % 2 == 0)).ToList();
        var indices = Enumerable.Range(0, 64).Reverse().ToArray();
        var a = NlvrBatches.TrainingExamples(items, new SampleBatchRequest(indices, new LoaderPosition(0, 0), 1234), 40);
        var again = NlvrBatches.TrainingExamples(items, new SampleBatchRequest(indices, new LoaderPosition(0, 0), 1234), 40);
        var other = NlvrBatches.TrainingExamples(items, new SampleBatchRequest(indices, new LoaderPosition(0, 1), 4321), 40);
        Assert.Equal(a.Select(e => e.Swapped), again.Select(e => e.Swapped));
        Assert.NotEqual(a.Select(e => e.Swapped), other.Select(e => e.Swapped));
        Assert.Equal(indices.Select(i => items[i]), a.Select(e => e.Item)); // batch order is the request's order
        Assert.InRange(a.Count(e => e.Swapped), 16, 48);
    }

    [Fact]
    public void ABatchHoldsTheFirstAndSecondImagesInTheOrderTheModelReadsThem()
    {
        string red = Solid("red.png", 255, 0, 0), blue = Solid("blue.png", 0, 0, 255);
        string annotation = Path.Combine(_dir, "nlvr.json");
        File.WriteAllText(annotation, $$"""
            [{"images": ["{{red}}", "{{blue}}"], "sentence": "there is a red square in the left image", "label": "True"},
             {"images": ["{{red}}", "{{blue}}"], "sentence": "there are two objects in the right image", "label": "False"}]
            """);
        var items = NlvrAnnotations.Load(annotation);
        var tokenizer = BlipTokenizer.FromPretrained(Tokenizer());
        var examples = new[]
        {
            NlvrExamples.ForEvaluation(items[0], 40),
            NlvrExamples.ForEvaluation(items[1], 40) with { First = items[1].Right, Second = items[1].Left, Swapped = true },
        };
        using var batch = NlvrBatches.Build(examples, new BlipEvalTransform(4), _ => new Random(0), tokenizer, NlvrBatches.TextOptions(64), new LoaderPosition(2, 3));
        Assert.Equal(new long[] { 2, 3, 4, 4 }, batch.Batch.PixelValues0.shape);
        Assert.Equal(new long[] { 2, 3, 4, 4 }, batch.Batch.PixelValues1.shape);
        Assert.Equal(new long[] { 1, 0 }, batch.Batch.Targets.data<long>().ToArray());
        Assert.Equal(new LoaderPosition(2, 3), batch.Position);
        // Red is (1 - 0.48145466) / 0.26862954 = 1.93 in the R plane and below zero in B; blue the other way round.
        Assert.True(batch.Batch.PixelValues0[0, 0].mean().ToSingle() > 1.5f && batch.Batch.PixelValues0[0, 2].mean().ToSingle() < 0f, "row 0, first image: red");
        Assert.True(batch.Batch.PixelValues1[0, 2].mean().ToSingle() > 1.5f, "row 0, second image: blue");
        Assert.True(batch.Batch.PixelValues0[1, 2].mean().ToSingle() > 1.5f, "row 1 (swapped), first image: blue");
        Assert.True(batch.Batch.PixelValues1[1, 0].mean().ToSingle() > 1.5f, "row 1 (swapped), second image: red");
        // padding='longest': [CLS] w1..w9 [SEP] for the longer sentence, the other padded.
        Assert.Equal(2, batch.Batch.InputIds.shape[0]);
        Assert.Equal(11, batch.Batch.InputIds.shape[1]);
        Assert.Equal(tokenizer.ClsTokenId, batch.Batch.InputIds[0, 0].ToInt64());
        Assert.Equal(new long[] { 11, 10 }, batch.Batch.AttentionMask.sum(1).data<long>().ToArray());
    }

    [Fact]
    public void AnImageThatCannotBeReadIsNamedWithItsAnnotationRecord()
    {
        var item = new NlvrItem(ImageSource.FromFile(Path.Combine(_dir, "missing.png")), ImageSource.FromFile(Path.Combine(_dir, "missing2.png")),
            "there is a circle", true, "train.json", "record 7");
        var tokenizer = BlipTokenizer.FromPretrained(Tokenizer());
        var e = Assert.Throws<InvalidDataException>(() =>
            NlvrBatches.Build([NlvrExamples.ForEvaluation(item, 40)], new BlipEvalTransform(4), _ => new Random(0), tokenizer, NlvrBatches.TextOptions(64), default));
        Assert.Contains("train.json: record 7", e.Message);
        Assert.Contains("missing.png", e.Message);
    }

    /// <summary>A tiny nlvr recipe: the tiny architecture of configs/nlvr-tiny.json with this test's files.</summary>
    private TrainingConfig Recipe(params string[] overrides)
    {
        var all = new List<string>
        {
            $"data.train_files=[\"{Path.Combine(_dir, "train.json")}\"]",
            $"model.tokenizer={Tokenizer()}",
            $"model.init={Path.Combine(_dir, "no-such-checkpoint")}",
            $"evaluation.splits={{\"test\": {{\"annotation\": \"{Path.Combine(_dir, "test.json")}\"}}}}",
        };
        all.AddRange(overrides);
        return TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "nlvr-tiny.json"), all);
    }

    private EvaluationRequest Request(string split = "test") => new() { Split = split, OutputDirectory = Path.Combine(_dir, "eval") };

    [Fact]
    public void TheRecipesReadAsNlvrRecipes()
    {
        foreach (string name in new[] { "nlvr.json", "nlvr-tiny.json" })
        {
            var config = TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", name));
            Assert.Equal("nlvr", config.Task);
            Assert.Same(FinetuneTasks.Get("nlvr").GetType(), typeof(NlvrFinetuneTask));
            var recipe = NlvrRecipe.Read(config);
            Assert.Equal(config.Data.ImageSize, recipe.Config.Blip.VisionConfig.ImageSize);
            Assert.Equal(40, config.Data.MaxWords);
        }
        var paper = NlvrRecipe.Read(TrainingConfigLoader.Load(Path.Combine(Fixtures.RepoRoot, "configs", "nlvr.json")));
        Assert.Equal(6, paper.Config.MergeFromLayer);
        Assert.Equal(30523, paper.Config.EncTokenId);
        Assert.Equal(768, paper.Config.Blip.VisionConfig.HiddenSize);
        Assert.Equal(384, paper.Config.Blip.VisionConfig.ImageSize);
        Assert.Equal(12, paper.Config.Blip.TextConfig.NumHiddenLayers);
    }

    [Theory]
    [InlineData("model.vision_init=x", "model.vision_init")]
    [InlineData("model.vision_config.patch_sise=4", "model.vision_config.patch_sise")]
    [InlineData("model.text_config.hidden_sise=4", "model.text_config.hidden_sise")]
    [InlineData("model.init=", "model.init")]
    [InlineData("model.merge_from_layer=-1", "model.merge_from_layer")]
    [InlineData("data.image_size=64", "model.vision_config.image_size")]
    [InlineData("evaluation.k_test=4", "evaluation.k_test")]
    [InlineData("evaluation.batch_size=0", "evaluation.batch_size")]
    public void AWrongRecipeKeyIsNamed(string setting, string key)
    {
        var e = Assert.Throws<TrainingConfigException>(() => new NlvrFinetuneTask().Evaluate(Recipe(setting), Request()));
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void AWrongTokenizerIsNamedByTheKeyItContradicts()
    {
        File.WriteAllText(Path.Combine(_dir, "test.json"), """[{"images": ["a.png", "b.png"], "sentence": "there is a circle", "label": "True"}]""");
        var e = Assert.Throws<TrainingConfigException>(() => new NlvrFinetuneTask().Evaluate(Recipe("model.enc_token_id=5"), Request()));
        Assert.Contains("model.enc_token_id", e.Message);
        Assert.Contains("[ENC]", e.Message);
    }

    [Fact]
    public void ASplitTheRecipeLacksOrAMissingAnnotationKeyIsNamed()
    {
        var task = new NlvrFinetuneTask();
        var e = Assert.Throws<TrainingConfigException>(() => task.Evaluate(Recipe(), Request("val")));
        Assert.Contains("has no split 'val' (it has: test)", e.Message);
        e = Assert.Throws<TrainingConfigException>(() => task.Evaluate(Recipe("evaluation.splits={\"test\": {\"image_root\": null}}"), Request()));
        Assert.Contains("evaluation.splits.test.annotation", e.Message);
        e = Assert.Throws<TrainingConfigException>(() => task.Evaluate(Recipe("evaluation.splits={\"test\": {\"annotations\": \"x.json\"}}"), Request()));
        Assert.Contains("evaluation.splits.test.annotations", e.Message);
        var missing = Assert.Throws<FileNotFoundException>(() => task.Evaluate(Recipe(), Request()));
        Assert.Contains("evaluation.splits.test.annotation", missing.Message);
        Assert.Contains("test.json", missing.Message);
    }

    [Theory]
    [InlineData("""{"images": ["a.png"], "sentence": "s", "label": "True"}""", "field 'images' must be a list of two image paths")]
    [InlineData("""{"images": ["a.png", "b.png"], "label": "True"}""", "missing field 'sentence'")]
    [InlineData("""{"images": ["a.png", "b.png"], "sentence": "s", "label": "true"}""", "field 'label' must be \"True\" or \"False\"")]
    public void AMalformedAnnotationRecordIsNamedWithItsFileAndRecord(string bad, string reason)
    {
        string good = """{"images": ["a.png", "b.png"], "sentence": "there is a circle", "label": "True"}""";
        string file = Path.Combine(_dir, "test.json");
        File.WriteAllText(file, $"[{good}, {bad}]");
        var task = new NlvrFinetuneTask();
        var e = Assert.Throws<InvalidDataException>(() => task.Evaluate(Recipe(), Request()));
        Assert.Contains(file, e.Message);
        Assert.Contains("record 1", e.Message);
        Assert.Contains(reason, e.Message);

        // The training file is read the same way.
        File.Copy(file, Path.Combine(_dir, "train.json"));
        var context = new FinetuneContext { RunDirectory = Path.Combine(_dir, "run") };
        e = Assert.Throws<InvalidDataException>(() => task.Train(Recipe(), context));
        Assert.Contains(Path.Combine(_dir, "train.json"), e.Message);
        Assert.Contains("record 1", e.Message);
    }

    [Fact]
    public void AMissingTrainingFileOrCheckpointIsNamedByItsKey()
    {
        var task = new NlvrFinetuneTask();
        var context = new FinetuneContext { RunDirectory = Path.Combine(_dir, "run") };
        var e = Assert.Throws<FileNotFoundException>(() => task.Train(Recipe(), context));
        Assert.Contains("data.train_files", e.Message);
        File.WriteAllText(Path.Combine(_dir, "train.json"), """[{"images": ["a.png", "b.png"], "sentence": "there is a circle", "label": "True"}]""");
        e = Assert.Throws<FileNotFoundException>(() => task.Train(Recipe(), context));
        Assert.Contains("model.init", e.Message);
        Assert.Contains("no-such-checkpoint", e.Message);
    }
}
