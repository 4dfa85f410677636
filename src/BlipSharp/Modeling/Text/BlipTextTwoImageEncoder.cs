using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>
/// The stack of <see cref="BlipTextTwoImageLayer"/>s (keys <c>layer.{i}</c>): layers before
/// <c>mergeFromLayer</c> average their two cross-attention outputs, the rest merge them with <c>merge_layer</c>.
/// </summary>
public sealed class BlipTextTwoImageEncoder : Module
{
#pragma warning disable IDE1006
    /// <summary>The layers.</summary>
    public ModuleList<BlipTextTwoImageLayer> layer;
#pragma warning restore IDE1006

    /// <summary>Creates <c>num_hidden_layers</c> layers; those with index &gt;= <paramref name="mergeFromLayer"/> get <c>merge_layer</c>.</summary>
    public BlipTextTwoImageEncoder(BlipTextConfig config, int mergeFromLayer) : base(nameof(BlipTextTwoImageEncoder))
    {
        layer = new ModuleList<BlipTextTwoImageLayer>(Enumerable.Range(0, config.NumHiddenLayers)
            .Select(i => new BlipTextTwoImageLayer(config, merge: i >= mergeFromLayer)).ToArray());
        RegisterComponents();
    }

    /// <summary>Runs every layer: (B, T, H) -> (B, T, H).</summary>
    public Tensor Forward(Tensor x, Tensor? selfMask, Tensor image0States, Tensor image1States)
    {
        Tensor h = x.alias();
        foreach (var l in layer)
        {
            var next = l.Forward(h, selfMask, image0States, image1States);
            h.Dispose();
            h = next;
        }
        return h;
    }
}
