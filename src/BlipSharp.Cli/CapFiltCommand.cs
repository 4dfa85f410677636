using System.CommandLine;
using System.Globalization;
using BlipSharp.Training.CapFilt;
using BlipSharp.Training.Training;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip capfilt --captioner C --filter F --input DATA... --out DIR [--human FILE]... [--shard i/N]</c>: BLIP's
/// captioner + filter over noisy web pairs (<see cref="CapFiltRunner"/>), in committed chunks that a restart with the same
/// command does not redo; with one part it merges at the end. <c>blip capfilt merge DIR... [--out FINAL]</c> checks
/// that the parts of a sharded run cover every record and writes the bootstrapped dataset (<see cref="CapFiltMerge"/>).
/// </summary>
internal static class CapFiltCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var captioner = new Option<string>("--captioner") { Description = "Captioner: a Hugging Face captioning checkpoint (folder or hub id), or a blip finetune caption / blip pretrain run or checkpoint folder.", Required = true };
        var filter = new Option<string>("--filter") { Description = "Filter: a Hugging Face retrieval checkpoint (folder or hub id), or a blip finetune retrieval / blip pretrain run or checkpoint folder.", Required = true };
        var input = new Option<string[]>("--input", "-i") { Description = "Web data: BLIP annotation files (.json list or .jsonl) or WebDataset .tar shards (repeatable).", Required = true, Arity = ArgumentArity.OneOrMore };
        input.AllowMultipleArgumentsPerToken = true;
        var human = new Option<string[]>("--human") { Description = "Human-annotated annotation files passed through into the dataset unfiltered (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        human.AllowMultipleArgumentsPerToken = true;
        var outDir = new Option<string>("--out", "-o") { Description = "Output folder: capfilt.json, chunks/, parts/, then bootstrapped.jsonl, scores.jsonl, issues.jsonl, summary.json.", Required = true };
        var imageRoot = new Option<string?>("--image-root") { Description = "Folder the annotation image paths are relative to (default: each file's folder)." };
        var numCaptions = new Option<int>("--num-captions") { Description = "Synthetic captions per image (BLIP: 1).", DefaultValueFactory = _ => 1 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling mass.", DefaultValueFactory = _ => 0.9 };
        var topK = new Option<int>("--top-k") { Description = "Sampling keeps at most this many tokens (0: no limit).", DefaultValueFactory = _ => 50 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature.", DefaultValueFactory = _ => 1.0 };
        var repetition = new Option<double>("--repetition-penalty") { Description = "Penalty on repeated tokens (BLIP's sampling: 1.1).", DefaultValueFactory = _ => 1.1 };
        var minLength = new Option<int>("--min-length") { Description = "Minimum length counting [DEC] and the prompt (BLIP: 10).", DefaultValueFactory = _ => 10 };
        var maxLength = new Option<int>("--max-length") { Description = "Maximum length counting [DEC] and the prompt (BLIP: 30).", DefaultValueFactory = _ => 30 };
        var prompt = new Option<string?>("--prompt") { Description = "The captioner's prompt (default: the caption run's, or 'a picture of ')." };
        var seed = new Option<long>("--seed") { Description = "Seed of the sampling (each chunk draws its own stream from it).", DefaultValueFactory = _ => 0 };
        var threshold = new Option<double>("--threshold") { Description = "Keep a text when its ITM match probability is at least this (0.5: the ITM argmax).", DefaultValueFactory = _ => 0.5 };
        var itcThreshold = new Option<double?>("--itc-threshold") { Description = "Also require an ITC cosine similarity of at least this." };
        var itmToken = new Option<string>("--itm-token") { Description = "First token of the ITM pass: enc ([ENC], as BLIP trains and evaluates retrieval) or cls (as transformers' examples).", DefaultValueFactory = _ => "enc" };
        var batch = new Option<int>("--batch-size") { Description = "Images per model batch.", DefaultValueFactory = _ => 32 };
        var chunk = new Option<int>("--chunk-size") { Description = "Input records per committed chunk (the unit of resume and sharding).", DefaultValueFactory = _ => 1000 };
        var shard = new Option<string>("--shard") { Description = "Do part i of N (chunks k with k mod N = i), e.g. 0/4; merge the parts with blip capfilt merge.", DefaultValueFactory = _ => "0/1" };
        var decodeThreads = new Option<int?>("--decode-threads") { Description = "Threads decoding images ahead of the models (default: half the cores)." };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads (default: libtorch's choice)." };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object." };
        var command = new Command("capfilt", "Bootstrap a dataset from noisy web pairs: caption every image (nucleus sampling) and keep the web and synthetic texts the ITM filter predicts as matched.")
        {
            captioner, filter, input, human, outDir, imageRoot, numCaptions, topP, topK, temperature, repetition, minLength, maxLength, prompt, seed,
            threshold, itcThreshold, itmToken, batch, chunk, shard, decodeThreads, threads, json,
        };
        command.Subcommands.Add(CreateMerge(output, error));
        command.SetAction(result =>
        {
            CommonTraining.SetThreads(result.GetValue(threads));
            ShardSpec part;
            try
            {
                part = ShardSpec.Parse(result.GetValue(shard)!);
            }
            catch (FormatException e)
            {
                throw new CliException($"--shard: {e.Message}");
            }
            var firstToken = result.GetValue(itmToken)!.ToLowerInvariant() switch
            {
                "enc" => ItmFirstToken.Enc,
                "cls" => ItmFirstToken.Cls,
                var other => throw new CliException($"--itm-token must be enc or cls, got '{other}'."),
            };
            var options = new CapFiltOptions
            {
                Inputs = result.GetValue(input) ?? [],
                Human = result.GetValue(human) ?? [],
                OutputDirectory = result.GetValue(outDir)!,
                ImageRoot = result.GetValue(imageRoot),
                NumCaptions = result.GetValue(numCaptions),
                TopP = result.GetValue(topP),
                TopK = result.GetValue(topK),
                Temperature = result.GetValue(temperature),
                RepetitionPenalty = result.GetValue(repetition),
                MinLength = result.GetValue(minLength),
                MaxLength = result.GetValue(maxLength),
                Prompt = result.GetValue(prompt),
                Seed = result.GetValue(seed),
                Threshold = result.GetValue(threshold),
                ItcThreshold = result.GetValue(itcThreshold),
                BatchSize = result.GetValue(batch),
                ChunkSize = result.GetValue(chunk),
                Shard = part,
                DecodeThreads = result.GetValue(decodeThreads) ?? Math.Max(1, Environment.ProcessorCount / 2),
            };
            return Run(options, result.GetValue(captioner)!, result.GetValue(filter)!, firstToken, result.GetValue(json), output, error);
        });
        return command;
    }

    private static int Run(CapFiltOptions options, string captionerPath, string filterPath, ItmFirstToken firstToken, bool json, TextWriter output, TextWriter error)
    {
        var log = CommonTraining.Log(error);
        try
        {
            options.Validate();
            using var captioner = CapFiltModels.LoadCaptioner(captionerPath, options.Prompt, log);
            using var filter = CapFiltModels.LoadFilter(filterPath, firstToken, log);
            var runner = new CapFiltRunner(captioner, filter, options);
            log($"capfilt: part {options.Shard} into {options.OutputDirectory}: {options.NumCaptions} caption(s) per image (top-p {options.TopP}), "
                + $"keep ITM >= {options.Threshold}{(options.ItcThreshold is double t ? $" and ITC >= {t}" : "")}, chunks of {options.ChunkSize} records");
            CapFiltRunResult run;
            bool draw = ProgressBar.ShouldDraw(error);
            using (var stop = new StopSignals(log))
            {
                var progress = new Progress(error, draw);
                run = runner.Run(progress, line =>
                {
                    progress.Clear();
                    log(line);
                }, stop.Token);
                progress.Clear();
            }
            log(string.Create(CultureInfo.InvariantCulture,
                $"part {options.Shard}: {run.ChunksCommitted} chunk(s) committed now, {run.ChunksAlreadyDone} already done, {run.Images} images in {run.Seconds:F1} s ({run.Images / Math.Max(1e-9, run.Seconds):F2} images/s)"));
            if (!run.Completed)
            {
                log("stopped before the end; run the same command again to go on (committed chunks are kept)");
                if (json) output.WriteLine(CommonOptions.ToJson(new { completed = false, records = run.Records, chunks_committed = run.ChunksCommitted }));
                return BlipCli.SomeInputsFailed;
            }
            if (options.Shard.Count > 1)
            {
                log($"part {options.Shard} is complete; when every part is, run: blip capfilt merge {options.OutputDirectory}");
                if (json)
                    output.WriteLine(CommonOptions.ToJson(new { completed = true, part = options.Shard.ToString(), records = run.Records, chunks = run.Chunks, chunks_committed = run.ChunksCommitted, images_per_second = run.Images / Math.Max(1e-9, run.Seconds) }));
                return BlipCli.Success;
            }
            var summary = CapFiltMerge.Merge([options.OutputDirectory], options.OutputDirectory, log);
            Print(summary, json, output, run);
            return BlipCli.Success;
        }
        catch (CapFiltException e)
        {
            throw new CliException(e.Message);
        }
    }

    private static Command CreateMerge(TextWriter output, TextWriter error)
    {
        var dirs = new Argument<string[]>("dirs") { Description = "CapFilt output folders (one shared folder, or one per machine).", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string?>("--out", "-o") { Description = "Where the dataset goes (default: the first folder)." };
        var json = new Option<bool>("--json") { Description = "Print the summary as one JSON object." };
        var command = new Command("merge", "Check that the parts of a sharded CapFilt run cover every input record exactly once and write the bootstrapped dataset.")
        {
            dirs, outDir, json,
        };
        command.SetAction(result =>
        {
            var folders = result.GetValue(dirs)!;
            try
            {
                var summary = CapFiltMerge.Merge(folders, result.GetValue(outDir) ?? folders[0], CommonTraining.Log(error));
                Print(summary, result.GetValue(json), output, null);
            }
            catch (CapFiltException e)
            {
                throw new CliException(e.Message);
            }
            return BlipCli.Success;
        });
        return command;
    }

    private static void Print(CapFiltSummary summary, bool json, TextWriter output, CapFiltRunResult? run)
    {
        if (json)
        {
            output.WriteLine(CommonOptions.ToJson(new
            {
                completed = true,
                records = summary.Records,
                images = summary.Images,
                unreadable = summary.Unreadable,
                malformed = summary.Malformed,
                web = new { total = summary.Web.Total, kept = summary.Web.Kept },
                synthetic = new { total = summary.Synthetic.Total, kept = summary.Synthetic.Kept },
                human = summary.Human.Total,
                planted_noise = summary.Noise is { } n ? new { precision = n.Precision, recall = n.Recall, clean_kept_fraction = n.CleanKeptFraction, noisy = n.Noisy, clean = n.Clean } : null,
                train_files = summary.TrainFiles,
                images_per_second = run is null ? (double?)null : run.Images / Math.Max(1e-9, run.Seconds),
                summary = Path.Combine(summary.OutputDirectory, CapFiltMerge.SummaryFile),
            }));
            return;
        }
        foreach (string line in CapFiltMerge.Describe(summary)) output.WriteLine(line);
    }

    /// <summary>A one-line progress display on a terminal (records read, committed, images/s).</summary>
    private sealed class Progress(TextWriter error, bool draw) : IProgress<CapFiltProgress>
    {
        private bool _drawn;

        public void Report(CapFiltProgress value)
        {
            if (!draw) return;
            lock (error)
            {
                error.Write(string.Create(CultureInfo.InvariantCulture,
                    $"\r{value.RecordsRead} records read, {value.RecordsDone} done in {value.ChunksCommitted} chunk(s) (+{value.ChunksAlreadyDone} from before), {value.ImagesPerSecond:F1} images/s   "));
                error.Flush();
                _drawn = true;
            }
        }

        public void Clear()
        {
            if (!_drawn) return;
            lock (error)
            {
                error.WriteLine();
                _drawn = false;
            }
        }
    }
}
