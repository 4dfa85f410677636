using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>How BLIP_VQA answers at test time (<c>inference</c> in BLIP's <c>configs/vqa.yaml</c>).</summary>
public enum VqaInference
{
    /// <summary><c>rank</c>: the answer list's candidate the decoder scores best (<see cref="VqaRankEvaluator"/>); BLIP's choice for VQA v2.</summary>
    Rank,

    /// <summary><c>generate</c>: the decoder writes the answer with beam search (open vocabulary).</summary>
    Generate,
}

/// <summary>One test question: its id as written, its raw text and its image file.</summary>
/// <param name="QuestionId">The <c>question_id</c> as written (digits for VQA v2).</param>
/// <param name="Question">The raw question (<c>pre_question</c> is applied when answering).</param>
/// <param name="Image">The image file.</param>
public sealed record VqaTestQuestion(string QuestionId, string Question, string Image);

/// <summary>Options of <see cref="VqaPredictor"/>; the defaults are BLIP's VQA evaluation.</summary>
public sealed record VqaPredictOptions
{
    /// <summary>Rank the answer list (BLIP's VQA v2 setting) or generate.</summary>
    public VqaInference Inference { get; init; } = VqaInference.Rank;

    /// <summary>Ranking: the candidates kept after the first-token filter (BLIP's <c>k_test</c>: 128) and the score's label smoothing.</summary>
    public VqaRankOptions Rank { get; init; } = new();

    /// <summary>
    /// Generation: BLIP_VQA's beam search (3 beams, at most 10 tokens with <c>[DEC]</c>, at least 1, beams scored over the
    /// whole sequence as transformers 4.15 did); the decoder attends to every question state.
    /// </summary>
    public GenerationOptions Generation { get; init; } = BlipGeneration;

    /// <summary>Questions per forward pass (BLIP's <c>batch_size_test</c>: 32).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Threads that decode and resize one batch's images.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>BLIP_VQA's <c>inference='generate'</c> settings.</summary>
    public static GenerationOptions BlipGeneration { get; } = new()
    {
        NumBeams = 3,
        MaxLength = 10,
        MinLength = 1,
        RepetitionPenalty = 1.0,
        BeamLengthNormalization = BeamLengthNormalization.WholeSequence,
    };
}

/// <summary>
/// Answers test questions as BLIP's <c>train_vqa.evaluation</c>: batches of questions with their images through BLIP's
/// test transform (the caller's), the model in eval mode without gradients, each answer either the ranked best of the
/// answer list (returned as the list's string) or the generated text (<c>tokenizer.decode(ids, skip_special_tokens=True)</c>).
/// </summary>
public static class VqaPredictor
{
    /// <summary>One answer per question, in order.</summary>
    /// <param name="model">The model (its training mode is restored afterwards).</param>
    /// <param name="tokenizer">BLIP's tokenizer.</param>
    /// <param name="questions">The test questions.</param>
    /// <param name="answerList">The candidates (required to rank, unused to generate).</param>
    /// <param name="transform">The test transform (BLIP: bicubic resize to the image size, normalize).</param>
    /// <param name="options">Inference mode and its settings, batch size.</param>
    /// <param name="progress">Called after each batch with (questions answered, questions).</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="ImageDecodeException">An image cannot be read; the message names it.</exception>
    public static IReadOnlyList<string> Answer(BlipForQuestionAnswering model, BlipTokenizer tokenizer, IReadOnlyList<VqaTestQuestion> questions,
        IReadOnlyList<string>? answerList, IImageTransform transform, VqaPredictOptions? options = null, Action<int, int>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(questions);
        ArgumentNullException.ThrowIfNull(transform);
        options ??= new VqaPredictOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        if (options.Inference == VqaInference.Rank && answerList is null)
            throw new ArgumentException("ranking needs an answer list.", nameof(answerList));

        bool wasTraining = model.training;
        model.eval();
        using var ranker = options.Inference == VqaInference.Rank ? new VqaRankEvaluator(model, tokenizer, answerList!, options.Rank) : null;
        var device = model.parameters().First().device;
        var answers = new List<string>(questions.Count);
        try
        {
            for (int first = 0; first < questions.Count; first += options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = questions.Skip(first).Take(options.BatchSize).ToList();
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var pixels = Pixels(batch, transform, options.Workers, cancellationToken).to(device);      // (B, 3, S, S)
                var texts = batch.Select(q => q.Question).ToList();
                answers.AddRange(ranker is not null ? ranker.Answer(pixels, texts) : Generate(model, tokenizer, pixels, texts, options.Generation));
                progress?.Invoke(answers.Count, questions.Count);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return answers;
    }

    /// <summary>BLIP_VQA's <c>inference='generate'</c> for one batch: cleaned questions, encoded against the images, answers decoded.</summary>
    private static IReadOnlyList<string> Generate(BlipForQuestionAnswering model, BlipTokenizer tokenizer, Tensor pixels, IReadOnlyList<string> questions, GenerationOptions options)
    {
        var cleaned = questions.Select(q => TextCleaning.PreQuestion(q)).ToList();
        var encoded = VqaTextEncoding.EncodeQuestions(tokenizer, cleaned, device: pixels.device);
        var image = model.EncodeImage(pixels);                                                        // (B, 1+N, Dv)
        var states = model.EncodeQuestion(image, encoded.InputIds, encoded.AttentionMask);            // (B, Lq, D)
        using var generated = model.GenerateAnswer(states, options with
        {
            EosTokenId = options.EosTokenId ?? tokenizer.SepTokenId,
            PadTokenId = options.PadTokenId ?? tokenizer.PadTokenId,
        });
        return generated.Sequences.Select(s => tokenizer.Decode(s, skipSpecialTokens: true)).ToList();
    }

    /// <summary>(B, 3, S, S) float32: each question's image through the transform.</summary>
    private static Tensor Pixels(IReadOnlyList<VqaTestQuestion> batch, IImageTransform transform, int workers, CancellationToken cancellationToken)
    {
        int s = transform.OutputSize, perImage = 3 * s * s;
        var values = new float[(long)batch.Count * perImage];
        try
        {
            Parallel.For(0, batch.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, workers), CancellationToken = cancellationToken }, i =>
                transform.Apply(ImageSource.FromFile(batch[i].Image).Decode(), new Random(0), values.AsSpan(i * perImage, perImage)));
        }
        catch (AggregateException e)
        {
            var first = e.Flatten().InnerExceptions[0];
            if (first is ImageDecodeException or OperationCanceledException) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
            throw;
        }
        return tensor(values, new long[] { batch.Count, 3, s, s });
    }
}
