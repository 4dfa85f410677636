using System.CommandLine;
using BlipSharp.Generation;
using BlipSharp.Pipelines;
using BlipSharp.Processing;

namespace BlipSharp.Cli;

/// <summary><c>blip caption IMG...</c>: captions files, folders and globs in batches.</summary>
internal static class CaptionCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var common = new CommonOptions(Captioner.DefaultModel);
        var images = new Argument<string[]>("images") { Description = "Image files, folders (searched recursively) or glob patterns such as 'photos/**/*.jpg'.", Arity = ArgumentArity.OneOrMore };
        var gen = new GenerationArguments(defaultBeams: 3, defaultMinLength: 5, defaultMaxLength: 20);
        var numCaptions = new Option<int>("--num-captions", "-n") { Description = "Captions per image (beam search needs --beams at least this many).", DefaultValueFactory = _ => 1 };
        var prompt = new Option<string?>("--prompt") { Description = "Conditional captioning prompt, e.g. \"a picture of\"; the printed caption is its continuation." };
        var command = new Command("caption", "Caption images (greedy, beam search or nucleus sampling).") { images, numCaptions, prompt };
        common.AddTo(command);
        gen.AddTo(command);
        command.SetAction(result =>
        {
            var load = common.LoadOptions(result, error);
            var options = new CaptionOptions
            {
                Generation = gen.Options(result) with { NumReturnSequences = result.GetValue(numCaptions) },
                Prompt = result.GetValue(prompt),
                BatchSize = result.GetValue(common.BatchSize),
            };
            GenerationArguments.Validate(options.Generation);
            var files = ImageInputs.Expand(result.GetValue(images)!, out var missing);
            foreach (var m in missing) error.WriteLine($"blip: no image found at '{m}'");
            if (files.Count == 0) throw new CliException("no images to caption.");
            bool json = result.GetValue(common.Json);
            using var captioner = Captioner.FromPretrained(result.GetValue(common.Model)!, load);
            int failed = 0;
            using (var progress = new ProgressBar(error, files.Count, "images", ProgressBar.ShouldDraw(error)))
            {
                foreach (var batch in DecodedBatches.Read(files, options.BatchSize, captioner.Processor.ImageProcessor))
                {
                    foreach (var (file, reason) in batch.Failures)
                    {
                        failed++;
                        error.WriteLine($"blip: skipped {file}: {reason}");
                        if (json) output.WriteLine(CommonOptions.ToJson(new { image = file, error = reason }));
                    }
                    if (batch.Images.Count > 0)
                    {
                        var captions = captioner.Caption(batch.Images, options, batch.Names);
                        foreach (var c in captions) Write(output, c, json);
                    }
                    output.Flush();
                    progress.Advance(batch.Images.Count, batch.Failures.Count);
                }
            }
            return failed + missing.Count > 0 ? BlipCli.SomeInputsFailed : BlipCli.Success;
        });
        return command;
    }

    private static void Write(TextWriter output, CaptionResult result, bool json)
    {
        if (json)
        {
            var best = result.Captions[0];
            output.WriteLine(CommonOptions.ToJson(new
            {
                image = result.Source,
                caption = best.Text,
                ids = best.TokenIds,
                score = best.Score,
                captions = result.Captions.Count > 1 ? result.Captions.Select(c => new { text = c.Text, ids = c.TokenIds, score = c.Score }) : null,
            }));
            return;
        }
        if (result.Captions.Count == 1)
        {
            output.WriteLine($"{result.Source}: {result.Text}");
            return;
        }
        output.WriteLine($"{result.Source}:");
        for (int i = 0; i < result.Captions.Count; i++)
        {
            var c = result.Captions[i];
            output.WriteLine(c.Score is float s ? $"  {i + 1}. {c.Text}  ({s:F3})" : $"  {i + 1}. {c.Text}");
        }
    }
}

/// <summary>Decoding options shared by <c>caption</c> and <c>vqa</c>.</summary>
internal sealed class GenerationArguments
{
    private readonly int _defaultBeams;
    public Option<int?> Beams { get; } = new("--beams") { Description = "Beams for beam search (1: greedy). Default 3, or 1 with --sample." };
    public Option<bool> Sample { get; } = new("--sample") { Description = "Nucleus sampling instead of beam search." };
    public Option<double> TopP { get; } = new("--top-p") { Description = "Sampling: keep the most likely tokens up to this probability mass.", DefaultValueFactory = _ => 0.9 };
    public Option<int> TopK { get; } = new("--top-k") { Description = "Sampling: keep at most this many tokens (0: no limit).", DefaultValueFactory = _ => 50 };
    public Option<double> Temperature { get; } = new("--temperature") { Description = "Sampling temperature.", DefaultValueFactory = _ => 1.0 };
    public Option<double?> RepetitionPenalty { get; } = new("--repetition-penalty") { Description = "Penalty on repeated tokens (default 1.0; 1.1 with --sample, as BLIP)." };
    public Option<int> NoRepeatNgram { get; } = new("--no-repeat-ngram-size") { Description = "Forbid repeating n-grams of this size (0: off).", DefaultValueFactory = _ => 0 };
    public Option<double> LengthPenalty { get; } = new("--length-penalty") { Description = "Beam search: exponent of the length normalisation.", DefaultValueFactory = _ => 1.0 };
    public Option<int> MinLength { get; }
    public Option<int> MaxLength { get; }
    public Option<long?> Seed { get; } = new("--seed") { Description = "Seed for sampling (reproducible captions)." };

    public GenerationArguments(int defaultBeams, int defaultMinLength, int defaultMaxLength)
    {
        _defaultBeams = defaultBeams;
        MinLength = new Option<int>("--min-length") { Description = "Minimum sequence length, counting [DEC] and the prompt (transformers' min_length).", DefaultValueFactory = _ => defaultMinLength };
        MaxLength = new Option<int>("--max-length") { Description = "Maximum sequence length, counting [DEC] and the prompt (transformers' max_length).", DefaultValueFactory = _ => defaultMaxLength };
    }

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Beams, Sample, TopP, TopK, Temperature, RepetitionPenalty, NoRepeatNgram, LengthPenalty, MinLength, MaxLength, Seed })
            command.Options.Add(o);
    }

    private static readonly Dictionary<string, string> Flags = new()
    {
        ["NumBeams"] = "--beams", ["TopP"] = "--top-p", ["TopK"] = "--top-k", ["Temperature"] = "--temperature",
        ["RepetitionPenalty"] = "--repetition-penalty", ["NoRepeatNgramSize"] = "--no-repeat-ngram-size",
        ["LengthPenalty"] = "--length-penalty", ["MinLength"] = "--min-length", ["MaxLength"] = "--max-length",
        ["NumReturnSequences"] = "--num-captions",
    };

    /// <summary>Validates decoding options, reporting a bad value by its command-line flag.</summary>
    public static void Validate(GenerationOptions options)
    {
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            string message = e.Message;
            int cut = message.IndexOf(" (Parameter", StringComparison.Ordinal);
            if (cut >= 0) message = message[..cut];
            string? flag = e.ParamName is not null && Flags.TryGetValue(e.ParamName, out var f) ? f : null;
            throw new CliException(flag is null ? message : $"{flag}: {message}");
        }
    }

    public GenerationOptions Options(ParseResult result)
    {
        bool sample = result.GetValue(Sample);
        return new GenerationOptions
        {
            NumBeams = result.GetValue(Beams) ?? (sample ? 1 : _defaultBeams),
            DoSample = sample,
            TopP = result.GetValue(TopP),
            TopK = result.GetValue(TopK),
            Temperature = result.GetValue(Temperature),
            RepetitionPenalty = result.GetValue(RepetitionPenalty) ?? (sample ? 1.1 : 1.0),
            NoRepeatNgramSize = result.GetValue(NoRepeatNgram),
            LengthPenalty = result.GetValue(LengthPenalty),
            MinLength = result.GetValue(MinLength),
            MaxLength = result.GetValue(MaxLength),
            Seed = result.GetValue(Seed),
        };
    }
}

/// <summary>Images decoded in batches on a background task, one batch ahead of the model.</summary>
internal static class DecodedBatches
{
    public sealed record Batch(List<RgbImage> Images, List<string> Names, List<(string File, string Reason)> Failures);

    public static IEnumerable<Batch> Read(IReadOnlyList<string> files, int batchSize, BlipImageProcessor processor)
    {
        Task<Batch>? next = null;
        for (int start = 0; start < files.Count; start += batchSize)
        {
            var current = next ?? Task.Run(() => Decode(files, start, batchSize, processor));
            int following = start + batchSize;
            next = following < files.Count ? Task.Run(() => Decode(files, following, batchSize, processor)) : null;
            yield return current.GetAwaiter().GetResult();
        }
    }

    private static Batch Decode(IReadOnlyList<string> files, int start, int count, BlipImageProcessor processor)
    {
        var batch = new Batch([], [], []);
        foreach (var file in files.Skip(start).Take(count))
        {
            try
            {
                batch.Images.Add(processor.Decode(file));
                batch.Names.Add(file);
            }
            catch (ImageDecodeException e)
            {
                batch.Failures.Add((file, e.Reason));
            }
        }
        return batch;
    }
}
