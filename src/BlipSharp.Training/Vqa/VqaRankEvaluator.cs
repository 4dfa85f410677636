using BlipSharp.Modeling;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>Options of <see cref="VqaRankEvaluator"/>; the defaults are BLIP's <c>configs/vqa.yaml</c> and <c>BLIP_VQA</c>.</summary>
public sealed record VqaRankOptions
{
    /// <summary>Candidates kept per question after the first-token filter (BLIP's <c>k_test</c>: 128); capped at the list's size.</summary>
    public int K { get; init; } = 128;

    /// <summary>Label smoothing of the sequence score (BLIP's decoder hard-codes 0.1, also when ranking).</summary>
    public double LabelSmoothing { get; init; } = 0.1;

    /// <summary>Apply <see cref="TextCleaning.PreQuestion"/> to the questions first, as BLIP's test dataset does.</summary>
    public bool CleanQuestions { get; init; } = true;
}

/// <summary>
/// BLIP's closed-vocabulary VQA evaluation (<c>train_vqa.evaluation</c> with <c>inference='rank'</c>): the answer list
/// is tokenized once (<c>padding='longest'</c>, <c>[DEC]</c> in column 0); for each batch the questions are encoded
/// against their images and every question gets the candidate <see cref="BlipForQuestionAnswering.RankAnswers"/> chooses,
/// returned as the list's string as is.
/// </summary>
public sealed class VqaRankEvaluator : IDisposable
{
    private readonly TokenizedTensors _candidates;

    /// <summary>Creates the evaluator and tokenizes <paramref name="answerList"/> on the model's device.</summary>
    /// <param name="model">The VQA model (evaluated under no_grad; its train/eval mode is the caller's).</param>
    /// <param name="tokenizer">BLIP's tokenizer.</param>
    /// <param name="answerList">The candidate answers (BLIP's <c>answer_list.json</c>).</param>
    /// <param name="options">k, label smoothing, question cleaning.</param>
    public VqaRankEvaluator(BlipForQuestionAnswering model, BlipTokenizer tokenizer, IReadOnlyList<string> answerList, VqaRankOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(answerList);
        if (answerList.Count == 0) throw new ArgumentException("the answer list is empty.", nameof(answerList));
        Options = options ?? new VqaRankOptions();
        if (Options.K < 1) throw new ArgumentOutOfRangeException(nameof(options), Options.K, "K must be at least 1.");
        Model = model;
        Tokenizer = tokenizer;
        AnswerList = answerList.ToList();
        var device = model.parameters().First().device;
        _candidates = VqaTextEncoding.EncodeAnswers(tokenizer, AnswerList, device);
    }

    /// <summary>The model.</summary>
    public BlipForQuestionAnswering Model { get; }

    /// <summary>The tokenizer.</summary>
    public BlipTokenizer Tokenizer { get; }

    /// <summary>The candidate answers.</summary>
    public IReadOnlyList<string> AnswerList { get; }

    /// <summary>The options.</summary>
    public VqaRankOptions Options { get; }

    /// <summary>(A, La) int64 candidate ids, <c>[DEC]</c> first, padded to the longest (owned by the evaluator).</summary>
    public Tensor CandidateIds => _candidates.InputIds;

    /// <summary>(A, La) the candidates' padding mask (owned by the evaluator).</summary>
    public Tensor CandidateMask => _candidates.AttentionMask;

    /// <summary>
    /// The ranking of one batch with its intermediate values (the caller disposes it).
    /// </summary>
    /// <param name="pixelValues">(B, 3, S, S) one image per question.</param>
    /// <param name="questions">B questions.</param>
    public AnswerRanking Rank(Tensor pixelValues, IReadOnlyList<string> questions)
    {
        ArgumentNullException.ThrowIfNull(questions);
        if (pixelValues.shape[0] != questions.Count)
            throw new ArgumentException($"{pixelValues.shape[0]} images for {questions.Count} questions.", nameof(questions));
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var cleaned = Options.CleanQuestions ? questions.Select(q => TextCleaning.PreQuestion(q)).ToList() : questions;
        var encoded = VqaTextEncoding.EncodeQuestions(Tokenizer, cleaned, device: pixelValues.device);
        var imageEmbeds = Model.EncodeImage(pixelValues);                                            // (B, 1+N, Dv)
        var questionStates = Model.EncodeQuestion(imageEmbeds, encoded.InputIds, encoded.AttentionMask); // (B, Lq, D)
        var ranking = Model.RankAnswers(questionStates, encoded.AttentionMask, _candidates.InputIds, _candidates.AttentionMask, Options.K, Options.LabelSmoothing);
        return ranking with
        {
            Indices = ranking.Indices.MoveToOuterDisposeScope(),
            LogLikelihoods = ranking.LogLikelihoods.MoveToOuterDisposeScope(),
            Best = ranking.Best.MoveToOuterDisposeScope(),
            FirstTokenLogits = ranking.FirstTokenLogits.MoveToOuterDisposeScope(),
            FirstTokenLogSumExp = ranking.FirstTokenLogSumExp.MoveToOuterDisposeScope(),
            FirstTokenProbabilities = ranking.FirstTokenProbabilities.MoveToOuterDisposeScope(),
            TopKProbabilities = ranking.TopKProbabilities.MoveToOuterDisposeScope(),
            CandidateIds = ranking.CandidateIds.MoveToOuterDisposeScope(),
            CandidateTargets = ranking.CandidateTargets.MoveToOuterDisposeScope(),
        };
    }

    /// <summary>BLIP's chosen answer for each question: a string of <see cref="AnswerList"/>, as is.</summary>
    /// <param name="pixelValues">(B, 3, S, S) one image per question.</param>
    /// <param name="questions">B questions.</param>
    public IReadOnlyList<string> Answer(Tensor pixelValues, IReadOnlyList<string> questions)
    {
        using var ranking = Rank(pixelValues, questions);
        using var best = ranking.Best.cpu();
        return best.data<long>().ToArray().Select(i => AnswerList[(int)i]).ToList();
    }

    /// <summary>Disposes the tokenized candidates.</summary>
    public void Dispose() => _candidates.Dispose();
}
