using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// Does VQA fine-tuning learn? Through the real CLI on the tiny pretrained world: <c>blip evaluate vqa</c> scores the
/// pretrained model as <c>blip_vqa</c> starts it (its answer decoder is the pretrained captioning decoder, which ranks
/// the 25 candidate answers by how caption-like they are), then <c>blip finetune vqa</c> trains configs/vqa-tiny.json
/// (10 epochs of the world's 640 training questions) and evaluates the test split the same way: official VQA accuracy
/// of the ranked answers on 160 questions (count, colour, shape, where).
/// </summary>
[Collection(TinyPretrainedWorldCollection.Name)]
public sealed class VqaLearningTests(TinyPretrainedWorld tiny, ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Training")]
    public void FineTuningAnswersFarMoreTestQuestionsThanThePretrainedModel()
    {
        string recipe = Path.Combine(Fixtures.RepoRoot, "configs", "vqa-tiny.json");
        string dir = tiny.NewFolder("vqa");
        string[] sets =
        [
            "--set", $"data.train_files=[\"{Path.Combine(tiny.World, "vqa_train.json")}\"]",
            "--set", $"model.init={tiny.Pretrain}",
            "--set", $"model.tokenizer={tiny.Tokenizer}",
            "--set", $"evaluation.answer_list={Path.Combine(tiny.World, "answer_list.json")}",
            "--set", $"evaluation.splits.test.annotation={Path.Combine(tiny.World, "vqa_test.json")}",
            "--set", $"evaluation.splits.test.questions={Path.Combine(tiny.World, "vqa_test_questions.json")}",
            "--set", $"evaluation.splits.test.annotations={Path.Combine(tiny.World, "vqa_test_annotations.json")}",
        ];

        using var baseline = JsonDocument.Parse(TinyPretrainedWorld.Blip(["evaluate", "vqa", "--config", recipe, .. sets, "--out", Path.Combine(dir, "baseline"), "--threads", "1", "--json"]));
        using var finetuned = JsonDocument.Parse(TinyPretrainedWorld.Blip(["finetune", "vqa", "--config", recipe, .. sets, "--out", Path.Combine(dir, "run"), "--threads", "1", "--json"]));
        var before = baseline.RootElement;
        var after = finetuned.RootElement.GetProperty("evaluation");
        output.WriteLine($"pretrained: {before.GetProperty("metrics")}; fine-tuned: {after.GetProperty("metrics")}");

        Assert.True(finetuned.RootElement.GetProperty("completed").GetBoolean());
        Assert.Equal(400, finetuned.RootElement.GetProperty("step").GetInt32());           // 10 epochs of 40 batches of 16
        Assert.Equal("overall", before.GetProperty("primary_metric").GetString());
        Assert.Equal("overall", after.GetProperty("primary_metric").GetString());
        Assert.Equal(160, after.GetProperty("metrics").GetProperty("questions").GetInt32());
        double pretrained = before.GetProperty("primary").GetDouble(), trained = after.GetProperty("primary").GetDouble();
        // Measured (seed 42): pretrained 3.13 (it ranks "top"/"bottom" first for every question), fine-tuned 42.5 (count
        // 78 %, where 41 %, shape 31 %, colour 28 %; number 77.78, other 32.26); seed 7: 37.5. Generating instead of
        // ranking gives the same 42.5.
        Assert.InRange(pretrained, 0, 10);
        Assert.InRange(trained, pretrained + 20, 100);
    }
}
