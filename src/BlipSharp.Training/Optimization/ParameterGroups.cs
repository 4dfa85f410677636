using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Training.Optimization;

/// <summary>Which parameters get weight decay.</summary>
public enum WeightDecayPolicy
{
    /// <summary>
    /// Every trainable parameter, as salesforce/BLIP's scripts do (<c>AdamW(params=model.parameters(), lr,
    /// weight_decay)</c> in pretrain.py, train_caption.py and train_retrieval.py): biases, LayerNorms, embeddings
    /// and the temperature included. The default, for parity with BLIP.
    /// </summary>
    AllParameters,

    /// <summary>
    /// The common alternative: no decay on biases, LayerNorm weights, the temperature (every parameter of rank 0
    /// or 1) and on embedding tables (word, position and class embeddings).
    /// </summary>
    NoDecayOnBiasNormAndEmbeddings,
}

/// <summary>A named group of parameters sharing a weight decay.</summary>
/// <param name="Name">"decay" or "no_decay".</param>
/// <param name="Parameters">The parameters with their names.</param>
/// <param name="WeightDecay">The decoupled weight decay of the group.</param>
public sealed record ParameterGroup(string Name, IReadOnlyList<(string Name, Parameter Parameter)> Parameters, double WeightDecay);

/// <summary>Splits trainable parameters into optimizer groups by <see cref="WeightDecayPolicy"/>.</summary>
public static class ParameterGroups
{
    /// <summary>
    /// Builds the groups. Parameters that do not require gradients (momentum copies) are left out; a tensor that
    /// appears under several names (tied weights) is kept once, under its first name, so it is updated once.
    /// Empty groups are omitted.
    /// </summary>
    /// <param name="parameters">Named parameters, e.g. <c>BlipPretrainingModel.TrainableParameters()</c> or <c>named_parameters()</c>.</param>
    /// <param name="weightDecay">The decay of the decayed group (BLIP: 0.05).</param>
    /// <param name="policy">Which parameters decay.</param>
    public static IReadOnlyList<ParameterGroup> Build(IEnumerable<(string Name, Parameter Parameter)> parameters, double weightDecay,
        WeightDecayPolicy policy = WeightDecayPolicy.AllParameters)
    {
        if (weightDecay < 0) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "must be non-negative.");
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        var decay = new List<(string, Parameter)>();
        var noDecay = new List<(string, Parameter)>();
        foreach (var (name, p) in parameters)
        {
            if (!p.requires_grad || !seen.Add(p)) continue;
            bool decays = policy == WeightDecayPolicy.AllParameters || !IsExemptFromDecay(name, p);
            (decays ? decay : noDecay).Add((name, p));
        }
        var groups = new List<ParameterGroup>();
        if (decay.Count > 0) groups.Add(new ParameterGroup("decay", decay, weightDecay));
        if (noDecay.Count > 0) groups.Add(new ParameterGroup("no_decay", noDecay, 0.0));
        return groups;
    }

    /// <summary>
    /// True for what <see cref="WeightDecayPolicy.NoDecayOnBiasNormAndEmbeddings"/> exempts: parameters of rank 0 or 1
    /// (biases, LayerNorm weights, the temperature) and embedding tables (names ending in <c>embeddings.weight</c>,
    /// <c>class_embedding</c> or <c>position_embedding</c>).
    /// </summary>
    public static bool IsExemptFromDecay(string name, Parameter parameter) =>
        parameter.dim() <= 1
        || name.EndsWith("embeddings.weight", StringComparison.Ordinal)
        || name.EndsWith("class_embedding", StringComparison.Ordinal)
        || name.EndsWith("position_embedding", StringComparison.Ordinal);
}
