using BlipSharp.Training.Training;

namespace BlipSharp.Training.Finetuning;

/// <summary>
/// A downstream task that <c>blip finetune &lt;task&gt;</c> trains and <c>blip evaluate &lt;task&gt;</c> scores: retrieval,
/// captioning, VQA, NLVR2 (and evaluation-only tasks such as zero-shot video retrieval). A task reads its own
/// <c>model</c> and <c>evaluation</c> sections of the recipe; the shared parts (the trainer, checkpoints, the run
/// folder, progress) come from <see cref="FinetuneTraining"/> and <see cref="FinetuneWeights"/>.
/// </summary>
public interface IFinetuneTask
{
    /// <summary>The name on the command line and in the recipe's <c>task</c> key, e.g. <c>retrieval</c>.</summary>
    string Name { get; }

    /// <summary>One line for the help text: what is trained and what the evaluation reports.</summary>
    string Summary { get; }

    /// <summary>False for tasks that are only evaluated (zero-shot); <see cref="Train"/> then throws.</summary>
    bool Trainable => true;

    /// <summary>
    /// Trains the recipe: builds the model from its starting weights (<c>model.init</c>), reads the training data,
    /// and runs the <see cref="Trainer{TBatch}"/> (through <see cref="FinetuneTraining.Run{TBatch}"/>), which writes
    /// atomic, resumable checkpoints to <see cref="FinetuneContext.RunDirectory"/>.
    /// </summary>
    /// <param name="config">The resolved recipe (its <c>task</c> is this task's name).</param>
    /// <param name="context">The run folder, resume, progress, log and cancellation.</param>
    /// <exception cref="TrainingConfigException">A recipe key is missing or wrong.</exception>
    TrainingResult Train(TrainingConfig config, FinetuneContext context);

    /// <summary>
    /// Evaluates a model on one split of the recipe's <c>evaluation</c> section: builds the model as
    /// <see cref="Train"/> would start it, replaces its weights with <see cref="EvaluationRequest.Weights"/> when given
    /// (a fine-tuning run, a checkpoint folder or a weights file), writes the result file the literature's scorer
    /// reads (captions <c>[{image_id, caption}]</c>, VQA <c>[{question_id, answer}]</c>, retrieval scores, NLVR
    /// predictions) into <see cref="EvaluationRequest.OutputDirectory"/>, scores it, and writes <c>metrics.json</c>.
    /// </summary>
    /// <param name="config">The resolved recipe.</param>
    /// <param name="request">The split, the weights, where to write, progress.</param>
    EvaluationReport Evaluate(TrainingConfig config, EvaluationRequest request);
}

/// <summary>Where and how a fine-tuning run trains.</summary>
public sealed record FinetuneContext
{
    /// <summary>The run folder: <c>config.json</c>, <c>metrics.jsonl</c>, <c>checkpoints/step-N/</c>.</summary>
    public required string RunDirectory { get; init; }

    /// <summary>Continue from the newest checkpoint of the run folder (from the start when there is none).</summary>
    public bool Resume { get; init; }

    /// <summary>One-line messages for the user.</summary>
    public Action<string> Log { get; init; } = _ => { };

    /// <summary>Receives the state after every optimizer step (the CLI draws a progress bar).</summary>
    public IProgress<TrainingProgress>? Progress { get; init; }

    /// <summary>Stops the run after the current step; a checkpoint is written.</summary>
    public CancellationToken CancellationToken { get; init; }
}

/// <summary>What <see cref="IFinetuneTask.Evaluate"/> evaluates and where it writes.</summary>
public sealed record EvaluationRequest
{
    /// <summary>The split of the recipe's <c>evaluation</c> section, e.g. <c>test</c> or <c>val</c>.</summary>
    public string Split { get; init; } = "test";

    /// <summary>
    /// The weights to evaluate: a fine-tuning run folder (its newest checkpoint), a checkpoint folder or a
    /// <c>model.safetensors</c> file written by the trainer. Null: the recipe's starting weights (<c>model.init</c>),
    /// that is, the pretrained model before fine-tuning.
    /// </summary>
    public string? Weights { get; init; }

    /// <summary>The folder the result file and <c>metrics.json</c> are written to (created when missing).</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>One-line messages for the user.</summary>
    public Action<string> Log { get; init; } = _ => { };

    /// <summary>Receives the evaluation's progress, stage by stage.</summary>
    public IProgress<EvaluationProgress>? Progress { get; init; }

    /// <summary>Stops the evaluation between batches (nothing is written then).</summary>
    public CancellationToken CancellationToken { get; init; }
}

/// <summary>Progress of an evaluation stage: <paramref name="Done"/> of <paramref name="Total"/> <paramref name="Unit"/>.</summary>
/// <param name="Stage">What is being computed, e.g. <c>encoding images</c>, <c>ITM rerank</c>, <c>beam search</c>.</param>
/// <param name="Done">Items done in this stage.</param>
/// <param name="Total">Items in this stage.</param>
/// <param name="Unit">What an item is, e.g. <c>images</c>.</param>
public sealed record EvaluationProgress(string Stage, int Done, int Total, string Unit);

/// <summary>The scores of one evaluation and the files it wrote.</summary>
/// <param name="Task">The task's name.</param>
/// <param name="Split">The split evaluated.</param>
/// <param name="Metrics">The scores by name, as the literature reports them (recalls and accuracies in percent where BLIP prints percent).</param>
/// <param name="PrimaryMetric">The name of the score the task is compared by (e.g. <c>r_mean</c>, <c>CIDEr</c>, <c>overall</c>, <c>accuracy</c>).</param>
/// <param name="ResultsFile">The result file that was scored (null when the task has none).</param>
/// <param name="MetricsFile">The <c>metrics.json</c> written.</param>
/// <param name="Weights">The weights evaluated (null: the recipe's starting weights).</param>
public sealed record EvaluationReport(string Task, string Split, IReadOnlyDictionary<string, double> Metrics, string PrimaryMetric, string? ResultsFile,
    string MetricsFile, string? Weights)
{
    /// <summary>The value of <see cref="PrimaryMetric"/>.</summary>
    public double Primary => Metrics[PrimaryMetric];
}
