using BlipSharp.Modeling;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>
/// <see cref="VqaTask"/> as an <see cref="ITrainingTask{TBatch}"/> for the <see cref="Trainer{TBatch}"/>: each step
/// converts the batch's images to the compute type and returns BLIP_VQA's weighted answer loss (logged as
/// <c>loss</c>). Every parameter trains, decayed, a tied tensor once (BLIP's AdamW over <c>model.parameters()</c>).
/// </summary>
public sealed class VqaTrainingTask : ITrainingTask<VqaBatch>
{
    /// <summary>Wraps the model (disposed with the task); <see cref="VqaTask"/> ties the decoder's LM head to its word embeddings.</summary>
    /// <param name="model">The model, in its training dtype already (convert before: converting a tied model is refused).</param>
    /// <param name="options">Loss options (default: BLIP's).</param>
    public VqaTrainingTask(BlipForQuestionAnswering model, VqaTaskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Task = new VqaTask(model, options);
    }

    /// <summary>The loss.</summary>
    public VqaTask Task { get; }

    /// <inheritdoc />
    public nn.Module Model => Task.Model;

    /// <inheritdoc />
    public TrainingStepOutput Step(VqaBatch batch, StepContext context)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(context);
        var pixels = batch.Tensors.PixelValues.to_type(context.ComputeType);             // (Nq, 3, S, S)
        var output = Task.Forward(batch.Tensors with { PixelValues = pixels });            // tensors of the step's scope
        return new TrainingStepOutput(output.Loss);
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Task.Model.Dispose();
}
