using static TorchSharp.torch;

namespace BlipSharp.Modeling;

/// <summary>Output of the image encoder.</summary>
/// <param name="LastHiddenState">(B, 1+N, Dv), after the post LayerNorm.</param>
/// <param name="PoolerOutput">(B, Dv): the post LayerNorm applied once more to the class token (transformers' behaviour).</param>
/// <param name="HiddenStates">(L+1, B, 1+N, Dv): embeddings and each block's output before the post LayerNorm; null unless requested.</param>
public sealed record BlipVisionOutput(Tensor LastHiddenState, Tensor PoolerOutput, Tensor? HiddenStates) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PoolerOutput.Dispose();
        HiddenStates?.Dispose();
    }
}

/// <summary>Output of the text transformer.</summary>
/// <param name="LastHiddenState">(B, T, H).</param>
/// <param name="PoolerOutput">(B, H) tanh(dense(first token)) when the model has a pooler, else null.</param>
/// <param name="HiddenStates">(L+1, B, T, H) when requested, else null.</param>
public sealed record BlipTextModelOutput(Tensor LastHiddenState, Tensor? PoolerOutput, Tensor? HiddenStates) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        LastHiddenState.Dispose();
        PoolerOutput?.Dispose();
        HiddenStates?.Dispose();
    }
}

/// <summary>Output of the text decoder.</summary>
/// <param name="Logits">(B, T, V) next-token logits.</param>
/// <param name="Loss">Scalar mean loss, (B) per-sequence losses, or null without labels.</param>
/// <param name="LastHiddenState">(B, T, H) decoder states.</param>
public sealed record CausalLMOutput(Tensor Logits, Tensor? Loss, Tensor LastHiddenState) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Logits.Dispose();
        Loss?.Dispose();
        LastHiddenState.Dispose();
    }
}

/// <summary>Output of captioning's forward pass.</summary>
/// <param name="Logits">(B, T, V) decoder logits.</param>
/// <param name="Loss">Scalar LM loss when labels were given.</param>
/// <param name="ImageEmbeds">(B, 1+N, Dv) image states the decoder read.</param>
/// <param name="DecoderLastHiddenState">(B, T, H) decoder states.</param>
public sealed record CaptioningOutput(Tensor Logits, Tensor? Loss, Tensor ImageEmbeds, Tensor DecoderLastHiddenState) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Logits.Dispose();
        Loss?.Dispose();
        ImageEmbeds.Dispose();
        DecoderLastHiddenState.Dispose();
    }
}

/// <summary>Image-text matching through the image-grounded encoder.</summary>
/// <param name="Logits">(B, 2) ITM head logits: [no match, match].</param>
/// <param name="Probabilities">(B, 2) softmax of the logits; column 1 is the match probability.</param>
public sealed record ItmOutput(Tensor Logits, Tensor Probabilities) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Logits.Dispose();
        Probabilities.Dispose();
    }
}

/// <summary>Image-text contrastive similarity.</summary>
/// <param name="Cosine">(I, T) cosine similarities of the normalised features.</param>
/// <param name="ImageFeatures">(I, P) L2-normalised image features.</param>
/// <param name="TextFeatures">(T, P) L2-normalised text features.</param>
public sealed record ItcOutput(Tensor Cosine, Tensor ImageFeatures, Tensor TextFeatures) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Cosine.Dispose();
        ImageFeatures.Dispose();
        TextFeatures.Dispose();
    }
}

/// <summary>Output of the CLIP-style <see cref="BlipModel"/>.</summary>
/// <param name="LogitsPerImage">(I, T) exp(logit_scale) times the cosine similarities.</param>
/// <param name="LogitsPerText">(T, I) the transpose.</param>
/// <param name="ImageEmbeds">(I, P) normalised image embeddings.</param>
/// <param name="TextEmbeds">(T, P) normalised text embeddings.</param>
/// <param name="Loss">Symmetric contrastive loss when requested (needs I = T), else null.</param>
public sealed record BlipOutput(Tensor LogitsPerImage, Tensor LogitsPerText, Tensor ImageEmbeds, Tensor TextEmbeds, Tensor? Loss) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        LogitsPerImage.Dispose();
        LogitsPerText.Dispose();
        ImageEmbeds.Dispose();
        TextEmbeds.Dispose();
        Loss?.Dispose();
    }
}

/// <summary>Output of VQA's forward pass.</summary>
/// <param name="Loss">Scalar answer LM loss when labels were given.</param>
/// <param name="DecoderLogits">(B, T, V) answer decoder logits.</param>
/// <param name="QuestionEmbeds">(B, Tq, H) image-grounded question states.</param>
/// <param name="ImageEmbeds">(B, 1+N, Dv) image states.</param>
public sealed record QuestionAnsweringOutput(Tensor? Loss, Tensor DecoderLogits, Tensor QuestionEmbeds, Tensor ImageEmbeds) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Loss?.Dispose();
        DecoderLogits.Dispose();
        QuestionEmbeds.Dispose();
        ImageEmbeds.Dispose();
    }
}

/// <summary>
/// The original BLIP's <c>rank_answer</c> for a batch of questions against A candidate answers, with its
/// intermediate values. Question-major throughout: row b belongs to question b.
/// </summary>
/// <param name="Indices">(B, k) int64: the kept candidates (indices into the candidate list), most probable first token first.</param>
/// <param name="LogLikelihoods">(B, k): each kept candidate's score, minus its summed (label-smoothed) sequence loss.</param>
/// <param name="Best">(B) int64: the chosen candidate per question, <c>Indices[b, argmax LogLikelihoods[b]]</c>.</param>
/// <param name="FirstTokenLogits">(B, A): the logit of each candidate's first token after <c>[DEC]</c>.</param>
/// <param name="FirstTokenLogSumExp">(B): logsumexp of that step's logits over the vocabulary.</param>
/// <param name="FirstTokenProbabilities">(B, A): softmax over the vocabulary, at each candidate's first token.</param>
/// <param name="TopKProbabilities">(B, k): the first-token probabilities of the kept candidates.</param>
/// <param name="CandidateIds">(B*k, La) int64: the kept candidates' ids, question-major.</param>
/// <param name="CandidateTargets">(B*k, La) int64: those ids with [PAD] -> -100 (the sequence-loss labels).</param>
public sealed record AnswerRanking(Tensor Indices, Tensor LogLikelihoods, Tensor Best, Tensor FirstTokenLogits, Tensor FirstTokenLogSumExp,
    Tensor FirstTokenProbabilities, Tensor TopKProbabilities, Tensor CandidateIds, Tensor CandidateTargets) : IDisposable
{
    /// <summary>The kept candidates and their scores (<c>var (indices, scores) = ranking</c>).</summary>
    public void Deconstruct(out Tensor indices, out Tensor logLikelihoods)
    {
        indices = Indices;
        logLikelihoods = LogLikelihoods;
    }

    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Indices.Dispose();
        LogLikelihoods.Dispose();
        Best.Dispose();
        FirstTokenLogits.Dispose();
        FirstTokenLogSumExp.Dispose();
        FirstTokenProbabilities.Dispose();
        TopKProbabilities.Dispose();
        CandidateIds.Dispose();
        CandidateTargets.Dispose();
    }
}

/// <summary>Output of <see cref="BlipForNlvr"/>: whether a sentence is true of a pair of images.</summary>
/// <param name="Logits">(B, 2) classifier logits: [False, True].</param>
/// <param name="HiddenState">(B, H) the text's first-token ([ENC]) state, grounded in both images, that the head reads.</param>
/// <param name="ImageEmbeds">(2B, 1+N, Dv) image states: the B first images, then the B second images.</param>
public sealed record NlvrOutput(Tensor Logits, Tensor HiddenState, Tensor ImageEmbeds) : IDisposable
{
    /// <summary>Disposes every tensor.</summary>
    public void Dispose()
    {
        Logits.Dispose();
        HiddenState.Dispose();
        ImageEmbeds.Dispose();
    }
}
