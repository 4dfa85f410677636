using BlipSharp.Training.Training;

namespace BlipSharp.Training.Finetuning;

/// <summary>
/// The downstream tasks <c>blip finetune</c> and <c>blip evaluate</c> know, by name. A built-in task is added to
/// <see cref="BuiltIn"/>; other code (a plug-in, a test) calls <see cref="Register"/> (a registered name takes
/// precedence over a built-in one).
/// </summary>
public static class FinetuneTasks
{
    private static readonly Dictionary<string, IFinetuneTask> Registered = new(StringComparer.Ordinal);

    /// <summary>The tasks of this library, by name.</summary>
    public static IReadOnlyDictionary<string, IFinetuneTask> BuiltIn { get; } = new IFinetuneTask[]
    {
        new Retrieval.RetrievalFinetuneTask(),
        new Captioning.CaptionFinetuneTask(),
        new Retrieval.VideoRetrievalTask(),
        new Vqa.VqaFinetuneTask(),
        new Nlvr.NlvrFinetuneTask(),
    }.ToDictionary(t => t.Name, StringComparer.Ordinal);

    /// <summary>Every task name known now, built-in and registered.</summary>
    public static IReadOnlyList<string> Names
    {
        get
        {
            lock (Registered) return BuiltIn.Keys.Concat(Registered.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        }
    }

    /// <summary>Adds (or replaces) a task.</summary>
    /// <param name="task">The task; its <see cref="IFinetuneTask.Name"/> is the key.</param>
    public static void Register(IFinetuneTask task)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentException.ThrowIfNullOrWhiteSpace(task.Name);
        lock (Registered) Registered[task.Name] = task;
    }

    /// <summary>The task called <paramref name="name"/>.</summary>
    /// <param name="name">A task name, e.g. <c>retrieval</c>.</param>
    /// <exception cref="TrainingConfigException">No task has that name; the message lists the known ones.</exception>
    public static IFinetuneTask Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        IFinetuneTask? task;
        lock (Registered) Registered.TryGetValue(name, out task);
        if (task is not null || BuiltIn.TryGetValue(name, out task)) return task;
        var names = Names;
        throw new TrainingConfigException("task", $"'{name}' is not a known fine-tuning task (available: {(names.Count == 0 ? "none" : string.Join(", ", names))})");
    }
}
