using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>The stack of text layers, as transformers' <c>BlipTextEncoder</c> (keys <c>layer.{i}</c>).</summary>
public sealed class BlipTextEncoder : Module
{
#pragma warning disable IDE1006
    /// <summary>The layers.</summary>
    public ModuleList<BlipTextLayer> layer;
#pragma warning restore IDE1006

    /// <summary>Creates <c>num_hidden_layers</c> layers.</summary>
    public BlipTextEncoder(BlipTextConfig config) : base(nameof(BlipTextEncoder))
    {
        layer = new ModuleList<BlipTextLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new BlipTextLayer(config)).ToArray());
        RegisterComponents();
    }

    /// <summary>Runs every layer; <paramref name="hiddenStates"/>, when given, collects the input and each layer's output.</summary>
    public Tensor Forward(Tensor x, Tensor? selfMask, Tensor? encoderHiddenStates, Tensor? encoderMask, List<Tensor>? hiddenStates = null)
    {
        Tensor h = x.alias();
        foreach (var l in layer)
        {
            hiddenStates?.Add(h.alias());
            var next = l.Forward(h, selfMask, encoderHiddenStates, encoderMask);
            h.Dispose();
            h = next;
        }
        hiddenStates?.Add(h.alias());
        return h;
    }
}
