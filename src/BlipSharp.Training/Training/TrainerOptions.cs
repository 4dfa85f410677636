using System.Text.Json.Nodes;

namespace BlipSharp.Training.Training;

/// <summary>Settings of a <see cref="Trainer{TBatch}"/>; <see cref="FromConfig"/> builds them from a recipe.</summary>
public sealed record TrainerOptions
{
    /// <summary>The run folder: <c>config.json</c>, <c>metrics.jsonl</c>, <c>checkpoints/</c>.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>The learning rate of every step.</summary>
    public required ILearningRateSchedule Schedule { get; init; }

    /// <summary>Epochs to train.</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Stop after this many optimizer steps in all; null: after <see cref="Epochs"/>.</summary>
    public long? MaxSteps { get; init; }

    /// <summary>AdamW's weight decay, handed to the task's <see cref="ITrainingTask{TBatch}.ParameterGroups"/> (BLIP: 0.05 on every parameter).</summary>
    public double WeightDecay { get; init; } = 0.05;

    /// <summary>
    /// Learning-rate multipliers by module name (<c>vision_model</c> covers <c>vision_model.*</c>; 0 freezes it);
    /// null or empty: every parameter follows the schedule. See <see cref="Optimization.ParameterGroups.ScaleLearningRates"/>.
    /// </summary>
    public IReadOnlyDictionary<string, double>? LearningRateScales { get; init; }

    /// <summary>AdamW's betas.</summary>
    public (double Beta1, double Beta2) Betas { get; init; } = (0.9, 0.999);

    /// <summary>AdamW's epsilon.</summary>
    public double Eps { get; init; } = 1e-8;

    /// <summary>Loader batches per optimizer step.</summary>
    public int GradientAccumulationSteps { get; init; } = 1;

    /// <summary>Clip the global gradient L2 norm to this before each optimizer step; null: no clipping.</summary>
    public double? ClipGradNorm { get; init; }

    /// <summary>Compute precision (see <see cref="Trainer{TBatch}"/> for what bfloat16 means).</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    /// <summary>Turn on gradient checkpointing in every ViT encoder of the model.</summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>With gradient checkpointing, only the last N blocks of each ViT; null: all.</summary>
    public int? CheckpointLayers { get; init; }

    /// <summary>The run's seed: every micro-batch seeds the torch generator from (seed, step, micro-batch).</summary>
    public long Seed { get; init; }

    /// <summary>Write a metrics line every this many steps.</summary>
    public int LogEvery { get; init; } = 50;

    /// <summary>Write a checkpoint every this many steps (0: never on a step count).</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Write a checkpoint when an epoch ends.</summary>
    public bool CheckpointAtEpochEnd { get; init; } = true;

    /// <summary>How many recent checkpoints to keep.</summary>
    public int KeepCheckpoints { get; init; } = 3;

    /// <summary>Continue from the newest checkpoint in <see cref="OutputDirectory"/> (from scratch when there is none).</summary>
    public bool Resume { get; init; }

    /// <summary>The resolved recipe, saved as <c>config.json</c> in the run folder and in every checkpoint.</summary>
    public JsonObject? Config { get; init; }

    /// <summary>Receives the progress after every optimizer step (on the training thread).</summary>
    public IProgress<TrainingProgress>? Progress { get; init; }

    /// <summary>Receives one-line messages: resume, checkpoints written, interruption.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>The options a recipe describes.</summary>
    /// <param name="config">The recipe.</param>
    /// <param name="outputDirectory">Overrides <c>output.dir</c>.</param>
    public static TrainerOptions FromConfig(TrainingConfig config, string? outputDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var t = config.Train;
        var o = config.Output;
        return new TrainerOptions
        {
            OutputDirectory = outputDirectory ?? o.Dir,
            Schedule = t.Schedule(),
            Epochs = t.Epochs,
            MaxSteps = t.MaxSteps,
            WeightDecay = t.WeightDecay,
            LearningRateScales = t.LrScales,
            Betas = (t.Betas[0], t.Betas[1]),
            Eps = t.Eps,
            GradientAccumulationSteps = t.GradAccumSteps,
            ClipGradNorm = t.ClipGradNorm,
            Precision = t.Precision,
            GradientCheckpointing = t.GradientCheckpointing,
            CheckpointLayers = t.CheckpointLayers,
            Seed = config.Seed,
            LogEvery = o.LogEvery,
            CheckpointEvery = o.CheckpointEvery,
            CheckpointAtEpochEnd = o.CheckpointAtEpochEnd,
            KeepCheckpoints = o.KeepCheckpoints,
            Config = TrainingConfigLoader.ToJson(config),
        };
    }
}

/// <summary>The state of the run after an optimizer step.</summary>
/// <param name="Step">Optimizer steps completed.</param>
/// <param name="TotalSteps">Optimizer steps the run will make.</param>
/// <param name="Epoch">The epoch of that step, from 0.</param>
/// <param name="Epochs">Epochs of the run.</param>
/// <param name="Loss">The step's loss (mean over its micro-batches).</param>
/// <param name="Metrics">The step's named values (means over its micro-batches).</param>
/// <param name="LearningRate">The step's base learning rate.</param>
/// <param name="SamplesPerSecond">Throughput over the steps since the previous report in this process.</param>
/// <param name="Elapsed">Training time in this process.</param>
/// <param name="Remaining">Estimated time to the end; null before the first step is timed.</param>
public sealed record TrainingProgress(
    long Step, long TotalSteps, int Epoch, int Epochs, double Loss, IReadOnlyDictionary<string, double> Metrics,
    double LearningRate, double SamplesPerSecond, TimeSpan Elapsed, TimeSpan? Remaining);

/// <summary>How a <see cref="Trainer{TBatch}.Run"/> ended.</summary>
/// <param name="Completed">Every step was made.</param>
/// <param name="Step">Optimizer steps completed in all (resumed ones included).</param>
/// <param name="TotalSteps">Steps the run was to make.</param>
/// <param name="Checkpoint">The newest checkpoint folder (null if none was written).</param>
/// <param name="LastLoss">The loss of the last step made by this process (null if none).</param>
/// <param name="ResumedFrom">The checkpoint this process started from (null: from scratch).</param>
public sealed record TrainingResult(bool Completed, long Step, long TotalSteps, string? Checkpoint, double? LastLoss, string? ResumedFrom);
