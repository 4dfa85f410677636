using BlipSharp.Configuration;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// The BERT-style text transformer, as transformers' <c>BlipTextModel</c>. One set of weights plays three
/// roles: unimodal encoder (no encoder states), image-grounded encoder (with encoder states) and, with
/// <c>isDecoder</c>, the causal decoder.
/// </summary>
public sealed class BlipTextModel : Module
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipTextConfig Config { get; }

#pragma warning disable IDE1006
    /// <summary>Word and position embeddings.</summary>
    public BlipTextEmbeddings embeddings;
    /// <summary>The layers.</summary>
    public BlipTextEncoder encoder;
    /// <summary>First-token pooler; only <c>BlipModel</c>'s text model has one.</summary>
    public BlipTextPooler? pooler;
#pragma warning restore IDE1006

    /// <summary>Creates the text model; <paramref name="addPoolingLayer"/> adds the pooler.</summary>
    public BlipTextModel(BlipTextConfig config, bool addPoolingLayer) : base(nameof(BlipTextModel))
    {
        config.Validate();
        Config = config;
        embeddings = new BlipTextEmbeddings(config);
        encoder = new BlipTextEncoder(config);
        pooler = addPoolingLayer ? new BlipTextPooler(config) : null;
        RegisterComponents();
    }

    /// <summary>Runs the text model.</summary>
    /// <param name="inputIds">(B, T) token ids.</param>
    /// <param name="attentionMask">(B, T) 1 for tokens, 0 for padding; null means all ones.</param>
    /// <param name="encoderHiddenStates">(B, S, E) states to cross-attend to, or null for the unimodal encoder.</param>
    /// <param name="encoderAttentionMask">(B, S) mask of the encoder states; null means all ones.</param>
    /// <param name="isDecoder">Causal self-attention (the decoder role).</param>
    /// <param name="outputHiddenStates">Also return the embeddings and every layer's output, stacked.</param>
    public BlipTextModelOutput Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? encoderHiddenStates = null,
        Tensor? encoderAttentionMask = null, bool isDecoder = false, bool outputHiddenStates = false)
    {
        long t = inputIds.shape[1];
        using var embedded = embeddings.Forward(inputIds, pastLength: 0);
        using var selfMask = AttentionMasks.SelfAttention(attentionMask, inputIds.shape[0], t, pastLength: 0, isDecoder, embedded.dtype, embedded.device);
        using var crossMask = encoderAttentionMask is null ? null : AttentionMasks.CrossAttention(encoderAttentionMask, embedded.dtype);
        var states = outputHiddenStates ? new List<Tensor>() : null;
        var last = encoder.Forward(embedded, selfMask, encoderHiddenStates, crossMask, states);
        var pooled = pooler?.forward(last);
        Tensor? stacked = null;
        if (states is not null)
        {
            stacked = stack(states, 0); // (L+1, B, T, H)
            foreach (var s in states) s.Dispose();
        }
        return new BlipTextModelOutput(last, pooled, stacked);
    }

    /// <summary>
    /// Incremental causal decoding: embeds <paramref name="inputIds"/> (N, T) at positions P..P+T-1, where P is the
    /// number of tokens already in <paramref name="cache"/>, runs them against the cache (appending their keys and
    /// values) and returns their states (N, T, H). The encoder states were given to the cache when it was created.
    /// </summary>
    /// <param name="inputIds">(N, T) the new tokens.</param>
    /// <param name="attentionMask">(N, P+T) 1/0 mask over past and new tokens, or null for all ones.</param>
    /// <param name="cache">The cache, advanced by T.</param>
    public Tensor ForwardIncremental(Tensor inputIds, Tensor? attentionMask, Generation.KeyValueCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (cache.Layers.Count != encoder.layer.Count)
            throw new ArgumentException($"the cache has {cache.Layers.Count} layers, the model {encoder.layer.Count}.", nameof(cache));
        long past = cache.Length, t = inputIds.shape[1];
        using var embedded = embeddings.Forward(inputIds, past);
        using var selfMask = AttentionMasks.SelfAttention(attentionMask, inputIds.shape[0], t, past, isDecoder: true, embedded.dtype, embedded.device);
        Tensor h = embedded.alias();
        for (int i = 0; i < encoder.layer.Count; i++)
        {
            var next = encoder.layer[i].ForwardIncremental(h, selfMask, cache.Layers[i], cache.CrossMask);
            h.Dispose();
            h = next;
        }
        cache.Advance(t);
        return h;
    }
}
