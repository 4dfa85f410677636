using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>Dense to the intermediate width and the activation, as transformers' <c>BlipTextIntermediate</c>.</summary>
public sealed class BlipTextIntermediate : Module<Tensor, Tensor>
{
    private readonly string _activation;

#pragma warning disable IDE1006
    /// <summary>(I, H).</summary>
    public Linear dense;
#pragma warning restore IDE1006

    /// <summary>Creates the block for <paramref name="config"/>.</summary>
    public BlipTextIntermediate(BlipTextConfig config) : base(nameof(BlipTextIntermediate))
    {
        _activation = config.HiddenAct;
        dense = Linear(config.HiddenSize, config.IntermediateSize);
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> (B, T, I).</summary>
    public override Tensor forward(Tensor x)
    {
        using var h = DecodeLinear.Forward(dense, x);
        return Configuration.Activations.Apply(_activation, h);
    }
}
