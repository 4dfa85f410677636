using static TorchSharp.torch;

namespace BlipSharp.Generation;

/// <summary>
/// Generated token ids as transformers returns them: one row per output sequence (inputs in order, then their
/// returned sequences), the start token and prompt included, rows padded to one width with the pad token.
/// </summary>
public sealed class GeneratedSequences : IDisposable
{
    internal GeneratedSequences(long[][] sequences, int promptLength, float[]? sequenceScores, Tensor? stepLogits, long eosTokenId, long padTokenId)
    {
        Sequences = sequences;
        PromptLength = promptLength;
        SequenceScores = sequenceScores;
        StepLogits = stepLogits;
        EosTokenId = eosTokenId;
        PadTokenId = padTokenId;
    }

    /// <summary>The sequences, (inputs x sequences per input) rows of equal length.</summary>
    public IReadOnlyList<long[]> Sequences { get; }

    /// <summary>Tokens at the start of every row that were given, not generated (start token plus prompt).</summary>
    public int PromptLength { get; }

    /// <summary>Beam search: each returned hypothesis's length-normalised score; null for greedy decoding and sampling.</summary>
    public IReadOnlyList<float>? SequenceScores { get; }

    /// <summary>
    /// With <see cref="GenerationOptions.OutputLogits"/>: the raw next-token logits of every step, (steps, rows, V),
    /// where rows are the running sequences (inputs x beams or samples) before any processing; else null.
    /// </summary>
    public Tensor? StepLogits { get; }

    /// <summary>The end-of-sequence token used.</summary>
    public long EosTokenId { get; }

    /// <summary>The padding token used.</summary>
    public long PadTokenId { get; }

    /// <summary>Row <paramref name="row"/>'s generated tokens: after the prompt, up to (not including) end of sequence or padding.</summary>
    public long[] GeneratedTokens(int row)
    {
        var seq = Sequences[row];
        int end = PromptLength;
        while (end < seq.Length && seq[end] != EosTokenId && seq[end] != PadTokenId) end++;
        return seq[PromptLength..end];
    }

    /// <summary>Disposes <see cref="StepLogits"/>.</summary>
    public void Dispose() => StepLogits?.Dispose();
}
