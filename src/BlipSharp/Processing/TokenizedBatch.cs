using static TorchSharp.torch;

namespace BlipSharp.Processing;

/// <summary>
/// Token ids and attention mask of a batch of texts, one row per text (Hugging Face <c>BatchEncoding</c> with
/// <c>input_ids</c> and <c>attention_mask</c>). Rows have equal length when the batch was padded.
/// </summary>
/// <param name="InputIds">Token ids, <c>[B][T_b]</c>.</param>
/// <param name="AttentionMask">1 for a real token, 0 for padding, <c>[B][T_b]</c>.</param>
public sealed record TokenizedBatch(long[][] InputIds, long[][] AttentionMask)
{
    /// <summary>Number of rows (texts).</summary>
    public int Count => InputIds.Length;

    /// <summary>Whether all rows have the same length, so that the batch forms a <c>(B, T)</c> tensor.</summary>
    public bool IsRectangular => InputIds.All(row => row.Length == (InputIds.Length == 0 ? 0 : InputIds[0].Length));

    /// <summary>
    /// The batch as int64 tensors of shape <c>(B, T)</c> on <paramref name="device"/> (CPU when null).
    /// Throws when the rows differ in length; encode with <see cref="PaddingStrategy.Longest"/> or
    /// <see cref="PaddingStrategy.MaxLength"/> to get a rectangular batch.
    /// </summary>
    public TokenizedTensors ToTensors(Device? device = null)
    {
        if (!IsRectangular)
        {
            throw new InvalidOperationException(
                $"the rows have different lengths ({InputIds.Min(r => r.Length)} to {InputIds.Max(r => r.Length)} tokens); " +
                "encode with Padding = PaddingStrategy.Longest or PaddingStrategy.MaxLength to build a (B, T) tensor");
        }
        int rows = InputIds.Length;
        int length = rows == 0 ? 0 : InputIds[0].Length;
        var ids = new long[rows * length];
        var mask = new long[rows * length];
        for (int b = 0; b < rows; b++)
        {
            InputIds[b].CopyTo(ids, b * length);
            AttentionMask[b].CopyTo(mask, b * length);
        }
        long[] shape = [rows, length];
        var idsTensor = tensor(ids, shape, ScalarType.Int64, device);
        var maskTensor = tensor(mask, shape, ScalarType.Int64, device);
        return new TokenizedTensors(idsTensor, maskTensor);
    }
}

/// <summary>A tokenized batch as tensors; disposing it disposes both.</summary>
/// <param name="InputIds">Token ids, int64 <c>(B, T)</c>.</param>
/// <param name="AttentionMask">1 for a real token, 0 for padding, int64 <c>(B, T)</c>.</param>
public sealed record TokenizedTensors(Tensor InputIds, Tensor AttentionMask) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
    }
}
