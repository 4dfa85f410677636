using System.CommandLine;
using System.Globalization;
using BlipSharp.Training.Finetuning;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Cli;

/// <summary>
/// <c>blip finetune TASK --config FILE [--set key=value]... [--out DIR] [--resume] [--split test|none]</c>: trains a
/// downstream task (retrieval, caption, vqa, nlvr) from a pretrained checkpoint as the recipe says, with a progress
/// bar and atomic, resumable checkpoints, then evaluates the final weights on the recipe's evaluation split.
/// </summary>
internal static class FinetuneCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var task = new Argument<string>("task") { Description = "The task: " + string.Join(", ", FinetuneTasks.Names) + "." };
        var config = new Option<string?>("--config", "-c") { Description = "Fine-tuning recipe (JSON), e.g. configs/retrieval-coco.json. With --resume it defaults to the run's saved config.json." };
        var set = new Option<string[]>("--set") { Description = "Override a recipe key: --set train.lr=1e-5 (repeatable; values are JSON, else strings).", Arity = ArgumentArity.ZeroOrMore };
        set.AllowMultipleArgumentsPerToken = false;
        var outDir = new Option<string?>("--out", "-o") { Description = "Run folder (overrides output.dir): config.json, metrics.jsonl, checkpoints/, eval-SPLIT/." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the newest checkpoint in the run folder (from scratch if there is none)." };
        var split = new Option<string>("--split") { Description = "Evaluate the trained weights on this split of the recipe's evaluation section afterwards; 'none' skips it.", DefaultValueFactory = _ => "test" };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads (default: libtorch's choice). Keep it fixed across a resume for identical numbers." };
        var json = new Option<bool>("--json") { Description = "Print the final summary as one JSON object." };
        var command = new Command("finetune", "Fine-tune a pretrained model on a downstream task from a recipe, then evaluate it.")
        {
            task, config, set, outDir, resume, split, threads, json,
        };
        command.SetAction(result =>
        {
            CommonTraining.SetThreads(result.GetValue(threads));
            var recipe = PretrainCommand.LoadRecipe(result.GetValue(config), result.GetValue(set) ?? [], result.GetValue(outDir), result.GetValue(resume), error);
            var finetune = CommonTraining.Task(result.GetValue(task)!, recipe);
            if (!finetune.Trainable) throw new CliException($"'{finetune.Name}' is evaluated only (zero-shot); use blip evaluate {finetune.Name}.");
            return Run(finetune, recipe, result.GetValue(resume), result.GetValue(split)!, result.GetValue(json), output, error);
        });
        return command;
    }

    private static int Run(IFinetuneTask task, TrainingConfig recipe, bool resume, string split, bool json, TextWriter output, TextWriter error)
    {
        var log = CommonTraining.Log(error);
        string runDir = recipe.Output.Dir;
        CpuAllocator.KeepFreedMemory(); // glibc would mmap and page-fault every step's large tensors afresh
        manual_seed(recipe.Seed); // the task's new weights (heads) and its data order
        TrainingResult trained;
        using (var bar = new TrainingProgressBar(error, recipe.Output.LogEvery, ProgressBar.ShouldDraw(error)))
        using (var stop = new StopSignals(log))
        {
            try
            {
                trained = task.Train(recipe, new FinetuneContext
                {
                    RunDirectory = runDir,
                    Resume = resume,
                    Progress = bar,
                    Log = line =>
                    {
                        bar.Clear();
                        log(line);
                    },
                    CancellationToken = stop.Token,
                });
            }
            catch (Exception e) when (e is TrainingConfigException or TrainingException)
            {
                throw new CliException(e.Message);
            }
        }

        EvaluationReport? report = null;
        if (trained.Completed && !split.Equals("none", StringComparison.OrdinalIgnoreCase) && trained.Checkpoint is not null)
            report = EvaluateCommand.Evaluate(task, recipe, split, trained.Checkpoint, Path.Combine(runDir, "eval-" + split), log, error);

        if (json)
        {
            output.WriteLine(CommonOptions.ToJson(new
            {
                task = task.Name,
                completed = trained.Completed,
                step = trained.Step,
                total_steps = trained.TotalSteps,
                checkpoint = trained.Checkpoint,
                last_loss = trained.LastLoss,
                resumed_from = trained.ResumedFrom,
                metrics_log = Path.Combine(runDir, Trainer<IDisposable>.MetricsFile),
                evaluation = report is null ? null : EvaluateCommand.ToJsonObject(report),
            }));
        }
        else
        {
            string loss = trained.LastLoss is { } l ? l.ToString("F4", CultureInfo.InvariantCulture) : "-";
            output.WriteLine($"{(trained.Completed ? "trained" : "stopped at")} step {trained.Step}/{trained.TotalSteps}, last loss {loss}, checkpoint {trained.Checkpoint ?? "none"}");
            if (report is not null) EvaluateCommand.Print(report, output);
        }
        return trained.Completed ? BlipCli.Success : BlipCli.SomeInputsFailed;
    }
}

/// <summary>What <c>finetune</c> and <c>evaluate</c> share.</summary>
internal static class CommonTraining
{
    public static void SetThreads(int? threads)
    {
        if (threads is not int n) return;
        if (n < 1) throw new CliException($"--threads must be at least 1, got {n}.");
        set_num_threads(n);
    }

    public static Action<string> Log(TextWriter error) => line =>
    {
        lock (error) error.WriteLine("blip: " + line);
    };

    /// <summary>The task named on the command line; the recipe must be for it.</summary>
    public static IFinetuneTask Task(string name, TrainingConfig recipe)
    {
        IFinetuneTask task;
        try
        {
            task = FinetuneTasks.Get(name);
        }
        catch (TrainingConfigException e)
        {
            throw new CliException(e.Message);
        }
        if (!string.Equals(recipe.Task, task.Name, StringComparison.Ordinal))
            throw new CliException($"the recipe is for task '{recipe.Task}', not '{task.Name}' (its \"task\" key must say \"{task.Name}\").");
        return task;
    }
}
