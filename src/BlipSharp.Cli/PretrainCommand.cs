using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using BlipSharp.Training.Data;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip pretrain --config FILE [--set key=value]... [--out DIR] [--resume]</c>: trains the task a recipe names on
/// its data with the <see cref="Trainer{TBatch}"/>. Ctrl+C or SIGTERM stops after the current step and writes a
/// checkpoint (exit code 1); <c>--resume</c> continues exactly where the newest checkpoint left off.
/// </summary>
internal static class PretrainCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var config = new Option<string?>("--config", "-c") { Description = "Training recipe (JSON), e.g. configs/pretrain-tiny.json. With --resume it defaults to the run's saved config.json." };
        var set = new Option<string[]>("--set") { Description = "Override a recipe key: --set train.lr=1e-4 --set data.batch_size=32 (repeatable; values are JSON, else strings).", Arity = ArgumentArity.ZeroOrMore };
        set.AllowMultipleArgumentsPerToken = false;
        var outDir = new Option<string?>("--out", "-o") { Description = "Run folder (overrides output.dir): config.json, metrics.jsonl, checkpoints/." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the newest checkpoint in the run folder (from scratch if there is none)." };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads (default: libtorch's choice). Keep it fixed across a resume for identical numbers." };
        var json = new Option<bool>("--json") { Description = "Print the final summary as one JSON object." };
        var command = new Command("pretrain", "Train a model from a recipe (configs/*.json): checkpoints, metrics, exact resume.")
        {
            config, set, outDir, resume, threads, json,
        };
        command.SetAction(result =>
        {
            if (result.GetValue(threads) is int n)
            {
                if (n < 1) throw new CliException($"--threads must be at least 1, got {n}.");
                set_num_threads(n);
            }
            var recipe = LoadRecipe(result.GetValue(config), result.GetValue(set) ?? [], result.GetValue(outDir), result.GetValue(resume), error);
            string runDir = recipe.Output.Dir;
            return Train(recipe, runDir, result.GetValue(resume), result.GetValue(json), output, error);
        });
        return command;
    }

    internal static TrainingConfig LoadRecipe(string? path, string[] overrides, string? outDir, bool resume, TextWriter error)
    {
        var all = overrides.ToList();
        if (outDir is not null) all.Add("output.dir=" + JsonValue.Create(outDir).ToJsonString());
        string? saved = null;
        if (path is null)
        {
            if (!resume || outDir is null) throw new CliException("--config is required (or --resume with --out naming a run folder that has config.json).");
            saved = Path.Combine(outDir, Trainer<ImageTextBatch>.ConfigFile);
            if (!File.Exists(saved)) throw new CliException($"--resume without --config needs {saved}, which does not exist.");
            path = saved;
        }
        TrainingConfig recipe;
        try
        {
            recipe = TrainingConfigLoader.Load(path, all);
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(path == saved ? $"{path}: {e.Message}" : e.Message);
        }
        if (resume && saved is null)
        {
            string previous = Path.Combine(recipe.Output.Dir, Trainer<ImageTextBatch>.ConfigFile);
            if (File.Exists(previous)) WarnDifferences(previous, recipe, error);
        }
        return recipe;
    }

    /// <summary>Lists the keys where the recipe differs from the one the run was started with.</summary>
    private static void WarnDifferences(string previousPath, TrainingConfig recipe, TextWriter error)
    {
        JsonNode? previous;
        try
        {
            previous = JsonNode.Parse(File.ReadAllText(previousPath));
        }
        catch (System.Text.Json.JsonException)
        {
            return;
        }
        if (previous is not JsonObject old) return;
        var differences = new List<string>();
        Compare(old, TrainingConfigLoader.ToJson(recipe), "", differences);
        foreach (string d in differences.Take(10))
            error.WriteLine($"blip: note: the recipe differs from the run's {previousPath} at {d}");
    }

    private static void Compare(JsonNode? a, JsonNode? b, string key, List<string> differences)
    {
        if (a is JsonObject oa && b is JsonObject ob)
        {
            foreach (string k in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)).Order(StringComparer.Ordinal))
                Compare(oa[k], ob[k], key.Length == 0 ? k : key + "." + k, differences);
            return;
        }
        if (!JsonNode.DeepEquals(a, b)) differences.Add($"{key}: {a?.ToJsonString() ?? "null"} -> {b?.ToJsonString() ?? "null"}");
    }

    private static int Train(TrainingConfig recipe, string runDir, bool resume, bool json, TextWriter output, TextWriter error)
    {
        var log = new Action<string>(line =>
        {
            lock (error) error.WriteLine("blip: " + line);
        });
        int issues = 0;
        void OnIssue(DataIssue issue)
        {
            if (Interlocked.Increment(ref issues) <= 20) log($"skipped {issue}");
        }

        CpuAllocator.KeepFreedMemory(); // glibc would mmap and page-fault every step's large tensors afresh (4.7x slower on the test recipe)
        manual_seed(recipe.Seed); // the task's initial weights
        ImageTextDataset dataset;
        ImageTextLoader loader;
        try
        {
            dataset = TrainingData.LoadDataset(recipe.Data, OnIssue);
            loader = TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed, OnIssue);
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message);
        }
        ITrainingTask<ImageTextBatch> task;
        try
        {
            task = TrainingTasks.Create(recipe, new TrainingTaskContext(dataset, log));
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message);
        }

        using (task)
        {
            var options = TrainerOptions.FromConfig(recipe, runDir);
            using var bar = new TrainingProgressBar(error, recipe.Output.LogEvery, ProgressBar.ShouldDraw(error));
            options = options with
            {
                Resume = resume,
                Progress = bar,
                Log = line =>
                {
                    bar.Clear();
                    log(line);
                },
            };
            using var trainer = new Trainer<ImageTextBatch>(task, new ImageTextBatchSource(loader), options);
            log($"{recipe.Task}: {dataset.Count} samples, {loader.BatchesPerEpoch} batches of {recipe.Data.BatchSize} per epoch, "
                + $"{trainer.StepsPerEpoch} steps per epoch, {trainer.TotalSteps} steps, {recipe.Train.Precision.ToString().ToLowerInvariant()}, run folder {Path.GetFullPath(runDir)}");

            TrainingResult result;
            using (var stop = new StopSignals(log))
            {
                try
                {
                    result = trainer.Run(stop.Token);
                }
                catch (TrainingException e)
                {
                    throw new CliException(e.Message);
                }
            }
            bar.Clear();
            if (json)
            {
                output.WriteLine(CommonOptions.ToJson(new
                {
                    completed = result.Completed,
                    step = result.Step,
                    total_steps = result.TotalSteps,
                    checkpoint = result.Checkpoint,
                    last_loss = result.LastLoss,
                    resumed_from = result.ResumedFrom,
                    metrics = Path.Combine(runDir, Trainer<ImageTextBatch>.MetricsFile),
                }));
            }
            else
            {
                string loss = result.LastLoss is { } l ? l.ToString("F4", CultureInfo.InvariantCulture) : "-";
                output.WriteLine($"{(result.Completed ? "trained" : "stopped at")} step {result.Step}/{result.TotalSteps}, last loss {loss}, checkpoint {result.Checkpoint ?? "none"}");
            }
            return result.Completed ? BlipCli.Success : BlipCli.SomeInputsFailed;
        }
    }
}

/// <summary>
/// The training progress on the error stream: on a terminal a live line
/// (<c>[====&gt;   ] step 120/600 epoch 1/20 loss 2.3412 (itc 1.2034) lr 3.0e-04 41.2 img/s 0:42 left</c>), otherwise the
/// same text as a line every <c>log_every</c> steps.
/// </summary>
internal sealed class TrainingProgressBar(TextWriter writer, int logEvery, bool live) : IProgress<TrainingProgress>, IDisposable
{
    private bool _drawn;

    public void Report(TrainingProgress p)
    {
        if (!live && p.Step % logEvery != 0 && p.Step != p.TotalSteps) return;
        string line = Line(p);
        lock (writer)
        {
            if (live)
            {
                writer.Write("\r" + line + "\u001b[K");
                _drawn = true;
            }
            else
            {
                writer.WriteLine(line);
            }
            writer.Flush();
        }
    }

    /// <summary>The text of one report.</summary>
    public static string Line(TrainingProgress p)
    {
        const int width = 20;
        int filled = p.TotalSteps == 0 ? width : (int)Math.Round((double)p.Step / p.TotalSteps * width);
        string bar = new string('=', Math.Max(0, filled - 1)) + (filled > 0 ? (filled == width ? "=" : ">") : "") + new string(' ', width - filled);
        var inv = CultureInfo.InvariantCulture;
        string metrics = p.Metrics.Count == 0 ? "" : " (" + string.Join(" ", p.Metrics.Select(m => m.Key + " " + m.Value.ToString("F4", inv))) + ")";
        string left = p.Remaining is { } r ? (r.TotalHours >= 1 ? r.ToString(@"h\:mm\:ss", inv) : r.ToString(@"m\:ss", inv)) : "?";
        return string.Create(inv,
            $"[{bar}] step {p.Step}/{p.TotalSteps} epoch {p.Epoch + 1}/{p.Epochs} loss {p.Loss:F4}{metrics} lr {p.LearningRate:0.0e+00} {p.SamplesPerSecond:F1} img/s {left} left");
    }

    /// <summary>Ends the live line so that a message can be printed.</summary>
    public void Clear()
    {
        lock (writer)
        {
            if (!_drawn) return;
            writer.WriteLine();
            _drawn = false;
        }
    }

    public void Dispose() => Clear();
}
