using BlipSharp.Configuration;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// The NLVR2 text encoder (salesforce/BLIP <c>nlvr_encoder.BertModel</c>, no pooler): the embeddings of
/// <see cref="BlipTextModel"/> and a stack of <see cref="BlipTextTwoImageLayer"/>s that cross-attend to two images.
/// </summary>
public sealed class BlipTextTwoImageModel : Module
{
    /// <summary>The configuration this model was built from.</summary>
    public BlipTextConfig Config { get; }

    /// <summary>Layers with index &gt;= this merge the two cross-attention outputs with <c>merge_layer</c>.</summary>
    public int MergeFromLayer { get; }

#pragma warning disable IDE1006
    /// <summary>Word and position embeddings.</summary>
    public BlipTextEmbeddings embeddings;
    /// <summary>The layers.</summary>
    public BlipTextTwoImageEncoder encoder;
#pragma warning restore IDE1006

    /// <summary>Creates the model; layers from <paramref name="mergeFromLayer"/> on get <c>merge_layer</c>.</summary>
    public BlipTextTwoImageModel(BlipTextConfig config, int mergeFromLayer) : base(nameof(BlipTextTwoImageModel))
    {
        config.Validate();
        ArgumentOutOfRangeException.ThrowIfNegative(mergeFromLayer);
        Config = config;
        MergeFromLayer = mergeFromLayer;
        embeddings = new BlipTextEmbeddings(config);
        encoder = new BlipTextTwoImageEncoder(config, mergeFromLayer);
        RegisterComponents();
    }

    /// <summary>Text states (B, T, H), each text grounded in its two images.</summary>
    /// <param name="inputIds">(B, T) token ids.</param>
    /// <param name="attentionMask">(B, T) 1 for tokens, 0 for padding; null means all ones.</param>
    /// <param name="image0States">(B, S, E) states of the first image of each pair.</param>
    /// <param name="image1States">(B, S, E) states of the second image of each pair.</param>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask, Tensor image0States, Tensor image1States)
    {
        long b = inputIds.shape[0];
        if (image0States.shape[0] != b || image1States.shape[0] != b)
            throw new ArgumentException($"{b} texts but {image0States.shape[0]} first and {image1States.shape[0]} second images.");
        using var embedded = embeddings.Forward(inputIds, pastLength: 0);
        using var selfMask = AttentionMasks.SelfAttention(attentionMask, b, inputIds.shape[1], pastLength: 0, isDecoder: false, embedded.dtype, embedded.device);
        return encoder.Forward(embedded, selfMask, image0States, image1States);
    }
}
