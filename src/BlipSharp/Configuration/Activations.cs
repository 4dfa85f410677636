using static TorchSharp.torch;

namespace BlipSharp.Configuration;

/// <summary>The activation functions transformers' <c>ACT2FN</c> maps <c>hidden_act</c> names to.</summary>
public static class Activations
{
    private static readonly string[] Known = ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "relu", "silu", "swish", "tanh"];

    /// <summary>Throws <see cref="ArgumentException"/> when <paramref name="name"/> is not a supported activation.</summary>
    public static void Validate(string name, string field)
    {
        if (!Known.Contains(name))
            throw new ArgumentException($"{field} '{name}' is not supported (known: {string.Join(", ", Known)}).");
    }

    /// <summary>Applies the named activation.</summary>
    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "gelu" => nn.functional.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x * nn.functional.sigmoid(x * 1.702),
        "relu" => nn.functional.relu(x),
        "silu" or "swish" => nn.functional.silu(x),
        "tanh" => x.tanh(),
        _ => throw new ArgumentException($"unsupported activation '{name}'"),
    };
}
