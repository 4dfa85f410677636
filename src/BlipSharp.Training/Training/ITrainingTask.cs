using System.Text.Json.Nodes;
using BlipSharp.Training.Optimization;
using static TorchSharp.torch;

namespace BlipSharp.Training.Training;

/// <summary>
/// What the <see cref="Trainer{TBatch}"/> trains: a model and the loss of one batch. The pretraining task (ITC + ITM +
/// LM with momentum encoders and queues) and the fine-tuning tasks implement it; the trainer knows only steps,
/// logging and checkpoints.
/// </summary>
/// <typeparam name="TBatch">The batches the task reads, for example <see cref="Data.ImageTextBatch"/>.</typeparam>
public interface ITrainingTask<in TBatch> : IDisposable
{
    /// <summary>
    /// The trainable module. Its <c>state_dict</c> (parameters and persistent buffers such as queues, queue pointers
    /// and momentum encoders) is what a checkpoint saves and a resume restores, strictly, by name.
    /// </summary>
    nn.Module Model { get; }

    /// <summary>
    /// The parameters AdamW updates, in groups with their weight decay. The default is BLIP's: every parameter that
    /// requires a gradient, decayed by <paramref name="weightDecay"/> (<see cref="Optimization.WeightDecayPolicy.AllParameters"/>),
    /// a tied tensor once.
    /// </summary>
    /// <param name="weightDecay">The recipe's <c>train.weight_decay</c>.</param>
    IReadOnlyList<ParameterGroup> ParameterGroups(double weightDecay) => Optimization.ParameterGroups.Build(Model.named_parameters(), weightDecay);

    /// <summary>
    /// Computes the loss of one (micro-)batch. Called inside the step's dispose scope with autograd on and the
    /// model in training mode; the trainer scales the loss for gradient accumulation and calls <c>backward</c>.
    /// </summary>
    /// <param name="batch">The batch (owned by the trainer, disposed after the step).</param>
    /// <param name="context">Where the run is: epoch, step, progress, precision, seed.</param>
    TrainingStepOutput Step(TBatch batch, StepContext context);

    /// <summary>
    /// Called once per optimizer step, after the parameters were updated and before the next step: where momentum
    /// encoders are updated when the update must follow the optimizer (with gradient accumulation, BLIP's
    /// update-in-forward would run once per micro-batch). Runs under <c>no_grad</c> in the step's dispose scope.
    /// </summary>
    /// <param name="context">The step that just finished.</param>
    void AfterOptimizerStep(StepContext context)
    {
    }

    /// <summary>State that is neither a parameter nor a buffer (counters, a curriculum), saved in the checkpoint's trainer state. Null: none.</summary>
    JsonObject? SaveState() => null;

    /// <summary>Restores what <see cref="SaveState"/> returned, when resuming.</summary>
    /// <param name="state">The saved state.</param>
    void LoadState(JsonObject state)
    {
    }
}

/// <summary>The result of <see cref="ITrainingTask{TBatch}.Step"/>.</summary>
/// <param name="Loss">The scalar to minimise (the trainer backpropagates it).</param>
/// <param name="Metrics">Named one-element tensors to log, for example the <c>itc</c>, <c>itm</c> and <c>lm</c> losses;
/// read after the backward and averaged over the micro-batches of a step.</param>
public sealed record TrainingStepOutput(Tensor Loss, IReadOnlyDictionary<string, Tensor>? Metrics = null)
{
    /// <summary>Creates an output from named values.</summary>
    /// <param name="loss">The loss to minimise.</param>
    /// <param name="metrics">Values to log (tensors with one element).</param>
    public static TrainingStepOutput Of(Tensor loss, params (string Name, Tensor Value)[] metrics) =>
        new(loss, metrics.ToDictionary(m => m.Name, m => m.Value, StringComparer.Ordinal));
}

/// <summary>Where the run is, for the task: epoch, step, progress through the data, precision and seed.</summary>
public sealed record StepContext
{
    /// <summary>The epoch, from 0.</summary>
    public required int Epoch { get; init; }

    /// <summary>The optimizer step this micro-batch contributes to, from 0 (steps completed before it).</summary>
    public required long Step { get; init; }

    /// <summary>The loader batch within the epoch, from 0.</summary>
    public required int BatchInEpoch { get; init; }

    /// <summary>Loader batches in one epoch.</summary>
    public required int BatchesPerEpoch { get; init; }

    /// <summary>The micro-batch within the accumulation window, from 0.</summary>
    public int MicroBatch { get; init; }

    /// <summary>Micro-batches in this optimizer step (the accumulation window; the last window of an epoch can be shorter).</summary>
    public int MicroBatches { get; init; } = 1;

    /// <summary>The learning rate of this step (the base rate, before group scales).</summary>
    public double LearningRate { get; init; }

    /// <summary>Float type the model computes in: float32, or bfloat16 with <see cref="Precision.BFloat16"/>. Convert inputs to it.</summary>
    public ScalarType ComputeType { get; init; } = ScalarType.Float32;

    /// <summary>
    /// A seed for this micro-batch, derived from the run's seed, the step and the micro-batch. The torch generator
    /// is already seeded with it; use it for any other random source so a resumed run draws the same numbers.
    /// </summary>
    public long Seed { get; init; }

    /// <summary>
    /// Epochs done, fractionally: <c>(Epoch * BatchesPerEpoch + BatchInEpoch) / BatchesPerEpoch</c>. BLIP ramps alpha
    /// up over the first two epochs as <c>alpha * min(1, EpochProgress / 2)</c>.
    /// </summary>
    public double EpochProgress => ((double)Epoch * BatchesPerEpoch + BatchInEpoch) / BatchesPerEpoch;
}
