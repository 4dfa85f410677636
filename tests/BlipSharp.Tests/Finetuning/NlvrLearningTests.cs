using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// Does NLVR fine-tuning learn? The tiny pretrained model of <see cref="TinyPretrainedWorld"/> is scored on the world's
/// NLVR test statements with its fresh classification head (the pretrained-only baseline, about chance), then
/// configs/nlvr-tiny.json fine-tunes it on nlvr_train.json and scores it again, both through the real CLI
/// (<c>blip evaluate nlvr</c>, <c>blip finetune nlvr</c>) on one thread.
/// </summary>
[Collection(TinyPretrainedWorldCollection.Name)]
public sealed class NlvrLearningTests(TinyPretrainedWorld tiny, ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Training")]
    public void FineTuningBeatsThePretrainedModelWithItsFreshHead()
    {
        string recipe = Path.Combine(Fixtures.RepoRoot, "configs", "nlvr-tiny.json");
        string[] sets =
        [
            "--set", $"data.train_files=[\"{Path.Combine(tiny.World, "nlvr_train.json")}\"]",
            "--set", $"model.tokenizer={tiny.Tokenizer}",
            "--set", $"model.init={tiny.Pretrain}",
            "--set", $"evaluation.splits.test.annotation={Path.Combine(tiny.World, "nlvr_test.json")}",
        ];
        string folder = tiny.NewFolder("nlvr");

        using var baseline = JsonDocument.Parse(TinyPretrainedWorld.Blip(
            ["evaluate", "nlvr", "--config", recipe, .. sets, "--out", Path.Combine(folder, "baseline"), "--threads", "1", "--json"]));
        using var finetuned = JsonDocument.Parse(TinyPretrainedWorld.Blip(
            ["finetune", "nlvr", "--config", recipe, .. sets, "--out", Path.Combine(folder, "run"), "--threads", "1", "--json"]));

        var before = baseline.RootElement.GetProperty("metrics");
        var run = finetuned.RootElement;
        Assert.True(run.GetProperty("completed").GetBoolean());
        var after = run.GetProperty("evaluation").GetProperty("metrics");
        double accuracyBefore = before.GetProperty("accuracy").GetDouble(), accuracyAfter = after.GetProperty("accuracy").GetDouble();
        output.WriteLine($"accuracy before {accuracyBefore:F2} % ({before.GetProperty("predicted_true").GetDouble()} predicted true), "
            + $"after {accuracyAfter:F2} % ({after.GetProperty("predicted_true").GetDouble()} predicted true), last loss {run.GetProperty("last_loss").GetDouble():F4}");

        Assert.Equal(120, before.GetProperty("total").GetDouble());                       // the world's 60 test pairs, a true and a false statement each
        Assert.Equal(120, after.GetProperty("total").GetDouble());
        Assert.Equal(60, after.GetProperty("label_true").GetDouble());
        Assert.True(File.Exists(run.GetProperty("evaluation").GetProperty("results").GetString()), "the predictions file");
        // Measured on this world (seed 1) with the recipe's seed 42: 43.33 % before, 55.83 % after (last loss ~0.6); recipe
        // seeds 7 and 3: 48.33 % and 49.17 % before, 56.67 % and 55.83 % after (gains of 6.7 to 12.5 points, 8 to 15 statements).
        // The 480 training statements are the limit: 40 epochs (at lr 1e-3) reach 85 % training accuracy and 50.8 % on test.
        Assert.InRange(accuracyBefore, 35.0, 60.0);                                          // a fresh head: about chance (50 %)
        Assert.InRange(accuracyAfter, 53.0, 100.0);
        Assert.True(accuracyAfter >= accuracyBefore + 4.0, $"fine-tuning reached {accuracyAfter:F2} %, the pretrained model {accuracyBefore:F2} %");
    }
}
