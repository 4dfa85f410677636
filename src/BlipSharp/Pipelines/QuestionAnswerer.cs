using BlipSharp.Checkpoints;
using BlipSharp.Generation;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Pipelines;

/// <summary>Settings of <see cref="QuestionAnswerer"/>.</summary>
public sealed record AnswerOptions
{
    /// <summary>Decoding; the default is BLIP's VQA setting: beam search with 3 beams, 1 to 10 tokens.</summary>
    public GenerationOptions Generation { get; init; } = new() { NumBeams = 3, MaxLength = 10, MinLength = 1 };

    /// <summary>Image-question pairs processed together.</summary>
    public int BatchSize { get; init; } = 8;
}

/// <summary>A generated answer.</summary>
/// <param name="Source">The image's name.</param>
/// <param name="Question">The question asked.</param>
/// <param name="Text">The answer, special tokens removed.</param>
/// <param name="TokenIds">The generated sequence: <c>[DEC]</c>, the answer tokens and <c>[SEP]</c> when it ended before the limit.</param>
/// <param name="Score">Beam search's length-normalised log-probability; null for greedy decoding and sampling.</param>
public sealed record AnswerResult(string Source, string Question, string Text, IReadOnlyList<long> TokenIds, float? Score);

/// <summary>A candidate answer with its score.</summary>
/// <param name="Text">The candidate as given.</param>
/// <param name="LogLikelihood">Log-probability of the candidate's tokens and end token given image and question.</param>
/// <param name="FirstTokenProbability">Probability of the candidate's first token (the pre-filter's score).</param>
public sealed record RankedAnswer(string Text, double LogLikelihood, double FirstTokenProbability);

/// <summary>
/// Visual question answering: <c>QuestionAnswerer.FromPretrained("Salesforce/blip-vqa-base").Answer("photo.jpg", "how many cats?")</c>.
/// Answers are generated, or a caller's candidate list is ranked by likelihood (BLIP's closed-vocabulary inference).
/// Not thread-safe: use one instance per thread.
/// </summary>
public sealed class QuestionAnswerer : IDisposable
{
    /// <summary>The model a bare <see cref="FromPretrained"/> loads.</summary>
    public const string DefaultModel = "Salesforce/blip-vqa-base";

    private readonly Device _device;

    private QuestionAnswerer(BlipForQuestionAnswering model, BlipProcessor processor)
    {
        Model = model;
        Processor = processor;
        _device = PipelineModel.DeviceOf(model);
    }

    /// <summary>The VQA model.</summary>
    public BlipForQuestionAnswering Model { get; }

    /// <summary>The tokenizer and image processor.</summary>
    public BlipProcessor Processor { get; }

    /// <summary>Loads a VQA checkpoint (a local folder or a Hugging Face hub id) with its processor.</summary>
    public static QuestionAnswerer FromPretrained(string pathOrRepoId = DefaultModel, BlipLoadOptions? options = null)
    {
        string dir = PipelineModel.Resolve(pathOrRepoId, options);
        return new QuestionAnswerer(BlipCheckpoint.LoadForQuestionAnswering(dir, options), BlipProcessor.FromPretrained(dir));
    }

    /// <summary>Wraps a loaded model and processor.</summary>
    public static QuestionAnswerer Create(BlipForQuestionAnswering model, BlipProcessor processor)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(processor);
        model.eval();
        return new QuestionAnswerer(model, processor);
    }

    /// <summary>Answers one question about one image.</summary>
    public AnswerResult Answer(ImageSource image, string question, AnswerOptions? options = null) => Answer([image], [question], options)[0];

    /// <summary>Answers question i about image i, in batches; results in input order.</summary>
    public IReadOnlyList<AnswerResult> Answer(IReadOnlyList<ImageSource> images, IReadOnlyList<string> questions, AnswerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(questions);
        if (images.Count != questions.Count) throw new ArgumentException($"{images.Count} images for {questions.Count} questions: give one image per question.");
        options ??= new AnswerOptions();
        if (options.Generation.NumReturnSequences != 1) throw new ArgumentException("answers are generated one per question (NumReturnSequences must be 1).");
        var results = new List<AnswerResult>(images.Count);
        foreach (var (start, count) in PipelineModel.Batches(images.Count, options.BatchSize))
        {
            using var scope = NewDisposeScope();
            using var inference = inference_mode();
            var batchImages = images.Skip(start).Take(count).ToList();
            var batchQuestions = questions.Skip(start).Take(count).ToList();
            var pixels = PipelineModel.Pixels(Processor, batchImages, _device);
            var text = Processor.Tokenizer.EncodeToTensors(batchQuestions, new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }, _device);
            using var generated = Model.Generate(pixels, text.InputIds, text.AttentionMask, options.Generation);
            for (int i = 0; i < count; i++)
            {
                var ids = PipelineModel.TrimPadding(generated.Sequences[i], generated.PromptLength, generated.EosTokenId, generated.PadTokenId);
                string answer = Processor.Tokenizer.Decode(generated.GeneratedTokens(i), skipSpecialTokens: true);
                results.Add(new AnswerResult(batchImages[i].Name, batchQuestions[i], answer, ids, generated.SequenceScores?[i]));
            }
        }
        return results;
    }

    /// <summary>
    /// Ranks <paramref name="candidates"/> as answers to <paramref name="question"/> about <paramref name="image"/>, best
    /// first: the <paramref name="topK"/> candidates with the most probable first token are scored by their full
    /// log-likelihood (BLIP's <c>rank_answer</c>, which uses k = 128).
    /// </summary>
    public IReadOnlyList<RankedAnswer> RankAnswers(ImageSource image, string question, IReadOnlyList<string> candidates, int topK = 128)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        if (candidates.Count == 0) throw new ArgumentException("give at least one candidate answer.", nameof(candidates));
        using var scope = NewDisposeScope();
        using var inference = inference_mode();
        var pixels = PipelineModel.Pixels(Processor, [image], _device);
        var q = Processor.Tokenizer.EncodeToTensors([question], device: _device);
        var imageEmbeds = Model.EncodeImage(pixels);
        var questionEmbeds = Model.EncodeQuestion(imageEmbeds, q.InputIds, q.AttentionMask);
        var answers = Processor.Tokenizer.EncodeToTensors(candidates, new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }, _device);
        var answerIds = answers.InputIds.clone();
        answerIds.select(1, 0).fill_(Model.Config.TextConfig.BosTokenId);                      // [CLS] -> [DEC]
        var (indices, logLikelihoods) = Model.RankAnswers(questionEmbeds, q.AttentionMask, answerIds, answers.AttentionMask, topK);

        // First-token probabilities for the report.
        using var startOutput = Model.text_decoder.Forward(answerIds.narrow(0, 0, 1).narrow(1, 0, 1), null, questionEmbeds, q.AttentionMask);
        var firstProbs = startOutput.Logits.select(1, 0).softmax(1).squeeze(0);               // (V)
        var firstTokens = answerIds.select(1, 1).to(CPU).data<long>().ToArray();
        var probs = firstProbs.to(ScalarType.Float32, CPU).data<float>().ToArray();
        var kept = indices.to(CPU).data<long>().ToArray();
        var scores = logLikelihoods.to(ScalarType.Float64, CPU).data<double>().ToArray();
        return kept.Select((c, j) => new RankedAnswer(candidates[(int)c], scores[j], probs[firstTokens[c]]))
            .OrderByDescending(a => a.LogLikelihood).ToList();
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose() => Model.Dispose();
}
