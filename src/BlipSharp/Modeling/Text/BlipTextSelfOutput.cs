using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>Dense, dropout, then LayerNorm over the residual sum; transformers' <c>BlipTextSelfOutput</c> (and <c>BlipTextOutput</c>).</summary>
public sealed class BlipTextSelfOutput : Module<Tensor, Tensor, Tensor>
{
    private readonly double _dropout;

#pragma warning disable IDE1006
    /// <summary>(H, in).</summary>
    public Linear dense;
    /// <summary>LayerNorm over dense(x) + residual.</summary>
    [TorchSharp.Utils.ComponentName(Name = "LayerNorm")]
    public LayerNorm layer_norm;
#pragma warning restore IDE1006

    /// <summary>Creates the block mapping <paramref name="inputSize"/> to the hidden size.</summary>
    public BlipTextSelfOutput(BlipTextConfig config, int inputSize) : base(nameof(BlipTextSelfOutput))
    {
        _dropout = config.HiddenDropoutProb;
        dense = Linear(inputSize, config.HiddenSize);
        layer_norm = LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    /// <summary>LayerNorm(dropout(dense(<paramref name="hiddenStates"/>)) + <paramref name="residual"/>).</summary>
    public override Tensor forward(Tensor hiddenStates, Tensor residual)
    {
        using var d = DecodeLinear.Forward(dense, hiddenStates);
        using var dropped = nn.functional.dropout(d, _dropout, training);
        using var sum = dropped + residual;
        return layer_norm.forward(sum);
    }
}
