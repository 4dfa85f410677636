using System.CommandLine;
using System.Globalization;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip evaluate TASK --config FILE [--weights RUN|DIR|FILE] [--split test] [--out DIR]</c>: scores a model on a
/// split of the recipe's evaluation section as the literature does (retrieval recalls, caption BLEU, ROUGE-L and
/// CIDEr-D, VQA accuracy, NLVR accuracy), writing the result file and <c>metrics.json</c>. Without
/// <c>--weights</c> it scores the recipe's starting point: the pretrained model before fine-tuning.
/// </summary>
internal static class EvaluateCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var task = new Argument<string>("task") { Description = "The task: " + string.Join(", ", FinetuneTasks.Names) + "." };
        var config = new Option<string>("--config", "-c") { Description = "The task's recipe (JSON): the model, its starting weights and the evaluation section.", Required = true };
        var set = new Option<string[]>("--set") { Description = "Override a recipe key: --set evaluation.k_test=128 (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        set.AllowMultipleArgumentsPerToken = false;
        var weights = new Option<string?>("--weights", "-w") { Description = "Fine-tuned weights: a run folder (newest checkpoint), a checkpoint folder or model.safetensors. Default: the recipe's model.init (pretrained only)." };
        var split = new Option<string>("--split") { Description = "The split of the recipe's evaluation section.", DefaultValueFactory = _ => "test" };
        var outDir = new Option<string?>("--out", "-o") { Description = "Where the result file and metrics.json go (default: WEIGHTS-RUN/eval-SPLIT, or OUTPUT.DIR/eval-SPLIT-init without --weights)." };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads." };
        var json = new Option<bool>("--json") { Description = "Print the scores as one JSON object." };
        var command = new Command("evaluate", "Score a model on a downstream task's evaluation split: writes the result file and metrics.json.")
        {
            task, config, set, weights, split, outDir, threads, json,
        };
        command.SetAction(result =>
        {
            CommonTraining.SetThreads(result.GetValue(threads));
            TrainingConfig recipe;
            try
            {
                recipe = TrainingConfigLoader.Load(result.GetValue(config)!, result.GetValue(set) ?? []);
            }
            catch (TrainingConfigException e)
            {
                throw new CliException(e.Message);
            }
            var finetune = CommonTraining.Task(result.GetValue(task)!, recipe);
            string s = result.GetValue(split)!;
            string? w = result.GetValue(weights);
            string outFolder = result.GetValue(outDir) ?? DefaultOutput(recipe, w, s);
            var report = Evaluate(finetune, recipe, s, w, outFolder, CommonTraining.Log(error), error);
            if (result.GetValue(json)) output.WriteLine(ToJsonObject(report).ToJsonString());
            else Print(report, output);
            return BlipCli.Success;
        });
        return command;
    }

    private static string DefaultOutput(TrainingConfig recipe, string? weights, string split)
    {
        if (weights is null) return Path.Combine(recipe.Output.Dir, $"eval-{split}-init");
        string folder = Directory.Exists(weights) ? weights : Path.GetDirectoryName(Path.GetFullPath(weights))!;
        return Path.Combine(folder, "eval-" + split);
    }

    /// <summary>Runs the task's evaluation with a progress bar; recipe errors become usage errors.</summary>
    public static EvaluationReport Evaluate(IFinetuneTask task, TrainingConfig recipe, string split, string? weights, string outDir, Action<string> log, TextWriter error)
    {
        using var bar = new EvaluationProgressBar(error, ProgressBar.ShouldDraw(error));
        log($"{task.Name}: evaluating {(weights is null ? "the recipe's starting weights (model.init)" : weights)} on '{split}', writing to {Path.GetFullPath(outDir)}");
        try
        {
            return task.Evaluate(recipe, new EvaluationRequest
            {
                Split = split,
                Weights = weights,
                OutputDirectory = outDir,
                Progress = bar,
                Log = line =>
                {
                    bar.Clear();
                    log(line);
                },
            });
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message);
        }
    }

    public static System.Text.Json.Nodes.JsonObject ToJsonObject(EvaluationReport report)
    {
        var metrics = new System.Text.Json.Nodes.JsonObject();
        foreach (var (name, value) in report.Metrics) metrics[name] = value;
        return new System.Text.Json.Nodes.JsonObject
        {
            ["task"] = report.Task,
            ["split"] = report.Split,
            ["primary_metric"] = report.PrimaryMetric,
            ["primary"] = report.Primary,
            ["metrics"] = metrics,
            ["results"] = report.ResultsFile,
            ["metrics_file"] = report.MetricsFile,
            ["weights"] = report.Weights,
        };
    }

    public static void Print(EvaluationReport report, TextWriter output)
    {
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine($"{report.Task} on {report.Split}: {report.PrimaryMetric} {report.Primary.ToString("0.####", inv)}");
        foreach (var (name, value) in report.Metrics)
            if (name != report.PrimaryMetric) output.WriteLine($"  {name} {value.ToString("0.####", inv)}");
        if (report.ResultsFile is not null) output.WriteLine($"results {report.ResultsFile}");
        output.WriteLine($"metrics {report.MetricsFile}");
    }
}

/// <summary>The evaluation's stages on the error stream: a live bar on a terminal, a line per stage otherwise.</summary>
internal sealed class EvaluationProgressBar(TextWriter writer, bool live) : IProgress<EvaluationProgress>, IDisposable
{
    private string? _stage;
    private bool _drawn;
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    public void Report(EvaluationProgress p)
    {
        lock (writer)
        {
            if (p.Stage != _stage)
            {
                Clear();
                _stage = p.Stage;
                _clock.Restart();
                if (!live) writer.WriteLine($"blip: {p.Stage}: {p.Total} {p.Unit}");
            }
            if (!live) return;
            const int width = 24;
            int filled = p.Total == 0 ? width : (int)Math.Round((double)p.Done / p.Total * width);
            double rate = p.Done / Math.Max(1e-9, _clock.Elapsed.TotalSeconds);
            string left = rate > 0 ? TimeSpan.FromSeconds((p.Total - p.Done) / rate).ToString(@"m\:ss", CultureInfo.InvariantCulture) : "?";
            writer.Write($"\r{p.Stage} [{new string('=', filled)}{new string(' ', width - filled)}] {p.Done}/{p.Total} {p.Unit}, {left} left\u001b[K");
            writer.Flush();
            _drawn = true;
        }
    }

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
