using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// Does fine-tuning learn? Each test scores the tiny pretrained model on the synthetic world's clean test split with
/// <c>blip evaluate TASK</c> (the pretrained-only baseline), fine-tunes it on the world's 400 clean captions
/// (<c>human_train.json</c>) with <c>blip finetune TASK --config configs/TASK-tiny.json</c> (which evaluates the result on
/// the same split), and asserts the fine-tuned primary metric beats the baseline by a margin below the measured gain.
/// </summary>
[Collection(TinyPretrainedWorldCollection.Name)]
public sealed class RetrievalCaptionLearningTests(TinyPretrainedWorld tiny, ITestOutputHelper output)
{
    private string[] Paths(string task)
    {
        var sets = new List<string>
        {
            "--set", $"model.init={tiny.Pretrain}",
            "--set", $"model.tokenizer={tiny.Tokenizer}",
            "--set", $"data.train_files=[\"{Path.Combine(tiny.World, "human_train.json")}\"]",
            "--set", $"evaluation.splits.test.annotation={Path.Combine(tiny.World, "test.json")}",
        };
        if (task == "caption") sets.AddRange(["--set", $"evaluation.splits.test.gt={Path.Combine(tiny.World, "test_gt.json")}"]);
        return [.. sets];
    }

    private static string Recipe(string task) => Path.Combine(Fixtures.RepoRoot, "configs", $"{task}-tiny.json");

    /// <summary>The baseline's and the fine-tuned run's evaluation objects (the verbs' --json output).</summary>
    private (JsonObject Baseline, JsonObject Finetuned, string Run) BaselineThenFinetune(string task)
    {
        string dir = tiny.NewFolder(task);
        var baseline = JsonNode.Parse(TinyPretrainedWorld.Blip(
            ["evaluate", task, "--config", Recipe(task), .. Paths(task), "--out", Path.Combine(dir, "baseline"), "--threads", "1", "--json"]))!.AsObject();
        string run = Path.Combine(dir, "run");
        var trained = JsonNode.Parse(TinyPretrainedWorld.Blip(
            ["finetune", task, "--config", Recipe(task), .. Paths(task), "--out", run, "--threads", "1", "--json"]))!.AsObject();
        Assert.True(trained["completed"]!.GetValue<bool>());
        var finetuned = trained["evaluation"]!.AsObject();
        output.WriteLine($"{task} baseline: {baseline["metrics"]!.ToJsonString()}");
        output.WriteLine($"{task} fine-tuned: {finetuned["metrics"]!.ToJsonString()}");
        return (baseline, finetuned, run);
    }

    [Fact]
    [Trait("Category", "Training")]
    public void RetrievalFinetuningRaisesTheMeanRecallOfThePretrainedModel()
    {
        var (baseline, finetuned, _) = BaselineThenFinetune("retrieval");
        Assert.Equal("r_mean", finetuned["primary_metric"]!.GetValue<string>());
        double before = baseline["primary"]!.GetValue<double>(), after = finetuned["primary"]!.GetValue<double>();
        // Measured on the fixture's world (seed 1, 1 thread): r_mean 39.7 before (txt_r1 28.5, img_r1 14.8), 49.8 after
        // (txt_r1 34.5, img_r1 21.7); with --set seed=7 51.75. BLIP's crop scale 0.5 instead of 0.9: 43.7 (seed 42),
        // 41.1 (seed 7, 6 epochs).
        Assert.InRange(before, 20, 60);
        Assert.InRange(after - before, 5, 100);

        // The result file: every image's k_test texts and every text's k_test images, best first.
        var results = JsonNode.Parse(File.ReadAllText(finetuned["results"]!.GetValue<string>()))!.AsObject();
        var images = results["images"]!.AsArray();
        var texts = results["texts"]!.AsArray();
        Assert.Equal(200, images.Count);
        Assert.Equal(1000, texts.Count);
        Assert.Equal(16, results["k_test"]!.GetValue<int>());
        foreach (var image in images)
        {
            var scores = image!["scores"]!.AsArray().Select(s => s!.GetValue<double>()).ToList();
            Assert.Equal(16, image["texts"]!.AsArray().Count);
            Assert.Equal(scores.OrderByDescending(s => s).ToList(), scores);
        }
        Assert.Equal("test_000000", images[0]!["image_id"]!.GetValue<string>());
        Assert.Equal(0, texts[0]!["image"]!.GetValue<int>());
        Assert.All(texts, t => Assert.Equal(16, t!["images"]!.AsArray().Count));
    }

    [Fact]
    [Trait("Category", "Training")]
    public void CaptionFinetuningRaisesTheCiderOfThePretrainedModel()
    {
        var (baseline, finetuned, run) = BaselineThenFinetune("caption");
        Assert.Equal("CIDEr", finetuned["primary_metric"]!.GetValue<string>());
        double before = baseline["primary"]!.GetValue<double>(), after = finetuned["primary"]!.GetValue<double>();
        // Measured on the fixture's world (seed 1, 1 thread): CIDEr 1.390 before (Bleu_4 0.216), 2.137 after (Bleu_4
        // 0.371); with --set seed=7 2.103. BLIP's crop scale 0.5 instead of 0.9: 1.987 and 1.978.
        Assert.InRange(before, 0.5, 2.0);
        Assert.InRange(after - before, 0.4, 10);
        Assert.True(finetuned["metrics"]!["Bleu_4"]!.GetValue<double>() > baseline["metrics"]!["Bleu_4"]!.GetValue<double>());

        var captions = JsonNode.Parse(File.ReadAllText(finetuned["results"]!.GetValue<string>()))!.AsArray();
        Assert.Equal(200, captions.Count);
        Assert.Equal("test_000000", captions[0]!["image_id"]!.GetValue<string>());
        Assert.All(captions, c => Assert.False(string.IsNullOrWhiteSpace(c!["caption"]!.GetValue<string>())));

        // A NoCaps-style split ({image, img_id}, no captions, no ground truth): captions are written, not scored.
        string nocaps = Path.Combine(tiny.NewFolder("nocaps"), "nocaps_val.json");
        File.WriteAllText(nocaps, JsonSerializer.Serialize(Enumerable.Range(0, 20)
            .Select(i => new { image = Path.Combine(tiny.World, "images", "test", $"{i:D6}.png"), img_id = 1000 + i })));
        var unscored = JsonNode.Parse(TinyPretrainedWorld.Blip(["evaluate", "caption", "--config", Recipe("caption"), .. Paths("caption"),
            "--set", $"evaluation.splits.nocaps={{\"annotation\": \"{nocaps}\"}}", "--split", "nocaps", "--weights", run,
            "--out", Path.Combine(run, "eval-nocaps"), "--threads", "1", "--json"]))!.AsObject();
        Assert.Equal("captions", unscored["primary_metric"]!.GetValue<string>());
        Assert.Equal(20, unscored["primary"]!.GetValue<double>());
        var written = JsonNode.Parse(File.ReadAllText(unscored["results"]!.GetValue<string>()))!.AsArray();
        Assert.Equal(Enumerable.Range(1000, 20), written.Select(c => c!["image_id"]!.GetValue<int>()));
    }
}
