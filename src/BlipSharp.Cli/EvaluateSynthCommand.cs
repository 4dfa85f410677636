using System.CommandLine;
using System.Globalization;
using BlipSharp.Generation;
using BlipSharp.Training.Evaluation;
using BlipSharp.Training.Training;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip evaluate-synth --run DIR --test FILE</c>: scores the newest checkpoint of a <c>blip pretrain</c> run on the
/// synthetic world's test split (<see cref="SyntheticEvaluation"/>): ITC retrieval recall and caption accuracy.
/// </summary>
internal static class EvaluateSynthCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var run = new Option<string>("--run", "-r") { Description = "Run folder written by blip pretrain (config.json, checkpoints/).", Required = true };
        var test = new Option<string>("--test", "-t") { Description = "The synthetic world's test.json (blip synth).", Required = true };
        var images = new Option<int?>("--images") { Description = "Evaluate only the first N test images." };
        var beams = new Option<int>("--beams") { Description = "Beams for the captions (1: greedy).", DefaultValueFactory = _ => 1 };
        var show = new Option<int>("--show") { Description = "Print this many captions with their verdicts.", DefaultValueFactory = _ => 5 };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads (default: libtorch's choice)." };
        var json = new Option<bool>("--json") { Description = "Print the scores (and every caption) as one JSON object." };
        var command = new Command("evaluate-synth", "Score a pretraining run on the synthetic test split: image-text retrieval R@1/R@5 and caption accuracy.")
        {
            run, test, images, beams, show, threads, json,
        };
        command.SetAction(result =>
        {
            if (result.GetValue(threads) is int n)
            {
                if (n < 1) throw new CliException($"--threads must be at least 1, got {n}.");
                TorchSharp.torch.set_num_threads(n);
            }
            int beamCount = result.GetValue(beams);
            if (beamCount < 1) throw new CliException($"--beams must be at least 1, got {beamCount}.");
            if (result.GetValue(images) is < 1) throw new CliException($"--images must be at least 1, got {result.GetValue(images)}.");
            var options = new SyntheticEvaluationOptions
            {
                MaxImages = result.GetValue(images),
                Generation = beamCount == 1 ? GenerationOptions.Greedy : GenerationOptions.BeamSearch with { NumBeams = beamCount },
            };
            SyntheticEvaluationResult scores;
            try
            {
                scores = SyntheticEvaluation.EvaluateRun(result.GetValue(run)!, result.GetValue(test)!, options);
            }
            catch (Exception e) when (e is FileNotFoundException or InvalidDataException or TrainingConfigException)
            {
                throw new CliException(e.Message);
            }
            if (result.GetValue(json))
            {
                output.WriteLine(CommonOptions.ToJson(new
                {
                    images = scores.Images,
                    texts = scores.Texts,
                    image_to_text_r1 = scores.ImageToTextR1,
                    image_to_text_r5 = scores.ImageToTextR5,
                    text_to_image_r1 = scores.TextToImageR1,
                    chance_image_to_text_r1 = scores.ChanceImageToTextR1,
                    caption_accuracy = scores.CaptionAccuracy,
                    colour_accuracy = scores.ColourAccuracy,
                    shape_accuracy = scores.ShapeAccuracy,
                    object_accuracy = scores.ObjectAccuracy,
                    captions = scores.Captions.Select(c => new { image_id = c.ImageId, caption = c.Caption, objects = c.Objects.Select(o => o.ToString()), correct = c.Correct }),
                }));
                return BlipCli.Success;
            }
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{scores.Images} images, {scores.Texts} captions: image->text R@1 {scores.ImageToTextR1:P1} (chance {scores.ChanceImageToTextR1:P1}), R@5 {scores.ImageToTextR5:P1}; text->image R@1 {scores.TextToImageR1:P1}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"captions naming the right colour and shape: {scores.CaptionAccuracy:P1} ({scores.Captions.Count(c => c.Correct)}/{scores.Captions.Count}); the right colour: {scores.ColourAccuracy:P1}, the right shape: {scores.ShapeAccuracy:P1}, "
                + $"both for the first object named: {scores.ObjectAccuracy:P1}"));
            foreach (var c in scores.Captions.Take(Math.Max(0, result.GetValue(show))))
                output.WriteLine($"  {c.ImageId}: \"{c.Caption}\" ({(c.Correct ? "right" : "wrong")}; the image has {string.Join(" and ", c.Objects)})");
            return BlipCli.Success;
        });
        return command;
    }
}
