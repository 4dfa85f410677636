using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Vision;

/// <summary>fc1 -> activation -> fc2, as transformers' <c>BlipMLP</c>.</summary>
public sealed class BlipMLP : Module<Tensor, Tensor>
{
    private readonly string _activation;

#pragma warning disable IDE1006
    /// <summary>(I, D).</summary>
    public Linear fc1;
    /// <summary>(D, I).</summary>
    public Linear fc2;
#pragma warning restore IDE1006

    /// <summary>Creates the MLP for <paramref name="config"/>.</summary>
    public BlipMLP(BlipVisionConfig config) : base(nameof(BlipMLP))
    {
        _activation = config.HiddenAct;
        fc1 = Linear(config.HiddenSize, config.IntermediateSize);
        fc2 = Linear(config.IntermediateSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor x)
    {
        using var h = fc1.forward(x);
        using var a = Configuration.Activations.Apply(_activation, h);
        return fc2.forward(a);
    }
}
