using BlipSharp.Configuration;
using BlipSharp.Modeling.Text;
using BlipSharp.Modeling.Vision;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling;

/// <summary>
/// Visual question answering, as transformers' <c>BlipForQuestionAnswering</c>: the question goes through the
/// image-grounded text encoder; the answer decoder cross-attends to the question's multimodal states.
/// </summary>
public sealed class BlipForQuestionAnswering : Module, IBlipTaskModel
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Image encoder.</summary>
    public BlipVisionModel vision_model;
    /// <summary>Question encoder (image-grounded).</summary>
    public BlipTextModel text_encoder;
    /// <summary>Answer decoder with its LM head.</summary>
    public BlipTextLMHeadModel text_decoder;
#pragma warning restore IDE1006

    /// <summary>Creates a randomly initialised model for <paramref name="config"/>.</summary>
    public BlipForQuestionAnswering(BlipConfig config) : base(nameof(BlipForQuestionAnswering))
    {
        Config = config.Normalized();
        vision_model = new BlipVisionModel(Config.VisionConfig);
        text_encoder = new BlipTextModel(Config.TextConfig, addPoolingLayer: false);
        text_decoder = new BlipTextLMHeadModel(Config.TextConfig);
        RegisterComponents();
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (<c>config.json</c> + <c>model.safetensors</c> or <c>pytorch_model.bin</c>)
    /// strictly, in evaluation mode; see <see cref="Checkpoints.BlipCheckpoint"/>. A Hub repo id instead of a folder
    /// is downloaded into the huggingface_hub cache (<see cref="Checkpoints.BlipLoadOptions.Hub"/>).
    /// </summary>
    public static BlipForQuestionAnswering FromPretrained(string pathOrRepoId, Checkpoints.BlipLoadOptions? options = null) =>
        Checkpoints.BlipCheckpoint.LoadForQuestionAnswering(pathOrRepoId, options);

    /// <summary>Pixels (B, C, S, S) -> image states (B, 1+N, Dv).</summary>
    public Tensor EncodeImage(Tensor pixelValues, bool interpolatePositionEncoding = false) =>
        vision_model.Encode(pixelValues, interpolatePositionEncoding);

    /// <summary>Image-grounded question states (B, Tq, H); the question starts with [CLS] as in transformers.</summary>
    public Tensor EncodeQuestion(Tensor imageEmbeds, Tensor inputIds, Tensor? attentionMask = null)
    {
        using var output = text_encoder.Forward(inputIds, attentionMask, imageEmbeds);
        return output.LastHiddenState.alias();
    }

    /// <summary>Decodes answers (B, Ta) against question states; loss with labels.</summary>
    /// <param name="questionEmbeds">(B, Tq, H).</param>
    /// <param name="questionMask">(B, Tq) question mask for the cross-attention, or null for all ones (as generation does).</param>
    /// <param name="decoderInputIds">(B, Ta) answer ids.</param>
    /// <param name="decoderAttentionMask">(B, Ta) answer padding mask, or null.</param>
    /// <param name="labels">(B, Ta) targets (-100 ignored), or null.</param>
    /// <param name="reduction">Token-mean or per-sequence sum.</param>
    /// <param name="labelSmoothing">Overrides <c>text_config.label_smoothing</c>.</param>
    public CausalLMOutput DecodeAnswer(Tensor questionEmbeds, Tensor? questionMask, Tensor decoderInputIds, Tensor? decoderAttentionMask = null,
        Tensor? labels = null, LossReduction reduction = LossReduction.Mean, double? labelSmoothing = null) =>
        text_decoder.Forward(decoderInputIds, decoderAttentionMask, questionEmbeds, questionMask, labels, reduction, labelSmoothing);

    /// <summary>
    /// transformers' forward: with <paramref name="labels"/> and no <paramref name="decoderInputIds"/>, the labels are
    /// the decoder input; the answer decoder's cross-attention uses the question's attention mask.
    /// </summary>
    public QuestionAnsweringOutput Forward(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null, Tensor? decoderInputIds = null,
        Tensor? decoderAttentionMask = null, Tensor? labels = null, double? labelSmoothing = null)
    {
        var image = EncodeImage(pixelValues);
        var question = EncodeQuestion(image, inputIds, attentionMask);
        Tensor decoderInput = decoderInputIds ?? labels ?? full(inputIds.shape[0], 1, Config.TextConfig.BosTokenId, dtype: ScalarType.Int64, device: inputIds.device);
        using var decoded = DecodeAnswer(question, attentionMask, decoderInput, decoderAttentionMask, labels, LossReduction.Mean, labelSmoothing);
        if (decoderInputIds is null && labels is null) decoderInput.Dispose();
        return new QuestionAnsweringOutput(decoded.Loss?.alias(), decoded.Logits.alias(), question, image);
    }

    /// <summary>
    /// Generates answers as transformers' <c>generate</c>: the question is encoded against the image (with its
    /// attention mask), then the answer decoder starts from <c>[DEC]</c> and cross-attends to every question state
    /// (transformers passes an all-ones mask here, so question padding is attended).
    /// </summary>
    /// <param name="pixelValues">(B, C, S, S) preprocessed images.</param>
    /// <param name="inputIds">(B, Tq) question ids starting with <c>[CLS]</c>.</param>
    /// <param name="attentionMask">(B, Tq) question mask, or null.</param>
    /// <param name="options">Decoding settings; null for transformers' defaults.</param>
    /// <param name="interpolatePositionEncoding">Interpolate the vision position embeddings to the image size.</param>
    public Generation.GeneratedSequences Generate(Tensor pixelValues, Tensor inputIds, Tensor? attentionMask = null,
        Generation.GenerationOptions? options = null, bool interpolatePositionEncoding = false)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var image = EncodeImage(pixelValues, interpolatePositionEncoding);
        var question = EncodeQuestion(image, inputIds, attentionMask);
        return GenerateAnswer(question, options);
    }

    /// <summary>Generates answers from question states (B, Tq, H), cross-attending to all of them.</summary>
    public Generation.GeneratedSequences GenerateAnswer(Tensor questionEmbeds, Generation.GenerationOptions? options = null)
    {
        using var start = full(questionEmbeds.shape[0], 1, (long)Config.TextConfig.BosTokenId, dtype: ScalarType.Int64, device: questionEmbeds.device);
        return Generation.TextGenerator.Generate(text_decoder, questionEmbeds, encoderAttentionMask: null, start, null, options);
    }

    /// <summary>
    /// Ranks candidate answers for each question as the original BLIP's <c>rank_answer</c>: one decoder step from
    /// <c>[DEC]</c> (under the question mask) gives each candidate's first-token probability; the k candidates with the
    /// most probable first token are kept (question-major, each question's states repeated k times) and scored by
    /// minus their summed sequence loss (end token included); the answer is the kept candidate with the best score.
    /// <see cref="AnswerRanking.Indices"/> and <see cref="AnswerRanking.LogLikelihoods"/> are in first-token order; sort
    /// by the score for the ranking.
    /// </summary>
    /// <param name="questionEmbeds">(B, Tq, H) image-grounded question states.</param>
    /// <param name="questionMask">(B, Tq) question mask for the cross-attention, or null for all ones.</param>
    /// <param name="answerIds">(A, La) candidate ids as the tokenizer pads them, with <c>[DEC]</c> in column 0.</param>
    /// <param name="answerMask">(A, La) their padding mask.</param>
    /// <param name="k">Candidates kept after the first-token filter (capped at A).</param>
    /// <param name="labelSmoothing">
    /// Label smoothing of the sequence loss; 0 scores the true log-likelihood. The original BLIP ranks with 0.1 (its
    /// decoder hard-codes it), so its score is minus the smoothed cross-entropy, not a pure log-likelihood.
    /// </param>
    public AnswerRanking RankAnswers(Tensor questionEmbeds, Tensor? questionMask, Tensor answerIds, Tensor answerMask, int k, double labelSmoothing = 0.0)
    {
        if (answerIds.dim() != 2 || answerIds.shape[1] < 2)
            throw new ArgumentException($"answer ids must be (answers, length >= 2), got ({string.Join(", ", answerIds.shape)}).", nameof(answerIds));
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be at least 1.");
        using var scope = NewDisposeScope();
        long questions = questionEmbeds.shape[0], answers = answerIds.shape[0];
        int kept = (int)Math.Min(k, answers);
        var start = answerIds.narrow(0, 0, 1).narrow(1, 0, 1).expand(questions, 1);            // (B, 1): [DEC]
        using var startOutput = text_decoder.Forward(start, null, questionEmbeds, questionMask);
        var firstLogits = startOutput.Logits.select(1, 0);                                       // (B, V)
        var firstTokens = answerIds.select(1, 1);                                                // (A)
        var firstTokenLogits = firstLogits.index_select(1, firstTokens);                         // (B, A)
        var logSumExp = firstLogits.logsumexp(1);                                                // (B)
        var firstProbs = firstLogits.softmax(1).index_select(1, firstTokens);                    // (B, A)
        var (topProbs, topIds) = firstProbs.topk(kept, dim: 1);                                  // (B, k)
        var flatIds = topIds.reshape(-1);                                                        // (B*k)
        var ids = answerIds.index_select(0, flatIds);                                            // (B*k, La)
        var mask = answerMask.index_select(0, flatIds);                                          // (B*k, La)
        var targets = ids.masked_fill(ids.eq(Config.TextConfig.PadTokenId), -100);
        var states = questionEmbeds.repeat_interleave(kept, 0);                                  // (B*k, Tq, H)
        var statesMask = questionMask?.repeat_interleave(kept, 0);                               // (B*k, Tq)
        using var output = text_decoder.Forward(ids, mask, states, statesMask, targets, LossReduction.SumPerSequence, labelSmoothing);
        var scores = output.Loss!.neg().view(questions, kept);                                   // (B, k)
        var best = topIds.gather(1, scores.argmax(1, keepdim: true)).squeeze(1);                 // (B)
        return new AnswerRanking(topIds.MoveToOuterDisposeScope(), scores.MoveToOuterDisposeScope(), best.MoveToOuterDisposeScope(),
            firstTokenLogits.MoveToOuterDisposeScope(), logSumExp.MoveToOuterDisposeScope(), firstProbs.MoveToOuterDisposeScope(),
            topProbs.MoveToOuterDisposeScope(), ids.MoveToOuterDisposeScope(), targets.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Makes the answer decoder's LM-head projection the same Parameter as its word embeddings, as transformers'
    /// <c>tie_weights</c> and the original BLIP (whose <c>cls.predictions.decoder.weight</c> IS
    /// <c>bert.embeddings.word_embeddings.weight</c>): training then sums both uses into one gradient. Call it
    /// before training from an original checkpoint; see <see cref="BlipTextLMHeadModel.TieWeights"/>.
    /// </summary>
    public void TieWeights() => text_decoder.TieWeights();
}
