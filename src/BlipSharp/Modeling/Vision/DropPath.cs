using static TorchSharp.torch;

namespace BlipSharp.Modeling.Vision;

/// <summary>
/// Stochastic depth, as timm's <c>DropPath</c> in salesforce/BLIP's <c>models/vit.py</c>: during training a residual
/// branch is dropped for a whole sample with probability <c>rate</c> and the kept samples are scaled by
/// <c>1 / (1 - rate)</c>. It has no parameters, so it adds no state_dict key.
/// </summary>
public static class DropPath
{
    /// <summary>
    /// The per-block rates of BLIP's "stochastic depth decay rule",
    /// <c>[x.item() for x in torch.linspace(0, drop_path_rate, depth)]</c>: 0 for the first block, <paramref name="rate"/>
    /// for the last, linear in between (computed in float32, as torch does, then widened).
    /// </summary>
    /// <param name="rate">The last block's rate (<c>drop_path_rate</c>), in [0, 1).</param>
    /// <param name="depth">The number of blocks.</param>
    public static double[] Rates(double rate, int depth)
    {
        CheckRate(rate, nameof(rate));
        ArgumentOutOfRangeException.ThrowIfNegative(depth);
        if (depth == 0) return [];
        using var rates = linspace(0.0, rate, depth, dtype: ScalarType.Float32);  // (depth)
        return rates.data<float>().Select(r => (double)r).ToArray();
    }

    /// <summary>
    /// <paramref name="x"/> (B, ...) with each sample's branch kept with probability <c>1 - rate</c> and scaled by
    /// <c>1 / (1 - rate)</c>, else zeroed; a new tensor that is <paramref name="x"/>'s alias when not
    /// <paramref name="training"/> or <paramref name="rate"/> is 0.
    /// </summary>
    /// <remarks>
    /// The form of timm 0.4.12 (the version BLIP pins): <c>mask = floor(keep + rand(B, 1, ..., 1))</c> drawn from the
    /// default torch generator in <paramref name="x"/>'s dtype and device, <c>x.div(keep) * mask</c>. So a seeded
    /// generator (the trainer seeds it before every micro-batch) makes the masks reproducible, and gradient
    /// checkpointing, which replays the generator, draws the same masks when it recomputes a block.
    /// </remarks>
    public static Tensor Apply(Tensor x, double rate, bool training)
    {
        CheckRate(rate, nameof(rate));
        if (!training || rate == 0.0) return x.alias();
        double keep = 1.0 - rate;
        var shape = new long[x.dim()];
        Array.Fill(shape, 1L);
        shape[0] = x.shape[0];
        using var noise = rand(shape, dtype: x.dtype, device: x.device);          // (B, 1, ..., 1)
        using var mask = noise.add(keep).floor_();                                // 1 with probability keep, else 0
        using var scaled = x.div(keep);
        return scaled.mul(mask);
    }

    private static void CheckRate(double rate, string name)
    {
        if (!(rate >= 0.0 && rate < 1.0))
            throw new ArgumentOutOfRangeException(name, rate, "the drop path rate must lie in [0, 1)");
    }
}
