using BlipSharp.Configuration;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// One text transformer layer: self-attention (bidirectional or causal, decided by the mask), then
/// cross-attention to encoder states when they are given, then the feed-forward block; transformers'
/// <c>BlipTextLayer</c>. The same class serves the unimodal encoder, the image-grounded encoder and the decoder.
/// </summary>
public sealed class BlipTextLayer : Module
{
#pragma warning disable IDE1006
    /// <summary>Self-attention.</summary>
    public BlipTextAttention attention;
    /// <summary>Cross-attention to the encoder states; present when <c>is_decoder</c> (all BLIP checkpoints).</summary>
    public BlipTextAttention? crossattention;
    /// <summary>Feed-forward up-projection.</summary>
    public BlipTextIntermediate intermediate;
    /// <summary>Feed-forward down-projection with residual LayerNorm.</summary>
    public BlipTextSelfOutput output;
#pragma warning restore IDE1006

    /// <summary>Creates the layer for <paramref name="config"/>.</summary>
    public BlipTextLayer(BlipTextConfig config) : base(nameof(BlipTextLayer))
    {
        attention = new BlipTextAttention(config, isCrossAttention: false);
        crossattention = config.IsDecoder ? new BlipTextAttention(config, isCrossAttention: true) : null;
        intermediate = new BlipTextIntermediate(config);
        output = new BlipTextSelfOutput(config, config.IntermediateSize);
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> (B, T, H).</summary>
    /// <param name="hiddenStates">Input states.</param>
    /// <param name="selfMask">Additive self-attention mask broadcastable to (B, nh, T, T), or null.</param>
    /// <param name="encoderHiddenStates">States to cross-attend to (B, S, E), or null to skip cross-attention.</param>
    /// <param name="encoderMask">Additive cross-attention mask broadcastable to (B, nh, T, S), or null.</param>
    public Tensor Forward(Tensor hiddenStates, Tensor? selfMask, Tensor? encoderHiddenStates, Tensor? encoderMask)
    {
        var attended = attention.Forward(hiddenStates, hiddenStates, selfMask);
        if (encoderHiddenStates is not null)
        {
            var cross = RequireCrossAttention().Forward(attended, encoderHiddenStates, encoderMask);
            attended.Dispose();
            attended = cross;
        }
        using (attended)
            return FeedForward(attended);
    }

    /// <summary>
    /// Incremental decoding: runs the new tokens (N, T, H) against the cached past of <paramref name="cache"/>,
    /// appending their self-attention keys and values to it; cross-attends with the cached encoder keys and values
    /// (shared by each item's rows) when the cache has them.
    /// </summary>
    /// <param name="hiddenStates">(N, T, H) states of the new tokens.</param>
    /// <param name="selfMask">Additive mask broadcastable to (N, nh, T, P+T), or null.</param>
    /// <param name="cache">This layer's cache entry.</param>
    /// <param name="crossMask">Additive (B, 1, 1, S) mask of the encoder states, or null.</param>
    internal Tensor ForwardIncremental(Tensor hiddenStates, Tensor? selfMask, Generation.LayerKeyValues cache, Tensor? crossMask)
    {
        var selfAttention = attention.self_attention;
        var (keys, values) = selfAttention.ProjectKeyValues(hiddenStates); // (N, nh, T, hd)
        cache.Append(keys, values);
        var attended = attention.ForwardCached(hiddenStates, cache.Keys!, cache.Values!, selfMask);
        if (cache.CrossKeys is not null)
        {
            var crossAttention = RequireCrossAttention();
            using var context = crossAttention.self_attention.AttendGrouped(attended, cache.CrossKeys, cache.CrossValues!, crossMask);
            var cross = crossAttention.output.forward(context, attended);
            attended.Dispose();
            attended = cross;
        }
        using (attended)
            return FeedForward(attended);
    }

    /// <summary>The feed-forward block with its residual.</summary>
    public Tensor FeedForward(Tensor attended)
    {
        using var inner = intermediate.forward(attended);
        return output.forward(inner, attended);
    }

    /// <summary>The cross-attention block; throws when the config has no cross-attention (<c>is_decoder</c> false).</summary>
    public BlipTextAttention RequireCrossAttention() =>
        crossattention ?? throw new InvalidOperationException("this text model has no cross-attention layers (text_config.is_decoder is false), so it cannot read image states.");
}
