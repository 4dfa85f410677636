using BlipSharp.Training.Classification;
using BlipSharp.Training.Data;
using BlipSharp.Training.Pretraining;

namespace BlipSharp.Training.Training;

/// <summary>What a task factory gets besides the recipe.</summary>
/// <param name="Dataset">The training samples (a task may need the number of images, e.g. for ITC positives).</param>
/// <param name="Log">One-line messages for the user.</param>
public sealed record TrainingTaskContext(ImageTextDataset Dataset, Action<string> Log);

/// <summary>Builds a task from a recipe; the torch generator is already seeded with the recipe's seed.</summary>
/// <param name="config">The resolved recipe (its <c>model</c> section is the task's to read).</param>
/// <param name="context">The data and a log.</param>
public delegate ITrainingTask<ImageTextBatch> TrainingTaskFactory(TrainingConfig config, TrainingTaskContext context);

/// <summary>
/// The tasks <c>blip pretrain</c> can train, by the recipe's <c>task</c> name: the extension point where the
/// pretraining task (<c>pretrain</c>: ITC + ITM + LM) and fine-tuning tasks plug in. A built-in task is added to
/// <see cref="BuiltIn"/>; other code (a plug-in, a test) calls <see cref="Register"/> before the run (a registered
/// name takes precedence over a built-in one).
/// </summary>
public static class TrainingTasks
{
    private static readonly Dictionary<string, TrainingTaskFactory> Registered = new(StringComparer.Ordinal);

    /// <summary>The tasks of this library, by name: <c>pretrain</c> (<see cref="PretrainingTrainingTask"/>). Fine-tuning tasks go here.</summary>
    public static IReadOnlyDictionary<string, TrainingTaskFactory> BuiltIn { get; } = new Dictionary<string, TrainingTaskFactory>(StringComparer.Ordinal)
    {
        [PretrainingTrainingTask.Name] = PretrainingTrainingTask.Create,
        [ClassificationTrainingTask.Name] = ClassificationTrainingTask.Create,
    };

    /// <summary>Every task name a recipe can use now: built-in and registered.</summary>
    public static IReadOnlyList<string> Names
    {
        get
        {
            lock (Registered) return BuiltIn.Keys.Concat(Registered.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        }
    }

    /// <summary>Adds (or replaces) a task.</summary>
    /// <param name="name">The recipe's <c>task</c> value.</param>
    /// <param name="factory">Builds the task.</param>
    public static void Register(string name, TrainingTaskFactory factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        lock (Registered) Registered[name] = factory;
    }

    /// <summary>Builds the task the recipe names.</summary>
    /// <param name="config">The recipe.</param>
    /// <param name="context">The data and a log.</param>
    /// <exception cref="TrainingConfigException">The task is unknown or not available in this build.</exception>
    public static ITrainingTask<ImageTextBatch> Create(TrainingConfig config, TrainingTaskContext context)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        TrainingTaskFactory? factory;
        lock (Registered) Registered.TryGetValue(config.Task, out factory);
        if (factory is null && !BuiltIn.TryGetValue(config.Task, out factory))
        {
            if (Finetuning.FinetuneTasks.Names.Contains(config.Task, StringComparer.Ordinal))
                throw new TrainingConfigException("task", $"'{config.Task}' is a fine-tuning task: run it with blip finetune {config.Task}");
            var names = Names;
            throw new TrainingConfigException("task", $"'{config.Task}' is not a known task (available: {(names.Count == 0 ? "none" : string.Join(", ", names))})");
        }
        return factory(config, context);
    }
}
