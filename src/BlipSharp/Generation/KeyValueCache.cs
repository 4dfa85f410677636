using BlipSharp.Modeling.Text;
using static TorchSharp.torch;

namespace BlipSharp.Generation;

/// <summary>
/// The decoder's key/value cache for incremental decoding. Self-attention keys and values grow by the new
/// tokens at every step, one row per sequence (N = B x G rows: G beams or samples per encoder item).
/// Cross-attention keys and values are projected from the encoder states once per encoder item, (B, nh, S, hd),
/// and shared by that item's G rows without copying (see <see cref="BlipTextSelfAttention.AttendGrouped"/>).
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    private readonly LayerKeyValues[] _layers;
    private bool _disposed;

    private KeyValueCache(LayerKeyValues[] layers, Tensor? crossMask, int groupSize)
    {
        _layers = layers;
        CrossMask = crossMask;
        GroupSize = groupSize;
    }

    /// <summary>Rows per encoder item (beams, or samples per image).</summary>
    public int GroupSize { get; }

    /// <summary>Number of tokens already cached per row (the past length P).</summary>
    public long Length { get; private set; }

    /// <summary>Additive cross-attention mask (B, 1, 1, S), or null when every encoder position is attended.</summary>
    public Tensor? CrossMask { get; }

    /// <summary>The per-layer entries.</summary>
    internal IReadOnlyList<LayerKeyValues> Layers => _layers;

    /// <summary>
    /// Creates an empty cache for <paramref name="textModel"/>, projecting the cross-attention keys and values of
    /// every layer from <paramref name="encoderStates"/> (B, S, E) once. Pass null states for a text-only decoder.
    /// </summary>
    /// <param name="textModel">The decoder's text transformer.</param>
    /// <param name="encoderStates">(B, S, E) states to cross-attend to, or null.</param>
    /// <param name="encoderAttentionMask">(B, S) 1/0 mask of those states, or null for all ones.</param>
    /// <param name="groupSize">Rows per encoder item, at least 1.</param>
    public static KeyValueCache Create(BlipTextModel textModel, Tensor? encoderStates, Tensor? encoderAttentionMask, int groupSize)
    {
        ArgumentNullException.ThrowIfNull(textModel);
        if (groupSize < 1) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "group size must be at least 1.");
        var layers = new LayerKeyValues[textModel.encoder.layer.Count];
        for (int i = 0; i < layers.Length; i++)
        {
            layers[i] = new LayerKeyValues();
            if (encoderStates is not null)
            {
                var (k, v) = textModel.encoder.layer[i].RequireCrossAttention().self_attention.ProjectKeyValues(encoderStates); // (B, nh, S, hd)
                layers[i].CrossKeys = k.DetachFromDisposeScope();
                layers[i].CrossValues = v.DetachFromDisposeScope();
            }
        }
        Tensor? crossMask = null;
        if (encoderStates is not null && encoderAttentionMask is not null)
        {
            using var all = encoderAttentionMask.all();
            if (!all.item<bool>()) crossMask = AttentionMasks.CrossAttention(encoderAttentionMask, encoderStates.dtype).DetachFromDisposeScope();
        }
        return new KeyValueCache(layers, crossMask, groupSize);
    }

    /// <summary>Records that <paramref name="newTokens"/> tokens were appended to every row.</summary>
    internal void Advance(long newTokens) => Length += newTokens;

    /// <summary>
    /// Reorders the self-attention rows: row r becomes old row <paramref name="rowIndices"/>[r] (beam search).
    /// Every index must stay within its row's group, as beam search guarantees; the shared cross-attention entries are untouched.
    /// </summary>
    /// <param name="rowIndices">(N) int64 source rows.</param>
    public void Reorder(Tensor rowIndices)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var layer in _layers)
        {
            if (layer.Keys is null) continue;
            var k = layer.Keys.index_select(0, rowIndices).DetachFromDisposeScope();
            var v = layer.Values!.index_select(0, rowIndices).DetachFromDisposeScope();
            layer.Keys.Dispose();
            layer.Values.Dispose();
            layer.Keys = k;
            layer.Values = v;
        }
    }

    /// <summary>Disposes every cached tensor.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var layer in _layers) layer.Dispose();
        CrossMask?.Dispose();
    }
}

/// <summary>One layer's cache entry.</summary>
internal sealed class LayerKeyValues : IDisposable
{
    /// <summary>(N, nh, P, hd) self-attention keys, null before the first step.</summary>
    public Tensor? Keys;
    /// <summary>(N, nh, P, hd) self-attention values.</summary>
    public Tensor? Values;
    /// <summary>(B, nh, S, hd) cross-attention keys, null for a text-only decoder.</summary>
    public Tensor? CrossKeys;
    /// <summary>(B, nh, S, hd) cross-attention values.</summary>
    public Tensor? CrossValues;

    /// <summary>
    /// Appends new keys and values (N, nh, T, hd) along the sequence axis, taking ownership of them. Cached tensors
    /// are detached from any dispose scope: the cache owns them until it is disposed.
    /// </summary>
    public void Append(Tensor keys, Tensor values)
    {
        if (Keys is null)
        {
            Keys = keys.DetachFromDisposeScope();
            Values = values.DetachFromDisposeScope();
            return;
        }
        var k = cat([Keys, keys], 2).DetachFromDisposeScope(); // (N, nh, P+T, hd)
        var v = cat([Values!, values], 2).DetachFromDisposeScope();
        Keys.Dispose();
        Values!.Dispose();
        keys.Dispose();
        values.Dispose();
        Keys = k;
        Values = v;
    }

    public void Dispose()
    {
        Keys?.Dispose();
        Values?.Dispose();
        CrossKeys?.Dispose();
        CrossValues?.Dispose();
    }
}
