using BlipSharp.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>tanh(dense(first token)), as transformers' <c>BlipTextPooler</c>; only <c>BlipModel</c> has one.</summary>
public sealed class BlipTextPooler : Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    /// <summary>(H, H).</summary>
    public Linear dense;
#pragma warning restore IDE1006

    /// <summary>Creates the pooler.</summary>
    public BlipTextPooler(BlipTextConfig config) : base(nameof(BlipTextPooler))
    {
        dense = Linear(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>(B, T, H) -> (B, H).</summary>
    public override Tensor forward(Tensor hiddenStates)
    {
        using var first = hiddenStates[.., 0, ..];
        using var d = dense.forward(first);
        return d.tanh();
    }
}
