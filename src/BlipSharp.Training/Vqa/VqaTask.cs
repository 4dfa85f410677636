using BlipSharp.Modeling;
using BlipSharp.Modeling.Text;
using BlipSharp.Processing;
using BlipSharp.Training.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>
/// One VQA training batch as tensors. The batch does not own them.
/// </summary>
/// <param name="PixelValues">(Nq, 3, S, S) one image per question.</param>
/// <param name="QuestionIds">(Nq, Lq) int64 question ids with <c>[ENC]</c> in column 0 (<see cref="VqaTextEncoding.EncodeQuestions"/>).</param>
/// <param name="QuestionMask">(Nq, Lq) 1 for tokens, 0 for padding.</param>
/// <param name="AnswerIds">(Na, La) int64 answer ids with <c>[DEC]</c> in column 0 (<see cref="VqaTextEncoding.EncodeAnswers"/>), question by question.</param>
/// <param name="AnswerMask">(Na, La) 1 for tokens, 0 for padding.</param>
/// <param name="Weights">(Na) float answer weights.</param>
/// <param name="AnswerCounts">(Nq) int64 answers per question; they sum to Na.</param>
public sealed record VqaTrainingBatch(Tensor PixelValues, Tensor QuestionIds, Tensor QuestionMask, Tensor AnswerIds, Tensor AnswerMask, Tensor Weights, Tensor AnswerCounts);

/// <summary>Options of <see cref="VqaTask"/>; the defaults are BLIP_VQA's.</summary>
public sealed record VqaTaskOptions
{
    /// <summary>Label smoothing of the answer loss (BLIP's decoder hard-codes 0.1).</summary>
    public double LabelSmoothing { get; init; } = 0.1;

    /// <summary>
    /// Tie the decoder's LM head to its word embeddings (<see cref="BlipForQuestionAnswering.TieWeights"/>), as BLIP
    /// trains them: one tensor whose gradient sums both uses; the head takes the embeddings' values. Off only to
    /// train a checkpoint whose head was deliberately kept separate.
    /// </summary>
    public bool TieLanguageModelHead { get; init; } = true;
}

/// <summary>The VQA loss and the values it is made of. Disposing disposes every tensor.</summary>
/// <param name="Loss">Scalar: <c>(weights * per-answer loss).sum() / Nq</c>.</param>
/// <param name="PerAnswerLoss">(Na): each answer's summed label-smoothed cross-entropy over its tokens.</param>
/// <param name="ImageEmbeds">(Nq, 1+N, Dv) image states.</param>
/// <param name="QuestionStates">(Nq, Lq, D) image-grounded question states.</param>
/// <param name="RepeatedQuestionStates">(Na, Lq, D) question states repeated once per answer.</param>
/// <param name="RepeatedQuestionMask">(Na, Lq) question masks repeated likewise (the decoder's cross-attention mask).</param>
/// <param name="AnswerTargets">(Na, La) answer ids with [PAD] -> -100.</param>
/// <param name="AnswerHiddenStates">(Na, La, D) the decoder's last hidden states.</param>
public sealed record VqaLossOutput(Tensor Loss, Tensor PerAnswerLoss, Tensor ImageEmbeds, Tensor QuestionStates, Tensor RepeatedQuestionStates,
    Tensor RepeatedQuestionMask, Tensor AnswerTargets, Tensor AnswerHiddenStates) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Loss.Dispose();
        PerAnswerLoss.Dispose();
        ImageEmbeds.Dispose();
        QuestionStates.Dispose();
        RepeatedQuestionStates.Dispose();
        RepeatedQuestionMask.Dispose();
        AnswerTargets.Dispose();
        AnswerHiddenStates.Dispose();
    }
}

/// <summary>
/// BLIP_VQA's fine-tuning objective (<c>BLIP_VQA.forward(..., train=True)</c>) on a <see cref="BlipForQuestionAnswering"/>:
/// the question (<c>[ENC]</c> first) is encoded with cross-attention to its image; its states and mask are repeated
/// once per answer; each answer (<c>[DEC]</c> first) is decoded with cross-attention to them under the question mask;
/// the per-answer loss is the sum over its tokens of the label-smoothed cross-entropy, and the loss is
/// <c>(weights * per-answer loss).sum()</c> divided by the number of questions. The caller backpropagates
/// <see cref="VqaLossOutput.Loss"/> and steps the optimizer.
/// </summary>
public sealed class VqaTask
{
    /// <summary>
    /// Creates the task; unless <see cref="VqaTaskOptions.TieLanguageModelHead"/> is off, ties the decoder's LM head to
    /// its word embeddings (<see cref="BlipForQuestionAnswering.TieWeights"/>), as BLIP trains them.
    /// </summary>
    /// <param name="model">The model trained (converted to its training dtype and device already).</param>
    /// <param name="options">Loss options (default: BLIP's).</param>
    public VqaTask(BlipForQuestionAnswering model, VqaTaskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Options = options ?? new VqaTaskOptions();
        if (Options.TieLanguageModelHead) Model.TieWeights();
    }

    /// <summary>The model.</summary>
    public BlipForQuestionAnswering Model { get; }

    /// <summary>The options.</summary>
    public VqaTaskOptions Options { get; }

    /// <summary>
    /// Tokenizes a collated batch (<see cref="VqaAnswerWeighting.Collate"/>) for <see cref="Forward"/>; the returned
    /// tensors are new (dispose them, or create them inside the step's dispose scope).
    /// </summary>
    /// <param name="tokenizer">BLIP's tokenizer.</param>
    /// <param name="pixelValues">(Nq, 3, S, S) the questions' images (not copied).</param>
    /// <param name="text">Questions, answers, weights and counts.</param>
    public static VqaTrainingBatch CreateBatch(BlipTokenizer tokenizer, Tensor pixelValues, VqaCollatedText text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (pixelValues.shape[0] != text.Questions.Count)
            throw new ArgumentException($"{pixelValues.shape[0]} images for {text.Questions.Count} questions.", nameof(pixelValues));
        var device = pixelValues.device;
        var questions = VqaTextEncoding.EncodeQuestions(tokenizer, text.Questions, device: device);
        var answers = VqaTextEncoding.EncodeAnswers(tokenizer, text.Answers, device: device);
        var weights = tensor(text.Weights, ScalarType.Float32, device);
        var counts = tensor(text.AnswerCounts.Select(n => (long)n).ToArray(), ScalarType.Int64, device);
        return new VqaTrainingBatch(pixelValues, questions.InputIds, questions.AttentionMask, answers.InputIds, answers.AttentionMask, weights, counts);
    }

    /// <summary>The training forward pass. Call inside the step's dispose scope.</summary>
    /// <param name="batch">Images, questions, answers, weights and counts.</param>
    public VqaLossOutput Forward(VqaTrainingBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long questions = batch.PixelValues.shape[0], answers = batch.AnswerIds.shape[0];
        if (batch.QuestionIds.shape[0] != questions || batch.AnswerCounts.shape[0] != questions)
            throw new ArgumentException($"the batch has {questions} images, {batch.QuestionIds.shape[0]} questions and {batch.AnswerCounts.shape[0]} answer counts.", nameof(batch));
        if (batch.Weights.shape[0] != answers)
            throw new ArgumentException($"the batch has {answers} answers but {batch.Weights.shape[0]} weights.", nameof(batch));
        using (var total = batch.AnswerCounts.sum())
        {
            if (total.ToInt64() != answers)
                throw new ArgumentException($"the answer counts sum to {total.ToInt64()}, but the batch has {answers} answers.", nameof(batch));
        }

        using var scope = NewDisposeScope();
        var imageEmbeds = Model.EncodeImage(batch.PixelValues);                                          // (Nq, 1+N, Dv)
        var questionStates = Model.EncodeQuestion(imageEmbeds, batch.QuestionIds, batch.QuestionMask);   // (Nq, Lq, D)
        var repeatedStates = questionStates.repeat_interleave(batch.AnswerCounts, dim: 0, output_size: answers); // (Na, Lq, D)
        var repeatedMask = batch.QuestionMask.repeat_interleave(batch.AnswerCounts, dim: 0, output_size: answers); // (Na, Lq)
        var targets = LanguageModelingLoss.Targets(batch.AnswerIds, Model.Config.TextConfig.PadTokenId);   // (Na, La)
        var decoded = Model.DecodeAnswer(repeatedStates, repeatedMask, batch.AnswerIds, batch.AnswerMask, targets,
            LossReduction.SumPerSequence, Options.LabelSmoothing);
        var perAnswer = decoded.Loss!;                                                                     // (Na)
        var loss = (batch.Weights.to_type(perAnswer.dtype) * perAnswer).sum() / questions;
        return new VqaLossOutput(loss.MoveToOuterDisposeScope(), perAnswer.MoveToOuterDisposeScope(), imageEmbeds.MoveToOuterDisposeScope(),
            questionStates.MoveToOuterDisposeScope(), repeatedStates.MoveToOuterDisposeScope(), repeatedMask.MoveToOuterDisposeScope(),
            targets.MoveToOuterDisposeScope(), decoded.LastHiddenState.MoveToOuterDisposeScope());
    }
}
