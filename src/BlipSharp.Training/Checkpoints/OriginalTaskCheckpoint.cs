using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Checkpoints;

/// <summary>Options for loading a salesforce/BLIP checkpoint into a fine-tuning (task) model.</summary>
public sealed record OriginalTaskLoadOptions
{
    /// <summary>Receives one line per notable step (renamed aliases, interpolated position embeddings, unused parts).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// Checkpoint keys under these prefixes (after renaming) are not part of the task model and are skipped, with
    /// one log line naming the prefixes and counts. This is how BLIP starts every fine-tuning from a pretraining
    /// checkpoint (a captioner uses only the ViT and the decoder, so the encoders, projections, momentum copies and
    /// queues are skipped). Any other key the model lacks is an error, as is every key the model has but the
    /// checkpoint lacks.
    /// </summary>
    public IReadOnlyList<string> UnusedPrefixes { get; init; } = [];
}

/// <summary>
/// Loads salesforce/BLIP checkpoints (<c>.pth</c> as <c>torch.save({'model': state_dict})</c>, or a safetensors copy
/// of such a state_dict) into task models whose module names follow Hugging Face's (<c>vision_model.*</c>,
/// <c>text_encoder.*</c>, <c>text_decoder.*</c>): the ViT keys are renamed through <see cref="OriginalBlipKeyMap"/>,
/// the derived <c>position_ids</c> buffers and the LM head's bias alias are checked and dropped, the position
/// embeddings are interpolated to the model's image size as a logged step, skipped parts are named, and the rest
/// loads strictly (<see cref="StateDictLoader.LoadStrict"/>).
/// </summary>
public static class OriginalTaskCheckpoint
{
    private const string PositionEmbeddingSuffix = "vision_model.embeddings.position_embedding";

    /// <summary>
    /// The original state_dict of <paramref name="path"/>: a <c>.pth</c>/<c>.pt</c> (the <c>model</c> entry of
    /// BLIP's checkpoints) or a <c>.safetensors</c> file, whose metadata <c>tied_aliases</c> (JSON: omitted key to the
    /// key holding its data) restores the tied entries BLIP's state_dict lists under two names.
    /// </summary>
    public static Dictionary<string, Tensor> ReadStateDict(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such checkpoint file.", path);
        if (!path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return TorchCheckpoint.LoadStateDict(path);
        var header = SafeTensors.ReadHeader(path);
        var tensors = SafeTensors.Load(path);
        if (header.Metadata is { } metadata && metadata.TryGetValue("tied_aliases", out string? json))
        {
            Dictionary<string, string> aliases;
            try
            {
                aliases = JsonSerializer.Deserialize<Dictionary<string, string>>(json) ?? [];
            }
            catch (JsonException e)
            {
                foreach (var t in tensors.Values) t.Dispose();
                throw new CheckpointFormatException($"{path}: metadata 'tied_aliases' is not a JSON object of key names: {e.Message}");
            }
            foreach (var (alias, holder) in aliases)
            {
                if (!tensors.TryGetValue(holder, out var value))
                {
                    foreach (var t in tensors.Values) t.Dispose();
                    throw new CheckpointFormatException($"{path}: tied alias '{alias}' points at '{holder}', which the file does not hold.");
                }
                tensors[alias] = value.alias();
            }
        }
        return tensors;
    }

    /// <summary>Reads <paramref name="path"/> (<see cref="ReadStateDict"/>) and loads it into <paramref name="model"/>.</summary>
    public static void LoadInto(nn.Module model, string path, OriginalTaskLoadOptions? options = null)
    {
        var stateDict = ReadStateDict(path);
        try
        {
            LoadInto(model, stateDict, path, options);
        }
        finally
        {
            foreach (var t in stateDict.Values) t.Dispose();
        }
    }

    /// <summary>Loads an original state_dict (keys as BLIP saves them) into <paramref name="model"/>; the tensors are not disposed.</summary>
    /// <param name="model">A task model with Hugging Face module names.</param>
    /// <param name="originalStateDict">The original keys and tensors.</param>
    /// <param name="source">Named in errors and log lines.</param>
    /// <param name="options">Skipped parts and logging.</param>
    public static void LoadInto(nn.Module model, IReadOnlyDictionary<string, Tensor> originalStateDict, string source, OriginalTaskLoadOptions? options = null)
    {
        options ??= new OriginalTaskLoadOptions();
        var log = options.Log;
        var own = model.state_dict();
        var mapped = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var renamedFrom = new Dictionary<string, string>(StringComparer.Ordinal);
        var created = new List<Tensor>();
        var skipped = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int positionIds = 0;
        try
        {
            foreach (var (key, value) in originalStateDict)
            {
                if (OriginalBlipKeyMap.IsPositionIds(key))
                {
                    OriginalBlipCheckpoint.CheckPositionIds(key, value, source);
                    positionIds++;
                    continue;
                }
                string target = OriginalBlipKeyMap.Rename(key);
                string? unusedPrefix = options.UnusedPrefixes.FirstOrDefault(p => target.StartsWith(p, StringComparison.Ordinal));
                if (unusedPrefix is not null && !own.ContainsKey(target))
                {
                    skipped[unusedPrefix] = skipped.GetValueOrDefault(unusedPrefix) + 1;
                    continue;
                }
                if (renamedFrom.TryGetValue(target, out string? other))
                    throw new CheckpointFormatException($"{source}: '{other}' and '{key}' both map to '{target}'.");
                renamedFrom[target] = key;
                mapped[target] = value;
            }
            if (positionIds > 0)
                log?.Invoke($"{source}: {positionIds} position_ids buffer(s) checked (arange) and not loaded: positions are computed here.");
            if (skipped.Count > 0)
                log?.Invoke($"{source}: not part of this model, skipped: {string.Join(", ", skipped.Select(p => $"{p.Value} '{p.Key}*' key(s)"))}.");

            DropDecoderBiasAliases(mapped, own, source, log);
            InterpolatePositionEmbeddings(mapped, own, source, log, created);
            StateDictLoader.LoadStrict(model, mapped, source);
        }
        finally
        {
            foreach (var t in created) t.Dispose();
        }
    }

    /// <summary>
    /// BLIP's state_dict lists the LM head bias twice (<c>cls.predictions.bias</c> and <c>cls.predictions.decoder.bias</c>,
    /// one tensor); a model that keeps it under one name gets it once, after checking both are equal.
    /// </summary>
    private static void DropDecoderBiasAliases(Dictionary<string, Tensor> mapped, IReadOnlyDictionary<string, Tensor> own, string source, Action<string>? log)
    {
        const string aliasSuffix = "cls.predictions.decoder.bias", biasSuffix = "cls.predictions.bias";
        foreach (string key in mapped.Keys.Where(k => k.EndsWith(aliasSuffix, StringComparison.Ordinal)).ToList())
        {
            if (own.ContainsKey(key)) continue;
            string biasKey = key[..^aliasSuffix.Length] + biasSuffix;
            if (!mapped.TryGetValue(biasKey, out var bias) || !SameValues(bias, mapped[key]))
                throw new CheckpointFormatException($"{source}: '{key}' must be the same tensor as '{biasKey}' (BLIP ties them) but differs or is missing.");
            mapped.Remove(key);
            log?.Invoke($"{source}: '{key}' is '{biasKey}' (tied); loaded through it.");
        }
    }

    private static bool SameValues(Tensor a, Tensor b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var same = a.eq(b);
        using var all = same.all();
        return all.ToBoolean();
    }

    private static void InterpolatePositionEmbeddings(Dictionary<string, Tensor> mapped, IReadOnlyDictionary<string, Tensor> own, string source, Action<string>? log, List<Tensor> created)
    {
        foreach (string key in mapped.Keys.Where(k => k.EndsWith(PositionEmbeddingSuffix, StringComparison.Ordinal)).ToList())
        {
            if (!own.TryGetValue(key, out var target)) continue;
            var value = mapped[key];
            if (value.dim() != 3 || target.dim() != 3 || value.shape[1] == target.shape[1]) continue;
            int grid = (int)Math.Round(Math.Sqrt(target.shape[1] - 1));
            if (grid * grid != target.shape[1] - 1)
                throw new CheckpointFormatException($"{source}: the model's '{key}' has {target.shape[1]} positions, not 1 + a square grid.");
            var resized = PositionEmbeddings.Interpolate(value, grid, grid);
            created.Add(resized);
            mapped[key] = resized;
            log?.Invoke($"{source}: '{key}' interpolated (bicubic) from [{string.Join(", ", value.shape)}] to [{string.Join(", ", resized.shape)}].");
        }
    }
}
