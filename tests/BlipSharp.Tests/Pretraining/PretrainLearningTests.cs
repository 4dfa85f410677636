using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Evaluation;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// Does pretraining learn? As BLIP does (its ViT starts from DeiT, trained on ImageNet classes), the tiny ViT is first
/// trained to classify the world's shapes (configs/vit-tiny.json, task classify), then configs/pretrain-tiny.json starts
/// from it (model.vision_init) and learns from the noisy captions; both by the real <c>blip pretrain</c> on a world that
/// <c>blip synth</c> writes, scored on the clean test split by <see cref="SyntheticEvaluation"/> (what
/// <c>blip evaluate-synth</c> prints). Thresholds are measured values with margin (bench/RESULTS.md, "Fourth round").
/// Colours, sizes and positions come from the captions alone; the shape in the captions is above chance but not yet
/// right for most images (issue 4 stays open on it).
/// </summary>
public sealed class PretrainLearningTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-learn-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Blip(params string[] args)
    {
        var (code, stdout, stderr) = CliRunner.Run(args);
        Assert.True(code == 0, $"blip {string.Join(" ", args)} exited with {code}: {stderr}");
        return stdout;
    }

    [Fact]
    [Trait("Category", "Training")]
    public void TheTinyRecipeLearnsRetrievalColoursAndSomeShapeFromAPretrainedViT()
    {
        string world = Path.Combine(_dir, "world"), vit = Path.Combine(_dir, "vit"), run = Path.Combine(_dir, "run");
        Blip("synth", "--out", world, "--size", "32", "--noise", "0.2", "--seed", "1");
        Blip("pretrain", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "vit-tiny.json"), "--out", vit, "--threads", "1",
            "--set", $"data.train_files=[\"{Path.Combine(world, "classify.json")}\"]");
        Blip("pretrain", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json"), "--out", run, "--threads", "1",
            "--set", $"data.train_files=[\"{Path.Combine(world, "pretrain.json")}\"]",
            "--set", $"model.tokenizer={Path.Combine(world, "tokenizer")}", "--set", $"model.vision_init={vit}",
            "--set", "output.checkpoint_every=0", "--set", "output.keep_checkpoints=1");

        var result = SyntheticEvaluation.EvaluateRun(run, Path.Combine(world, "test.json"));
        output.WriteLine($"image->text R@1 {result.ImageToTextR1:P1} R@5 {result.ImageToTextR5:P1}, text->image R@1 {result.TextToImageR1:P1}, "
            + $"chance {result.ChanceImageToTextR1:P1}; captions right {result.CaptionAccuracy:P1}, right colour {result.ColourAccuracy:P1}, right shape {result.ShapeAccuracy:P1}");
        foreach (var c in result.Captions.Take(5)) output.WriteLine($"{c.ImageId}: {c.Caption}");

        Assert.Equal(200, result.Images);
        Assert.Equal(0.005, result.ChanceImageToTextR1, 1e-9);                           // one of 200 images' 5 captions
        // Measured on this world (seed 1), the ViT at 0.3x the lr (train.lr_scales): 30 %, 9.8 %, 88.5 %, 46.5 %; with one
        // lr for all (the recipe before): 35.5 %, 7.1 %, 86 %, 33.5 %. From a ViT trained from scratch (seeds 1, 2, 3):
        // image->text 9.5 %, 20 %, 14.5 %; text->image 14.4 %, 14 %, 4.0 %; colour 95 %, 91.5 %, 85.5 %; shape 12-24 %.
        Assert.InRange(result.ImageToTextR1, 0.20, 1.0);  // chance 0.5 %
        Assert.InRange(result.TextToImageR1, 0.065, 1.0); // chance 0.5 %
        Assert.InRange(result.ColourAccuracy, 0.60, 1.0); // chance 1 in 8
        Assert.InRange(result.ShapeAccuracy, 0.31, 1.0);  // chance 1 in 7
    }
}
