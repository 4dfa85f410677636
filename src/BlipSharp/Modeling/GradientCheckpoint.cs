using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace BlipSharp.Modeling;

/// <summary>
/// Gradient checkpointing for one block, as PyTorch's reentrant <c>torch.utils.checkpoint.checkpoint</c>: the forward
/// runs without recording a graph and keeps only the block's input; the backward runs the block again with the
/// graph, backpropagates the incoming gradient through it (accumulating the block's parameter gradients) and returns
/// the input's gradient. Activations inside the block are thus never held between forward and backward, at the
/// price of a second forward. TorchSharp has no built-in checkpointing; this is a custom autograd function.
/// </summary>
public static class GradientCheckpoint
{
    /// <summary>Runs <paramref name="block"/> on <paramref name="input"/> with its activations recomputed in backward.</summary>
    /// <param name="block">A block whose output depends only on its input, its parameters and the torch RNG.</param>
    /// <param name="input">The block's input.</param>
    /// <param name="preserveRngState">
    /// Save the CPU generator state before the forward and replay it for the recomputation, so dropout draws the same
    /// masks twice (PyTorch's <c>preserve_rng_state=True</c>). The generator is restored after the recomputation.
    /// </param>
    /// <returns>The block's output, attached to the autograd graph through the checkpoint.</returns>
    /// <remarks>
    /// Without a graph (under <c>no_grad</c>, or when neither the input nor any parameter requires a gradient) this is
    /// just <c>block.forward(input)</c>. The block's parameters are passed as inputs of the autograd node only so that
    /// the node is recorded when the input itself needs no gradient (the first block after a frozen stem); their
    /// gradients are accumulated by the recomputation's own backward, as in PyTorch's reentrant variant.
    /// </remarks>
    public static Tensor Run(nn.Module<Tensor, Tensor> block, Tensor input, bool preserveRngState = true)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(input);
        var trainable = block.parameters().Where(p => p.requires_grad).ToArray();
        if (!is_grad_enabled() || (!input.requires_grad && trainable.Length == 0)) return block.forward(input);
        var args = new object[2 + trainable.Length];
        args[0] = new Saved(block, preserveRngState, trainable.Length);
        args[1] = input;
        for (int i = 0; i < trainable.Length; i++) args[2 + i] = trainable[i];
        return CheckpointFunction.apply(args);
    }

    /// <summary>What the backward needs besides the saved input: the block and the generator state at forward time.</summary>
    private sealed class Saved(nn.Module<Tensor, Tensor> block, bool preserveRngState, int parameterInputs)
    {
        public nn.Module<Tensor, Tensor> Block { get; } = block;
        public bool PreserveRngState { get; } = preserveRngState;
        public int ParameterInputs { get; } = parameterInputs;
        /// <summary>
        /// The CPU generator state as bytes: a tensor would belong to whatever dispose scope is open during the
        /// forward (a caller's scope may end before the backward runs).
        /// </summary>
        public byte[]? RngState { get; set; }
    }

    private sealed class CheckpointFunction : SingleTensorFunction<CheckpointFunction>
    {
        public override string Name => "BlipGradientCheckpoint";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            var saved = (Saved)vars[0];
            var input = (Tensor)vars[1];
            if (saved.PreserveRngState)
            {
                using var state = random.get_rng_state();
                saved.RngState = state.bytes.ToArray();
            }
            ctx.save_data("saved", saved);
            ctx.save_for_backward([input]);
            return saved.Block.forward(input); // autograd is off here (Function.apply runs forward without a graph)
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
        {
            var saved = (Saved)ctx.get_data("saved");
            var grads = new List<Tensor>(new Tensor[2 + saved.ParameterInputs]);
            using var input = ctx.get_saved_variables()[0];
            using var detached = input.detach().requires_grad_(input.requires_grad);
            Tensor? current = null;
            if (saved.RngState is { } bytes)
            {
                current = random.get_rng_state();
                using var state = tensor(bytes, dtype: ScalarType.Byte);
                random.set_rng_state(state);
            }
            Tensor output;
            try
            {
                using (enable_grad())
                    output = saved.Block.forward(detached);
            }
            finally
            {
                if (current is not null)
                {
                    random.set_rng_state(current);
                    current.Dispose();
                }
            }
            using (output)
                autograd.backward([output], [gradOutput]);
            grads[1] = (detached.requires_grad ? detached.grad : null)!;
            return grads;
        }
    }
}
