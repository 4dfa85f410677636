using BlipSharp.Configuration;
using TorchSharp;
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

    /// <summary>
    /// Whether bfloat16 runs on the CPU append zero tokens up to a multiple of 8 (default true). oneDNN's bfloat16
    /// GEMM is erratic in the row count: at 577 rows (ViT-B at 384 px) it runs 1.2-1.5x slower than at 584, so
    /// the padded encoder is faster although it computes more. Padding tokens are never attended to, and are
    /// dropped from every output; float32 (MKL, no such effect) and other devices are never padded.
    /// </summary>
    public bool PadTokens { get; set; } = true;

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>
    /// Runs every block. When <paramref name="hiddenStates"/> is given it receives the input and the output of
    /// every block (num_layers + 1 tensors), as transformers' <c>output_hidden_states</c>.
    /// </summary>
    public Tensor Forward(Tensor x, List<Tensor>? hiddenStates)
    {
        long tokens = x.shape[1];
        long padded = PaddedLength(x);
        Tensor h = padded == tokens ? x.alias() : nn.functional.pad(x, [0, 0, 0, padded - tokens]); // (B, T', D)
        foreach (var layer in layers)
        {
            hiddenStates?.Add(h.narrow(1, 0, tokens));                    // (B, T, D)
            var next = layer.Forward(h, tokens);
            h.Dispose();
            h = next;
        }
        using (h)
        {
            hiddenStates?.Add(h.narrow(1, 0, tokens));
            return h.narrow(1, 0, tokens);                                 // (B, T, D)
        }
    }

    private long PaddedLength(Tensor x)
    {
        long tokens = x.shape[1];
        bool oneDnnBf16 = x.device_type == DeviceType.CPU && x.dtype == ScalarType.BFloat16;
        return PadTokens && oneDnnBf16 ? (tokens + 7) / 8 * 8 : tokens;
    }
}
