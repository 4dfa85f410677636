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

/// <summary>A named group of parameters sharing a weight decay and a learning-rate multiplier.</summary>
/// <param name="Name">"decay" or "no_decay" (with the module's name appended when the group has its own learning-rate scale).</param>
/// <param name="Parameters">The parameters with their names.</param>
/// <param name="WeightDecay">The decoupled weight decay of the group.</param>
/// <param name="LearningRateScale">The group's learning rate is the schedule's times this (1: the schedule's).</param>
public sealed record ParameterGroup(string Name, IReadOnlyList<(string Name, Parameter Parameter)> Parameters, double WeightDecay,
    double LearningRateScale = 1.0);

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

    /// <summary>
    /// Splits <paramref name="groups"/> by learning-rate scale: a parameter whose name is a key of
    /// <paramref name="scales"/> or starts with a key and a dot (<c>vision_model</c> matches <c>vision_model.*</c>) gets
    /// that key's multiplier, the longest matching key winning; others keep 1. A group whose parameters differ is
    /// split into one group per scale, named <c>decay:vision_model</c> and so on; weight decay is kept.
    /// </summary>
    /// <param name="groups">Groups with their parameters' names.</param>
    /// <param name="scales">Module name to multiplier (at least 0; 0 freezes the module).</param>
    /// <exception cref="ArgumentException">A multiplier is negative or not finite, or a key matches no parameter (a misspelt module).</exception>
    public static IReadOnlyList<ParameterGroup> ScaleLearningRates(IReadOnlyList<ParameterGroup> groups, IReadOnlyDictionary<string, double>? scales)
    {
        if (scales is null || scales.Count == 0) return groups;
        foreach (var (key, value) in scales)
            if (!(value >= 0) || double.IsInfinity(value))
                throw new ArgumentException($"the learning-rate scale of '{key}' must be a finite number at least 0 (got {value})", nameof(scales));
        var used = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<ParameterGroup>();
        foreach (var group in groups)
        {
            var byKey = new Dictionary<string, List<(string, Parameter)>>(StringComparer.Ordinal);
            var order = new List<string>();
            foreach (var (name, p) in group.Parameters)
            {
                string key = scales.Keys.Where(k => name == k || name.StartsWith(k + ".", StringComparison.Ordinal)).MaxBy(k => k.Length) ?? "";
                if (key.Length > 0) used.Add(key);
                if (!byKey.TryGetValue(key, out var list))
                {
                    byKey[key] = list = [];
                    order.Add(key);
                }
                list.Add((name, p));
            }
            foreach (string key in order)
                result.Add(key.Length == 0
                    ? group with { Parameters = byKey[key] }
                    : new ParameterGroup($"{group.Name}:{key}", byKey[key], group.WeightDecay, group.LearningRateScale * scales[key]));
        }
        var unused = scales.Keys.Where(k => !used.Contains(k)).ToArray();
        if (unused.Length > 0)
            throw new ArgumentException($"learning-rate scale for '{unused[0]}', which names no trained parameter (names start with: " +
                string.Join(", ", groups.SelectMany(g => g.Parameters).Select(p => p.Name.Split('.')[0]).Distinct()) + ")", nameof(scales));
        return result;
    }
}
