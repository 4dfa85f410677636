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
/// <c>blip evaluate-synth</c> prints). Thresholds are measured values with margin (bench/RESULTS.md, "Fifth round"):
/// retrieval far above chance, and captions whose first named object has the right colour and shape, together, for most
/// test images.
/// </summary>
[Collection(TinyPretrainedWorldCollection.Name)]
public sealed class PretrainLearningTests(TinyPretrainedWorld tiny, ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Training")]
    public void TheTinyRecipeLearnsRetrievalAndCaptionsNamingTheRightColourAndShape()
    {
        string world = tiny.World, run = tiny.Pretrain;
        var result = SyntheticEvaluation.EvaluateRun(run, Path.Combine(world, "test.json"));
        output.WriteLine($"image->text R@1 {result.ImageToTextR1:P1} R@5 {result.ImageToTextR5:P1}, text->image R@1 {result.TextToImageR1:P1}, "
            + $"chance {result.ChanceImageToTextR1:P1}; captions right {result.CaptionAccuracy:P1}, right colour {result.ColourAccuracy:P1}, right shape {result.ShapeAccuracy:P1}, both {result.ObjectAccuracy:P1}");
        foreach (var c in result.Captions.Take(5)) output.WriteLine($"{c.ImageId}: {c.Caption}");

        Assert.Equal(200, result.Images);
        Assert.Equal(0.005, result.ChanceImageToTextR1, 1e-9);                           // one of 200 images' 5 captions
        // Measured on this world (seed 1): 23 %, 6.6 %, 89.5 %, 80.5 %, 68 %; worlds of seeds 2 and 3 (their own ViT stages):
        // 19.5 % and 5 %, 3.7 % and 1.3 %, 80.5 % and 69 %, 69.5 % and 89.5 %, 50.5 % and 55.5 %.
        // The recipe before (2,000 images, 12 epochs, stretched crops of 0.8-1.0) on seed 1: 30 %, 9.8 %, 88.5 %, 46.5 %, 38 %.
        Assert.InRange(result.ImageToTextR1, 0.15, 1.0);  // chance 0.5 %
        Assert.InRange(result.TextToImageR1, 0.04, 1.0);  // chance 0.5 %
        Assert.InRange(result.ColourAccuracy, 0.75, 1.0); // chance 1 in 8
        Assert.InRange(result.ShapeAccuracy, 0.65, 1.0);  // chance 1 in 7
        Assert.InRange(result.ObjectAccuracy, 0.55, 1.0); // most test images
    }
}
