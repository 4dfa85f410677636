using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// The additive attention masks transformers' BLIP text model builds: self-attention adds
/// <c>(1 - m) * -10000</c> (padding, and the future for the decoder); cross-attention adds
/// <c>(1 - m) * finfo.min</c>.
/// </summary>
public static class AttentionMasks
{
    /// <summary>The additive self-attention mask, (B, 1, T, P+T) for a decoder, (B, 1, 1, P+T) otherwise; null when nothing is masked.</summary>
    /// <param name="attentionMask">(B, P+T) 1/0 mask, or null for all ones.</param>
    /// <param name="batch">B.</param>
    /// <param name="length">T, the new tokens.</param>
    /// <param name="pastLength">P, tokens already in a KV cache.</param>
    /// <param name="isDecoder">Add the causal mask.</param>
    /// <param name="dtype">Dtype of the attention scores.</param>
    /// <param name="device">Device of the attention scores.</param>
    public static Tensor? SelfAttention(Tensor? attentionMask, long batch, long length, long pastLength, bool isDecoder, ScalarType dtype, Device device)
    {
        if (!isDecoder && attentionMask is null) return null;
        if (isDecoder && length == 1 && attentionMask is null) return null; // one new token sees every cached one
        using var scope = NewDisposeScope();
        long total = pastLength + length;
        var mask = attentionMask is null ? ones(batch, total, dtype: dtype, device: device) : attentionMask.to(dtype, device);
        if (mask.shape[1] != total)
            throw new ArgumentException($"attention_mask has {mask.shape[1]} columns, expected {total} (past {pastLength} + new {length}).");
        Tensor extended;
        if (isDecoder)
        {
            var keyPos = arange(total, dtype: ScalarType.Int64, device: device);                        // (P+T)
            var queryPos = arange(pastLength, total, dtype: ScalarType.Int64, device: device);          // (T)
            var causal = keyPos.unsqueeze(0).le(queryPos.unsqueeze(1)).to_type(dtype);                  // (T, P+T)
            extended = causal.unsqueeze(0).unsqueeze(0) * mask.unsqueeze(1).unsqueeze(1);              // (B, 1, T, P+T)
        }
        else
        {
            extended = mask.unsqueeze(1).unsqueeze(1);                                                   // (B, 1, 1, T)
        }
        return extended.neg().add_(KeptScalars.Of(1.0)).mul_(KeptScalars.Of(-10000.0)).MoveToOuterDisposeScope(); // (1 - mask) * -10000
    }

    /// <summary>The additive cross-attention mask (B, 1, 1, S) from a (B, S) 1/0 mask.</summary>
    public static Tensor CrossAttention(Tensor encoderAttentionMask, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var m = encoderAttentionMask.to_type(dtype).unsqueeze(1).unsqueeze(1);  // (B, 1, 1, S)
        double min = dtype switch
        {
            ScalarType.Float16 => -65504.0,
            ScalarType.BFloat16 => -3.3895313892515355e38,
            ScalarType.Float64 => double.MinValue,
            _ => float.MinValue,
        };
        return m.neg().add_(KeptScalars.Of(1.0)).mul_(KeptScalars.Of(min)).MoveToOuterDisposeScope(); // (1 - mask) * min
    }
}
