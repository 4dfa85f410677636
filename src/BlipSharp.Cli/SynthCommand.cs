using System.CommandLine;
using System.Globalization;
using BlipSharp.Training.Synthetic;

namespace BlipSharp.Cli;

/// <summary><c>blip synth --out DIR</c>: writes the seeded synthetic shapes world (images, captions, splits, VQA).</summary>
internal static class SynthCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var defaults = new SyntheticWorldOptions();
        var outDir = new Option<string>("--out", "-o") { Description = "Folder to write the world into (created if needed).", Required = true };
        var seed = new Option<int>("--seed") { Description = "Seed; the same seed and options give byte-identical files.", DefaultValueFactory = _ => defaults.Seed };
        var noise = new Option<double>("--noise") { Description = "Fraction of pretraining captions that are wrong (wrong attribute, unrelated, file name, spam).", DefaultValueFactory = _ => defaults.NoiseFraction };
        var size = new Option<int>("--size") { Description = "Image side in pixels (at least 16).", DefaultValueFactory = _ => defaults.ImageSize };
        var pretrain = new Option<int>("--pretrain-images") { Description = "Images of the noisy pretraining split.", DefaultValueFactory = _ => defaults.PretrainImages };
        var human = new Option<int>("--human-images") { Description = "Images of the clean human-annotated split.", DefaultValueFactory = _ => defaults.HumanImages };
        var val = new Option<int>("--val-images") { Description = "Images of the validation split.", DefaultValueFactory = _ => defaults.ValImages };
        var test = new Option<int>("--test-images") { Description = "Images of the test split.", DefaultValueFactory = _ => defaults.TestImages };
        var vqa = new Option<int>("--vqa-images") { Description = "Images with VQA questions.", DefaultValueFactory = _ => defaults.VqaImages };
        var classify = new Option<int>("--classify-images") { Description = "Single-object images labelled with their shape (classify.json), to pretrain the ViT on.", DefaultValueFactory = _ => defaults.ClassifyImages };
        var nlvr = new Option<int>("--nlvr-pairs") { Description = "Image pairs with NLVR2-style statements (one true, one false each).", DefaultValueFactory = _ => defaults.NlvrPairs };
        var videos = new Option<int>("--video-clips") { Description = "Video clips (frame folders) with a caption each, for zero-shot video-text retrieval (video_test.jsonl).", DefaultValueFactory = _ => defaults.VideoClips };
        var shards = new Option<bool>("--shards") { Description = "Also write the pretraining split as WebDataset .tar shards." };
        var json = new Option<bool>("--json") { Description = "Print the summary as one JSON object." };
        var command = new Command("synth", "Write a synthetic image-text world to train on: noisy pretraining pairs, clean splits, VQA, NLVR2-style pairs, video clips.")
        {
            outDir, seed, noise, size, pretrain, human, val, test, vqa, classify, nlvr, videos, shards, json,
        };
        command.SetAction(result =>
        {
            if (result.GetValue(size) < 16) throw new CliException($"--size must be at least 16 pixels, got {result.GetValue(size)}.");
            if (!(result.GetValue(noise) is >= 0 and <= 1)) throw new CliException($"--noise must be within 0..1, got {result.GetValue(noise).ToString(CultureInfo.InvariantCulture)}.");
            foreach (var count in new[] { pretrain, human, val, test, vqa, classify, nlvr })
                if (result.GetValue(count) < 0) throw new CliException($"{count.Name} cannot be negative, got {result.GetValue(count)}.");
            var options = new SyntheticWorldOptions
            {
                Seed = result.GetValue(seed),
                NoiseFraction = result.GetValue(noise),
                ImageSize = result.GetValue(size),
                PretrainImages = result.GetValue(pretrain),
                HumanImages = result.GetValue(human),
                ValImages = result.GetValue(val),
                TestImages = result.GetValue(test),
                VqaImages = result.GetValue(vqa),
                ClassifyImages = result.GetValue(classify),
                NlvrPairs = result.GetValue(nlvr),
                VideoClips = result.GetValue(videos),
                WriteShards = result.GetValue(shards),
            };
            string dir = result.GetValue(outDir)!;
            SyntheticWorldSummary summary;
            try
            {
                summary = SyntheticWorld.Generate(dir, options);
            }
            catch (ArgumentException e)
            {
                throw new CliException(Flagged(e));
            }
            if (result.GetValue(json))
            {
                output.WriteLine(CommonOptions.ToJson(new
                {
                    directory = summary.Directory,
                    seed = options.Seed,
                    image_size = options.ImageSize,
                    images = summary.Images.ToDictionary(kv => kv.Key.ToString().ToLowerInvariant(), kv => kv.Value),
                    pretrain_noisy = summary.PretrainNoisy,
                    noise = summary.NoiseCounts.Where(kv => kv.Key != NoiseKind.None).ToDictionary(kv => Snake(kv.Key), kv => kv.Value),
                    vqa_questions = new { train = summary.VqaTrainQuestions, test = summary.VqaTestQuestions },
                    nlvr_items = new { train = summary.NlvrTrainItems, test = summary.NlvrTestItems },
                    video_clips = summary.VideoClips,
                    files = summary.Files,
                }));
                return BlipCli.Success;
            }
            var images = summary.Images;
            int pretrainCount = images[SyntheticSplit.Pretrain];
            string noiseParts = string.Join(", ", summary.NoiseCounts.Where(kv => kv.Key != NoiseKind.None).Select(kv => $"{Snake(kv.Key).Replace('_', ' ')} {kv.Value}"));
            output.WriteLine($"synthetic world in {summary.Directory} (seed {options.Seed}, {options.ImageSize} px)");
            output.WriteLine($"  pretrain: {pretrainCount} images, {summary.PretrainNoisy} noisy captions{(summary.PretrainNoisy > 0 ? $" ({noiseParts})" : "")}");
            output.WriteLine($"  human: {images[SyntheticSplit.Human]} images; val: {images[SyntheticSplit.Val]}; test: {images[SyntheticSplit.Test]}");
            output.WriteLine($"  vqa: {images[SyntheticSplit.Vqa]} images, {summary.VqaTrainQuestions} train / {summary.VqaTestQuestions} test questions");
            output.WriteLine($"  classify: {images[SyntheticSplit.Classify]} single-object images labelled with their shape");
            output.WriteLine($"  nlvr: {images[SyntheticSplit.Nlvr] / 2} image pairs, {summary.NlvrTrainItems} train / {summary.NlvrTestItems} test statements");
            output.WriteLine($"  video: {summary.VideoClips} clips of {options.VideoFrames} frames, one caption each");
            output.WriteLine($"  files: {string.Join(", ", summary.Files)}");
            return BlipCli.Success;
        });
        return command;
    }

    private static string Snake(NoiseKind kind) => kind switch
    {
        NoiseKind.WrongAttribute => "wrong_attribute",
        NoiseKind.FileName => "file_name",
        _ => kind.ToString().ToLowerInvariant(),
    };

    /// <summary>The options' validation message with the command-line flag it concerns.</summary>
    private static string Flagged(ArgumentException e)
    {
        string message = e.Message;
        int cut = message.IndexOf(" (Parameter", StringComparison.Ordinal);
        if (cut >= 0) message = message[..cut];
        string? flag = e.ParamName switch
        {
            "ImageSize" => "--size",
            "NoiseFraction" => "--noise",
            "PretrainImages" => "--pretrain-images",
            "HumanImages" => "--human-images",
            "ValImages" => "--val-images",
            "TestImages" => "--test-images",
            "VqaImages" => "--vqa-images",
            "ClassifyImages" => "--classify-images",
            "NlvrPairs" => "--nlvr-pairs",
            "NlvrTestFraction" => "--nlvr-pairs",
            "VideoClips" => "--video-clips",
            _ => null,
        };
        return flag is null ? message : string.Create(CultureInfo.InvariantCulture, $"{flag}: {message}");
    }
}
