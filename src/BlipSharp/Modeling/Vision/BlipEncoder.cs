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
        Tensor h = x.alias();
        int depth = layers.Count;
        int firstCheckpointed = GradientCheckpointing && training && is_grad_enabled()
            ? depth - Math.Min(CheckpointedLayers ?? depth, depth)
            : depth;
        for (int i = 0; i < depth; i++)
        {
            var layer = layers[i];
            hiddenStates?.Add(h.alias());
            var next = i >= firstCheckpointed ? GradientCheckpoint.Run(layer, h) : layer.forward(h);
            h.Dispose();
            h = next;
        }
        hiddenStates?.Add(h.alias());
        return h;
    }
}
