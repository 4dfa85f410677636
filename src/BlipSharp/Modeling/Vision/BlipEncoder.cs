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

    /// <summary>Creates <c>num_hidden_layers</c> blocks, with drop path rates from <c>drop_path_rate</c>.</summary>
    public BlipEncoder(BlipVisionConfig config) : base(nameof(BlipEncoder))
    {
        layers = new ModuleList<BlipEncoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new BlipEncoderLayer(config)).ToArray());
        RegisterComponents();
        SetDropPathRate(config.DropPathRate);
    }

    /// <summary>
    /// Sets every block's stochastic depth rate by BLIP's decay rule (<see cref="DropPath.Rates"/>: 0 for the first
    /// block, <paramref name="rate"/> for the last, linear in between). 0 turns drop path off.
    /// </summary>
    /// <param name="rate">The last block's rate, in [0, 1) (BLIP's <c>drop_path_rate</c>).</param>
    public void SetDropPathRate(double rate)
    {
        var rates = DropPath.Rates(rate, layers.Count);
        for (int i = 0; i < rates.Length; i++) layers[i].DropPathRate = rates[i];
    }

    /// <summary>
    /// Whether bfloat16 runs on the CPU append zero tokens up to a multiple of 8 (default true). oneDNN's bfloat16
    /// GEMM is erratic in the row count: at 577 rows (ViT-B at 384 px) it runs 1.2-1.5x slower than at 584, so
    /// the padded encoder is faster although it computes more. Padding tokens are never attended to, and are
    /// dropped from every output; float32 (MKL, no such effect) and other devices are never padded.
    /// </summary>
    public bool PadTokens { get; set; } = true;

    /// <summary>
    /// Recompute the blocks' activations in backward instead of keeping them (<see cref="GradientCheckpoint"/>),
    /// when training with autograd on; off by default. Outputs and gradients are unchanged, memory drops and a
    /// training step costs one more forward of the checkpointed blocks.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>
    /// With <see cref="GradientCheckpointing"/>, how many of the last blocks are checkpointed (BLIP's
    /// <c>vit_ckpt_layer</c>: block i is when i &gt;= depth - N; N &gt;= depth is every block); null checkpoints every block.
    /// </summary>
    public int? CheckpointedLayers
    {
        get => _checkpointedLayers;
        set
        {
            if (value < 0) throw new ArgumentOutOfRangeException(nameof(value), value, "the number of checkpointed layers cannot be negative");
            _checkpointedLayers = value;
        }
    }

    private int? _checkpointedLayers;

    /// <summary>(B, T, D) -> (B, T, D).</summary>
    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>
    /// Runs every block. When <paramref name="hiddenStates"/> is given it receives the input and the output of
    /// every block (num_layers + 1 tensors), as transformers' <c>output_hidden_states</c>.
    /// </summary>
    public Tensor Forward(Tensor x, List<Tensor>? hiddenStates)
    {
        long tokens = x.shape[1];
        int depth = layers.Count;
        int firstCheckpointed = GradientCheckpointing && training && is_grad_enabled()
            ? depth - Math.Min(CheckpointedLayers ?? depth, depth)
            : depth;
        // Padding is an inference speed-up; checkpointed blocks run unpadded (their recomputation sees every token).
        long padded = firstCheckpointed < depth ? tokens : PaddedLength(x);
        Tensor h = padded == tokens ? x.alias() : nn.functional.pad(x, [0, 0, 0, padded - tokens]); // (B, T', D)
        for (int i = 0; i < depth; i++)
        {
            var layer = layers[i];
            hiddenStates?.Add(h.narrow(1, 0, tokens));                    // (B, T, D)
            var next = i >= firstCheckpointed ? GradientCheckpoint.Run(layer, h) : layer.Forward(h, tokens);
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
