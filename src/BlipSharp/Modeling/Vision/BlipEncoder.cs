using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>The stack of ViT blocks, as transformers' <c>BlipEncoder</c>.</summary>
public sealed class BlipEncoder : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>The blocks, keys <c>layers.{i}</c>.</summary>
    public ModuleList<BlipEncoderLayer> layers;
#pragma warning restore IDE1006

    /// <summary>Creates <c>num_hidden_layers</c> blocks.</summary>
    public BlipEncoder(BlipVisionConfig config) : base(nameof(BlipEncoder))
    {
        layers = new ModuleList<BlipEncoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new BlipEncoderLayer(config)).ToArray());
        RegisterComponents();
    }

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>
    /// Runs every block. When <paramref name="hiddenStates"/> is given it receives the input and the output of
    /// every block (num_layers + 1 tensors), as transformers' <c>output_hidden_states</c>.
    /// </summary>
    public Tensor Forward(Tensor x, List<Tensor>? hiddenStates)
    {
        Tensor h = x.alias();
        foreach (var layer in layers)
        {
            hiddenStates?.Add(h.alias());
            var next = layer.forward(h);
            h.Dispose();
            h = next;
        }
        hiddenStates?.Add(h.alias());
        return h;
    }
}
