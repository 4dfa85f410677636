using BlipSharp.Training.Training;

namespace BlipSharp.Training.Finetuning;

/// <summary>Runs the <see cref="Trainer{TBatch}"/> for a fine-tuning task: the recipe's optimizer, schedule and checkpoints in the run folder.</summary>
public static class FinetuneTraining
{
    /// <summary>
    /// Trains <paramref name="task"/> on <paramref name="data"/> as the recipe says, writing atomic checkpoints to the
    /// run folder and resuming from its newest one when asked. The task is not disposed.
    /// </summary>
    /// <typeparam name="TBatch">The task's batch type.</typeparam>
    /// <param name="task">The loss of a batch.</param>
    /// <param name="data">The batches.</param>
    /// <param name="config">The recipe.</param>
    /// <param name="context">The run folder, resume, progress, log and cancellation.</param>
    public static TrainingResult Run<TBatch>(ITrainingTask<TBatch> task, IBatchSource<TBatch> data, TrainingConfig config, FinetuneContext context)
        where TBatch : IDisposable
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(context);
        if (data.BatchesPerEpoch < 1)
            throw new TrainingConfigException("data.batch_size", $"({config.Data.BatchSize}) is larger than the training set: an epoch has no complete batch");
        var options = TrainerOptions.FromConfig(config, context.RunDirectory) with
        {
            Resume = context.Resume,
            Progress = context.Progress,
            Log = context.Log,
        };
        using var trainer = new Trainer<TBatch>(task, data, options);
        context.Log($"{config.Task}: {data.BatchesPerEpoch} batches of {config.Data.BatchSize} per epoch, {trainer.StepsPerEpoch} steps per epoch, "
            + $"{trainer.TotalSteps} steps, {config.Train.Precision.ToString().ToLowerInvariant()}, run folder {Path.GetFullPath(context.RunDirectory)}");
        return trainer.Run(context.CancellationToken);
    }
}
