using BlipSharp.Configuration;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>Word + absolute position embeddings, then LayerNorm (no token types), as transformers' <c>BlipTextEmbeddings</c>.</summary>
public sealed class BlipTextEmbeddings : Module<Tensor, Tensor>
{
    private readonly double _dropout;
    private readonly long _maxPositions;

#pragma warning disable IDE1006
    /// <summary>(V, H).</summary>
    public Embedding word_embeddings;
    /// <summary>(P, H).</summary>
    public Embedding position_embeddings;
    /// <summary>LayerNorm over the sum.</summary>
    [TorchSharp.Utils.ComponentName(Name = "LayerNorm")]
    public LayerNorm layer_norm;
#pragma warning restore IDE1006

    /// <summary>Creates the embeddings for <paramref name="config"/>.</summary>
    public BlipTextEmbeddings(BlipTextConfig config) : base(nameof(BlipTextEmbeddings))
    {
        _dropout = config.HiddenDropoutProb;
        _maxPositions = config.MaxPositionEmbeddings;
        word_embeddings = Embedding(config.VocabSize, config.HiddenSize, padding_idx: config.PadTokenId);
        position_embeddings = Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        layer_norm = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>Token ids (B, T) -> (B, T, H), positions 0..T-1.</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds, pastLength: 0);

    /// <summary>Token ids (B, T) -> (B, T, H), positions starting at <paramref name="pastLength"/>.</summary>
    public Tensor Forward(Tensor inputIds, long pastLength)
    {
        long t = inputIds.shape[1];
        if (pastLength + t > _maxPositions)
            throw new ArgumentException($"text of {pastLength + t} tokens exceeds max_position_embeddings ({_maxPositions}).");
        using var range = arange(pastLength, pastLength + t, dtype: ScalarType.Int64, device: inputIds.device); // (T)
        using var positionIds = range.unsqueeze(0);                                                              // (1, T)
        using var words = word_embeddings.forward(inputIds);                                                                     // (B, T, H)
        using var positions = position_embeddings.forward(positionIds);                                                          // (1, T, H)
        using var sum = words + positions;
        var normed = layer_norm.forward(sum);
        if (!training || _dropout == 0) return normed;
        using (normed)
            return nn.functional.dropout(normed, _dropout, training);
    }
}
