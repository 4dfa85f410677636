using BlipSharp.Processing;
using static TorchSharp.torch;

namespace BlipSharp.Training.Vqa;

/// <summary>BLIP_VQA's tokenizer calls, with its special first tokens.</summary>
public static class VqaTextEncoding
{
    /// <summary>BLIP_VQA's question <c>max_length</c>.</summary>
    public const int QuestionMaxLength = 35;

    /// <summary>
    /// Questions as BLIP_VQA tokenizes them: <c>padding='longest', truncation=True, max_length=35</c>, then column 0
    /// (<c>[CLS]</c>) replaced by <c>[ENC]</c> (the image-grounded encoder's first token).
    /// </summary>
    /// <param name="tokenizer">BLIP's tokenizer (with <c>[ENC]</c>).</param>
    /// <param name="questions">Cleaned questions (<see cref="Data.TextCleaning.PreQuestion"/>).</param>
    /// <param name="maxLength">Token limit, special tokens included.</param>
    /// <param name="device">Where the tensors go (CPU when null).</param>
    public static TokenizedTensors EncodeQuestions(BlipTokenizer tokenizer, IReadOnlyList<string> questions, int maxLength = QuestionMaxLength, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (questions.Count == 0) throw new ArgumentException("no question to encode.", nameof(questions));
        var encoded = tokenizer.EncodeToTensors(questions, new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest, Truncation = true, MaxLength = maxLength }, device);
        encoded.InputIds.select(1, 0).fill_(tokenizer.EncTokenId);
        return encoded;
    }

    /// <summary>
    /// Answers (training targets or rank candidates) as BLIP tokenizes them: <c>padding='longest'</c>, no truncation,
    /// then column 0 (<c>[CLS]</c>) replaced by <c>[DEC]</c> (the decoder's start token); <c>[SEP]</c> stays as the end.
    /// </summary>
    /// <param name="tokenizer">BLIP's tokenizer (with <c>[DEC]</c> as bos token).</param>
    /// <param name="answers">The answer texts as annotated.</param>
    /// <param name="device">Where the tensors go (CPU when null).</param>
    public static TokenizedTensors EncodeAnswers(BlipTokenizer tokenizer, IReadOnlyList<string> answers, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (answers.Count == 0) throw new ArgumentException("no answer to encode.", nameof(answers));
        var encoded = tokenizer.EncodeToTensors(answers, new TokenizerEncodeOptions { Padding = PaddingStrategy.Longest }, device);
        encoded.InputIds.select(1, 0).fill_(tokenizer.BosTokenId);
        return encoded;
    }
}
