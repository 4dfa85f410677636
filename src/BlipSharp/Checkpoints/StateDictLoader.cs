using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Checkpoints;

/// <summary>
/// Strict weight loading: every model key must be in the checkpoint with the same shape, and every checkpoint
/// key must be used. Any difference is one <see cref="CheckpointFormatException"/> that lists each missing,
/// unexpected or mis-shaped key (with both shapes). Values are copied into the existing parameters, so the
/// module's dtype and device win.
/// </summary>
public static class StateDictLoader
{
    /// <summary>How many keys of each kind an error message lists before summarising.</summary>
    public const int MaxListedKeys = 20;

    /// <summary>Copies <paramref name="weights"/> into <paramref name="model"/>, strictly.</summary>
    /// <param name="model">The module whose <c>state_dict()</c> keys must match.</param>
    /// <param name="weights">Tensors by key (not disposed here).</param>
    /// <param name="source">The file the weights came from, for error messages.</param>
    public static void LoadStrict(nn.Module model, IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        var target = model.state_dict();
        var missing = target.Keys.Where(k => !weights.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = weights.Keys.Where(k => !target.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var misShaped = target.Where(kv => weights.TryGetValue(kv.Key, out var w) && !w.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => (kv.Key, Expected: kv.Value.shape, Actual: weights[kv.Key].shape))
            .OrderBy(x => x.Key, StringComparer.Ordinal).ToList();
        if (missing.Count + unexpected.Count + misShaped.Count > 0)
            throw new CheckpointFormatException(Describe(model, source, missing, unexpected, misShaped));

        using var _ = no_grad();
        foreach (var (key, param) in target)
        {
            var value = weights[key];
            if (value.is_floating_point() != param.is_floating_point())
                throw new CheckpointFormatException(
                    $"{source}: key '{key}' holds {value.dtype} but the model expects {param.dtype}.");
            param.copy_(value);
        }
    }

    private static string Describe(nn.Module model, string source, List<string> missing, List<string> unexpected,
        List<(string Key, long[] Expected, long[] Actual)> misShaped)
    {
        var sb = new StringBuilder();
        sb.Append($"{source} does not fit {model.GetName()}: ");
        sb.Append($"{missing.Count} missing, {unexpected.Count} unexpected, {misShaped.Count} mis-shaped key(s).");
        foreach (var (key, expected, actual) in misShaped.Take(MaxListedKeys))
            sb.Append($"\n  shape mismatch: '{key}' is [{string.Join(", ", actual)}] in the checkpoint, the model needs [{string.Join(", ", expected)}]");
        if (misShaped.Count > MaxListedKeys) sb.Append($"\n  ... and {misShaped.Count - MaxListedKeys} more mis-shaped keys");
        foreach (string key in missing.Take(MaxListedKeys)) sb.Append($"\n  missing from the checkpoint: '{key}'");
        if (missing.Count > MaxListedKeys) sb.Append($"\n  ... and {missing.Count - MaxListedKeys} more missing keys");
        foreach (string key in unexpected.Take(MaxListedKeys)) sb.Append($"\n  unexpected in the checkpoint: '{key}'");
        if (unexpected.Count > MaxListedKeys) sb.Append($"\n  ... and {unexpected.Count - MaxListedKeys} more unexpected keys");
        return sb.ToString();
    }
}
