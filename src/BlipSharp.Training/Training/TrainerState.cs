using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Training;

/// <summary>
/// <c>trainer_state.json</c> of a checkpoint: where the run is and how to continue it exactly. Random numbers need
/// no saved generator state: every micro-batch seeds the torch generator from (seed, step, micro-batch), and the
/// loader's augmentations are functions of (seed, epoch, sample).
/// </summary>
public sealed record TrainerState
{
    /// <summary>The format version (1).</summary>
    public int Format { get; init; } = 1;

    /// <summary>Optimizer steps completed.</summary>
    public long Step { get; init; }

    /// <summary>The epoch of the next step.</summary>
    public int Epoch { get; init; }

    /// <summary>The loader position of the next step's first micro-batch.</summary>
    public LoaderPosition Next { get; init; }

    /// <summary>The run's seed.</summary>
    public long Seed { get; init; }

    /// <summary>How random numbers are reproduced on resume.</summary>
    public string Rng { get; init; } = "torch.manual_seed(derive(seed, step, micro_batch)) before every micro-batch";

    /// <summary>Loader batches per epoch when the checkpoint was written (a resume checks it).</summary>
    public int BatchesPerEpoch { get; init; }

    /// <summary>Gradient accumulation when the checkpoint was written (a resume checks it).</summary>
    public int GradAccumSteps { get; init; } = 1;

    /// <summary>Samples trained on so far.</summary>
    public long Samples { get; init; }

    /// <summary>Training time so far, over all processes.</summary>
    public double ElapsedSeconds { get; init; }

    /// <summary>The compute precision.</summary>
    public Precision Precision { get; init; }

    /// <summary>The last step's loss and metrics.</summary>
    public Dictionary<string, double> Last { get; init; } = [];

    /// <summary>The task's own state (<see cref="ITrainingTask{TBatch}.SaveState"/>).</summary>
    public JsonObject? Task { get; init; }

    internal static TrainerState Read(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path), TrainingConfigLoader.JsonOptions)
                ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a trainer state: {e.Message}", e);
        }
    }

    internal void Write(string path) => File.WriteAllText(path, JsonSerializer.Serialize(this, TrainingConfigLoader.JsonOptions));
}

/// <summary>
/// A run that cannot go on as asked: the output folder already holds another run, a checkpoint does not fit the
/// current recipe (data, batch size, accumulation, precision, seed), or the loss stopped being finite.
/// </summary>
public sealed class TrainingException(string message, Exception? inner = null) : Exception(message, inner);
