using BlipSharp.Configuration;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Modeling.Text;

/// <summary>Attention followed by its output block, as transformers' <c>BlipTextAttention</c> (keys <c>self.*</c>, <c>output.*</c>).</summary>
public sealed class BlipTextAttention : Module
{
#pragma warning disable IDE1006
    /// <summary>The attention proper (key segment <c>self</c>).</summary>
    [TorchSharp.Utils.ComponentName(Name = "self")]
    public BlipTextSelfAttention self_attention;
    /// <summary>Dense + residual LayerNorm.</summary>
    public BlipTextSelfOutput output;
#pragma warning restore IDE1006

    /// <summary>Creates self- or cross-attention.</summary>
    public BlipTextAttention(BlipTextConfig config, bool isCrossAttention) : base(nameof(BlipTextAttention))
    {
        self_attention = new BlipTextSelfAttention(config, isCrossAttention);
        output = new BlipTextSelfOutput(config, config.HiddenSize);
        RegisterComponents();
    }

    /// <summary>Attends from <paramref name="hiddenStates"/> to <paramref name="keyValueStates"/>; returns (B, T, H).</summary>
    public Tensor Forward(Tensor hiddenStates, Tensor keyValueStates, Tensor? additiveMask)
    {
        using var context = self_attention.Forward(hiddenStates, keyValueStates, additiveMask);
        return output.forward(context, hiddenStates);
    }

    /// <summary>As <see cref="Forward"/> with keys and values already projected (KV cache).</summary>
    public Tensor ForwardCached(Tensor hiddenStates, Tensor keys, Tensor values, Tensor? additiveMask)
    {
        using var context = self_attention.Attend(hiddenStates, keys, values, additiveMask);
        return output.forward(context, hiddenStates);
    }
}
