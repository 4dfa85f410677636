using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Generation;

/// <summary>
/// Changes next-token scores (N, V) in place given the sequences so far, as transformers' <c>LogitsProcessor</c>s and
/// <c>LogitsWarper</c>s do. Scores are float32, one row per running sequence.
/// </summary>
internal interface ILogitsProcessor
{
    /// <summary>Processes <paramref name="scores"/> (N, V) in place; <paramref name="sequences"/> holds the N rows so far.</summary>
    void Process(IReadOnlyList<List<long>> sequences, Tensor scores);
}

/// <summary>Forbids end of sequence while a row is shorter than the minimum (<c>MinLengthLogitsProcessor</c>).</summary>
internal sealed class MinLengthProcessor(int minLength, long eosTokenId) : ILogitsProcessor
{
    public void Process(IReadOnlyList<List<long>> sequences, Tensor scores)
    {
        if (sequences[0].Count >= minLength) return;
        using var column = scores.select(1, eosTokenId);
        column.fill_(KeptScalars.Of(float.NegativeInfinity));
    }
}

/// <summary>
/// Penalises tokens already in the sequence: positive scores are divided by the penalty, negative ones multiplied
/// (<c>RepetitionPenaltyLogitsProcessor</c>, CTRL's rule).
/// </summary>
internal sealed class RepetitionPenaltyProcessor(double penalty) : ILogitsProcessor
{
    public void Process(IReadOnlyList<List<long>> sequences, Tensor scores)
    {
        using var scope = NewDisposeScope();
        var ids = TokenTensor(sequences, scores.device);                       // (N, L)
        var picked = scores.gather(1, ids);                                    // (N, L)
        var penalised = where(picked.lt(KeptScalars.Of(0.0)), picked * KeptScalars.Of(penalty), picked / KeptScalars.Of(penalty));
        scores.scatter_(1, ids, penalised);
    }

    internal static Tensor TokenTensor(IReadOnlyList<List<long>> sequences, Device device)
    {
        int n = sequences.Count, length = sequences[0].Count;
        var flat = new long[n * length];
        for (int r = 0; r < n; r++) sequences[r].CopyTo(flat, r * length);
        return tensor(flat, [n, length], ScalarType.Int64, device);
    }
}

/// <summary>Forbids any token that would repeat an n-gram already in the row (<c>NoRepeatNGramLogitsProcessor</c>).</summary>
internal sealed class NoRepeatNgramProcessor(int ngramSize) : ILogitsProcessor
{
    public void Process(IReadOnlyList<List<long>> sequences, Tensor scores)
    {
        int length = sequences[0].Count;
        if (length + 1 < ngramSize) return;
        long vocab = scores.shape[1];
        var banned = new List<long>();
        for (int r = 0; r < sequences.Count; r++)
        {
            var seq = sequences[r];
            int prefixStart = length + 1 - ngramSize;
            for (int start = 0; start + ngramSize <= length; start++)
            {
                bool same = true;
                for (int j = 0; j < ngramSize - 1 && same; j++) same = seq[start + j] == seq[prefixStart + j];
                if (same) banned.Add(r * vocab + seq[start + ngramSize - 1]);
            }
        }
        if (banned.Count == 0) return;
        using var flat = scores.view(-1);
        using var index = tensor(banned.ToArray(), ScalarType.Int64, scores.device);
        flat.index_fill_(0, index, KeptScalars.Of(float.NegativeInfinity));
    }
}

/// <summary>Divides the scores by a temperature (<c>TemperatureLogitsWarper</c>).</summary>
internal sealed class TemperatureWarper(double temperature) : ILogitsProcessor
{
    public void Process(IReadOnlyList<List<long>> sequences, Tensor scores) => scores.div_(KeptScalars.Of(temperature));
}

/// <summary>Keeps the k highest scores of each row, ties with the k-th included (<c>TopKLogitsWarper</c>).</summary>
internal sealed class TopKWarper(int topK) : ILogitsProcessor
{
    public void Process(IReadOnlyList<List<long>> sequences, Tensor scores)
    {
        int k = (int)Math.Min(topK, scores.shape[1]);
        using var scope = NewDisposeScope();
        var (values, _) = scores.topk(k, dim: 1);
        var kth = values.narrow(1, k - 1, 1);                                   // (N, 1)
        scores.masked_fill_(scores.lt(kth), KeptScalars.Of(float.NegativeInfinity));
    }
}

/// <summary>
/// Nucleus filtering: keeps the smallest set of most likely tokens whose probability reaches p, and always the most
/// likely one (<c>TopPLogitsWarper</c>).
/// </summary>
internal sealed class TopPWarper(double topP) : ILogitsProcessor
{
    public void Process(IReadOnlyList<List<long>> sequences, Tensor scores)
    {
        using var scope = NewDisposeScope();
        var (sorted, indices) = scores.sort(dim: 1, descending: false);          // ascending (N, V)
        var cumulative = sorted.softmax(1).cumsum(1);
        var remove = cumulative.le(KeptScalars.Of(1 - topP));
        remove.select(1, remove.shape[1] - 1).fill_(KeptScalars.OfFalse);                     // keep at least one token
        var removeOriginal = remove.scatter(1, indices, remove);
        scores.masked_fill_(removeOriginal, KeptScalars.Of(float.NegativeInfinity));
    }
}

/// <summary>Builds the processor lists transformers' <c>generate</c> would use for given options.</summary>
internal static class LogitsProcessorList
{
    /// <summary>Processors applied to every decoding strategy, in transformers' order.</summary>
    public static List<ILogitsProcessor> Processors(GenerationOptions options)
    {
        var list = new List<ILogitsProcessor>();
        if (options.RepetitionPenalty != 1.0) list.Add(new RepetitionPenaltyProcessor(options.RepetitionPenalty));
        if (options.NoRepeatNgramSize > 0) list.Add(new NoRepeatNgramProcessor(options.NoRepeatNgramSize));
        if (options.MinLength > 0) list.Add(new MinLengthProcessor(options.MinLength, options.EosTokenId!.Value));
        return list;
    }

    /// <summary>Warpers applied when sampling, in transformers' order: temperature, top-k, top-p.</summary>
    public static List<ILogitsProcessor> Warpers(GenerationOptions options)
    {
        var list = new List<ILogitsProcessor>();
        if (!options.DoSample) return list;
        if (options.Temperature != 1.0) list.Add(new TemperatureWarper(options.Temperature));
        if (options.TopK > 0) list.Add(new TopKWarper(options.TopK));
        if (options.TopP < 1.0) list.Add(new TopPWarper(options.TopP));
        return list;
    }

    public static void Apply(List<ILogitsProcessor> processors, IReadOnlyList<List<long>> sequences, Tensor scores)
    {
        foreach (var p in processors) p.Process(sequences, scores);
    }
}
