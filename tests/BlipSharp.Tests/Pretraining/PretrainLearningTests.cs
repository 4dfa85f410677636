using BlipSharp.Cli;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Evaluation;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// Does pretraining learn? configs/pretrain-tiny.json, trained from scratch by the real <c>blip pretrain</c> on a world
/// that <c>blip synth</c> writes, scored on the world's clean test split by <see cref="SyntheticEvaluation"/>
/// (what <c>blip evaluate-synth</c> prints). The thresholds are about half the worst of three seeds measured (see
/// bench/RESULTS.md, "Pretraining on the synthetic world"), and far above what an untrained model scores. Shapes and
/// positions are not asserted because they are not learned: the shape in the captions is at chance (1 in 7) in every run
/// measured, including one four times as long (issue 4 stays open on it).
/// </summary>
public sealed class PretrainLearningTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-learn-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<string> Blip(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await BlipCli.RunAsync(args, stdout, stderr);
        Assert.True(code == 0, $"blip {string.Join(" ", args)} exited with {code}: {stderr}");
        return stdout.ToString();
    }

    [Fact]
    [Trait("Category", "Training")]
    public async Task TheTinyRecipeLearnsRetrievalAndColoursFromScratch()
    {
        string world = Path.Combine(_dir, "world"), run = Path.Combine(_dir, "run");
        await Blip("synth", "--out", world, "--size", "32", "--noise", "0.2", "--seed", "1");
        await Blip("pretrain", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json"), "--out", run, "--threads", "1",
            "--set", $"data.train_files=[\"{Path.Combine(world, "pretrain.json")}\"]",
            "--set", $"model.tokenizer={Path.Combine(world, "tokenizer")}",
            "--set", "output.checkpoint_every=0", "--set", "output.keep_checkpoints=1");

        var result = SyntheticEvaluation.EvaluateRun(run, Path.Combine(world, "test.json"));
        output.WriteLine($"image->text R@1 {result.ImageToTextR1:P1} R@5 {result.ImageToTextR5:P1}, text->image R@1 {result.TextToImageR1:P1}, "
            + $"chance {result.ChanceImageToTextR1:P1}; captions right {result.CaptionAccuracy:P1}, right colour {result.ColourAccuracy:P1}, right shape {result.ShapeAccuracy:P1}");
        foreach (var c in result.Captions.Take(5)) output.WriteLine($"{c.ImageId}: {c.Caption}");

        Assert.Equal(200, result.Images);
        Assert.Equal(0.005, result.ChanceImageToTextR1, 1e-9);                           // one of 200 images' 5 captions
        Assert.InRange(result.ImageToTextR1, 0.04, 1.0);  // measured 9.5 %, 20 %, 14.5 % (seeds 1, 2, 3); chance 0.5 %
        Assert.InRange(result.TextToImageR1, 0.02, 1.0);  // measured 14.4 %, 14 %, 4.0 %; chance 0.5 %
        Assert.InRange(result.ColourAccuracy, 0.60, 1.0); // measured 95 %, 91.5 %, 85.5 %; chance 1 in 8
    }
}
