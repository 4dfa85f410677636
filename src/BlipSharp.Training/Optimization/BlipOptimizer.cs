using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Training.Optimization;

/// <summary>AdamW settings; the defaults are BLIP's (torch's AdamW defaults, weight decay 0.05).</summary>
public sealed record AdamWOptions
{
    /// <summary>Initial learning rate of every group (BLIP's scripts then set it each epoch or step from a schedule).</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>Decoupled weight decay of the decayed group (BLIP: 0.05).</summary>
    public double WeightDecay { get; init; } = 0.05;

    /// <summary>Which parameters decay (BLIP: all).</summary>
    public WeightDecayPolicy Policy { get; init; } = WeightDecayPolicy.AllParameters;

    /// <summary>First-moment coefficient.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Second-moment coefficient (torch's default 0.999; note TorchSharp's <c>torch.optim.AdamW</c> factory defaults to 0.99).</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Added to the denominator.</summary>
    public double Eps { get; init; } = 1e-8;
}

/// <summary>Builds the optimizer BLIP trains with and sets its learning rate.</summary>
public static class BlipOptimizer
{
    /// <summary>
    /// AdamW over <paramref name="parameters"/> grouped by <see cref="AdamWOptions.Policy"/>. TorchSharp's update is
    /// torch's: <c>p *= 1 - lr*wd</c>, then Adam with bias correction.
    /// </summary>
    public static AdamW CreateAdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, AdamWOptions? options = null)
    {
        options ??= new AdamWOptions();
        var groups = ParameterGroups.Build(parameters, options.WeightDecay, options.Policy);
        if (groups.Count == 0) throw new ArgumentException("no trainable parameters.", nameof(parameters));
        return CreateAdamW(groups, options);
    }

    /// <summary>AdamW over prepared groups (each with its own weight decay).</summary>
    public static AdamW CreateAdamW(IReadOnlyList<ParameterGroup> groups, AdamWOptions? options = null)
    {
        options ??= new AdamWOptions();
        var torchGroups = groups.Select(g => new AdamW.ParamGroup(g.Parameters.Select(p => p.Parameter), lr: options.LearningRate * g.LearningRateScale,
            beta1: options.Beta1, beta2: options.Beta2, eps: options.Eps, weight_decay: g.WeightDecay)).ToList();
        return new AdamW(torchGroups, options.LearningRate, options.Beta1, options.Beta2, options.Eps, options.WeightDecay);
    }

    /// <summary>Sets the learning rate of every parameter group (what BLIP's schedule functions do).</summary>
    public static void SetLearningRate(OptimizerHelper optimizer, double learningRate)
    {
        if (learningRate < 0 || double.IsNaN(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "must be non-negative.");
        foreach (var group in optimizer.ParamGroups) group.LearningRate = learningRate;
    }

    /// <summary>
    /// Sets each parameter group's learning rate to <paramref name="learningRate"/> times its scale;
    /// <paramref name="scales"/> holds one multiplier per group, in the optimizer's order.
    /// </summary>
    public static void SetLearningRate(OptimizerHelper optimizer, double learningRate, IReadOnlyList<double> scales)
    {
        if (learningRate < 0 || double.IsNaN(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "must be non-negative.");
        var groups = optimizer.ParamGroups.ToArray();
        if (groups.Length != scales.Count) throw new ArgumentException($"{scales.Count} scales for {groups.Length} parameter groups", nameof(scales));
        for (int i = 0; i < groups.Length; i++) groups[i].LearningRate = learningRate * scales[i];
    }
}
