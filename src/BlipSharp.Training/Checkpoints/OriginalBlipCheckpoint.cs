using BlipSharp.Checkpoints;
using BlipSharp.Modeling.Vision;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Checkpoints;

/// <summary>Options for loading a salesforce/BLIP checkpoint.</summary>
public sealed record OriginalLoadOptions
{
    /// <summary>Receives one line per notable step (dropped derived entries, interpolated position embeddings, queues).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// Keep the model's own fresh queues (random unit columns, pointer 0, empty ids) instead of the checkpoint's,
    /// e.g. when the queue size changes. Off by default: the queues are loaded like every other entry.
    /// </summary>
    public bool ResetQueues { get; init; }
}

/// <summary>
/// Loads salesforce/BLIP <c>.pth</c> checkpoints (<c>torch.save({'model': state_dict, ...})</c>, e.g. the
/// <c>model_base*.pth</c> every BLIP fine-tuning starts from, momentum weights and queues included) into a
/// <see cref="BlipPretrainingModel"/>, strictly: every key goes through <see cref="OriginalBlipKeyMap"/>; the tied
/// entries must be the same values the model ties (encoder/decoder sharing, LM head = word embeddings); the ViT
/// position embeddings (online and momentum) are interpolated to the model's image size as a logged step; and any
/// missing, unexpected or mis-shaped key is an error naming it.
/// </summary>
/// <remarks>
/// A model built without a text decoder (<see cref="BlipPretrainingConfig.ForRetrieval"/>, salesforce/BLIP's
/// <c>BLIP_Retrieval</c>) loads a pretraining checkpoint the way BLIP's <c>blip_retrieval(pretrained=...)</c> does,
/// but explicitly: the checkpoint's <c>text_decoder.*</c> entries are logged as not used; without an
/// <c>idx_queue</c> in the checkpoint the id queue starts empty (-100) and the pointer at 0 (BLIP_Retrieval's
/// <c>ptr_queue</c> is a new buffer; the pretraining <c>queue_ptr</c> is not carried over); everything else is
/// strict. Retrieval checkpoints (with <c>idx_queue</c> and <c>ptr_queue</c>) load strictly, queues included.
/// </remarks>
public static class OriginalBlipCheckpoint
{
    private const string DecoderPrefix = "text_decoder.";
    private static readonly string[] QueueKeys = ["image_queue", "text_queue", "queue_ptr", "idx_queue"];
    private static readonly string[] PositionEmbeddingKeys = ["vision_model.embeddings.position_embedding", "vision_model_m.embeddings.position_embedding"];

    /// <summary>Creates a model for <paramref name="config"/> (at its image size) and loads the checkpoint into it.</summary>
    public static BlipPretrainingModel LoadPretraining(string path, BlipPretrainingConfig config, OriginalLoadOptions? options = null)
    {
        var stateDict = TorchCheckpoint.LoadStateDict(path);
        try
        {
            BlipPretrainingModel model;
            using (no_grad())
            {
                model = new BlipPretrainingModel(config);
            }
            try
            {
                LoadInto(model, stateDict, path, options);
                return model;
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var t in stateDict.Values) t.Dispose();
        }
    }

    /// <summary>Loads the checkpoint at <paramref name="path"/> into <paramref name="model"/>.</summary>
    public static void LoadInto(BlipPretrainingModel model, string path, OriginalLoadOptions? options = null)
    {
        var stateDict = TorchCheckpoint.LoadStateDict(path);
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
    /// <param name="model">The model to fill.</param>
    /// <param name="originalStateDict">The original keys and tensors.</param>
    /// <param name="source">Named in errors and log lines.</param>
    /// <param name="options">Logging and queue handling.</param>
    public static void LoadInto(BlipPretrainingModel model, IReadOnlyDictionary<string, Tensor> originalStateDict, string source, OriginalLoadOptions? options = null)
    {
        options ??= new OriginalLoadOptions();
        var log = options.Log;
        var created = new List<Tensor>();
        try
        {
            var mapped = MapKeys(model, originalStateDict, source, log);
            CheckTiedEntries(model, mapped, source, log);
            InterpolatePositionEmbeddings(model, mapped, source, log, created);
            PrepareQueues(model, mapped, source, options, log);
            StateDictLoader.LoadStrict(model, mapped, source);
        }
        finally
        {
            foreach (var t in created) t.Dispose();
        }
    }

    /// <summary>Renames every key; checks and drops the derived <c>position_ids</c> buffers and the decoder bias alias.</summary>
    private static Dictionary<string, Tensor> MapKeys(BlipPretrainingModel model, IReadOnlyDictionary<string, Tensor> original, string source, Action<string>? log)
    {
        var mapped = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var renamedFrom = new Dictionary<string, string>(StringComparer.Ordinal);
        var positionIds = new List<string>();
        var unusedDecoderKeys = new List<string>();
        foreach (var (key, value) in original)
        {
            if (model.text_decoder is null && key.StartsWith(DecoderPrefix, StringComparison.Ordinal))
            {
                unusedDecoderKeys.Add(key);
                continue;
            }
            if (OriginalBlipKeyMap.IsPositionIds(key))
            {
                CheckPositionIds(key, value, source);
                positionIds.Add(key);
                continue;
            }
            if (key == OriginalBlipKeyMap.DecoderBiasAlias)
            {
                if (!original.TryGetValue(OriginalBlipKeyMap.DecoderBias, out var bias) || !SameValues(bias, value))
                    throw new CheckpointFormatException($"{source}: '{key}' must be the same tensor as '{OriginalBlipKeyMap.DecoderBias}' (BLIP ties them) but differs or is missing.");
                log?.Invoke($"{source}: '{key}' is '{OriginalBlipKeyMap.DecoderBias}' (tied); loaded through it.");
                continue;
            }
            string target = OriginalBlipKeyMap.Rename(key);
            if (renamedFrom.TryGetValue(target, out string? other))
                throw new CheckpointFormatException($"{source}: '{other}' and '{key}' both map to '{target}'.");
            renamedFrom[target] = key;
            mapped[target] = value;
        }
        if (unusedDecoderKeys.Count > 0)
            log?.Invoke($"{source}: {unusedDecoderKeys.Count} text_decoder.* entries not used by this model (it has no text decoder, as BLIP_Retrieval): " +
                $"{string.Join(", ", unusedDecoderKeys.Take(3))}{(unusedDecoderKeys.Count > 3 ? ", ..." : "")}.");
        if (positionIds.Count > 0)
            log?.Invoke($"{source}: {positionIds.Count} position_ids buffer(s) checked (arange) and not loaded: positions are computed here ({string.Join(", ", positionIds)}).");
        return mapped;
    }

    /// <summary>Throws unless <paramref name="value"/> is the int64 (1, L) arange BLIP's BERT keeps as <c>position_ids</c>.</summary>
    internal static void CheckPositionIds(string key, Tensor value, string source)
    {
        if (value.dtype != ScalarType.Int64 || value.dim() != 2 || value.shape[0] != 1)
            throw new CheckpointFormatException($"{source}: '{key}' should be an int64 (1, L) arange, got {value.dtype} ({string.Join(", ", value.shape)}).");
        using var scope = NewDisposeScope();
        var expected = arange(value.shape[1], dtype: ScalarType.Int64).unsqueeze(0);
        if (!value.cpu().eq(expected).all().ToBoolean())
            throw new CheckpointFormatException($"{source}: '{key}' is not arange({value.shape[1]}); custom position ids are not supported.");
    }

    /// <summary>
    /// The model ties decoder entries to encoder entries; the checkpoint must hold equal values under both names
    /// (torch.save keeps them as one storage). An alias the checkpoint lacks is filled from its source.
    /// </summary>
    private static void CheckTiedEntries(BlipPretrainingModel model, Dictionary<string, Tensor> mapped, string source, Action<string>? log)
    {
        int filled = 0, checkedCount = 0;
        foreach (var (alias, canonical) in model.SharedParameterNames)
        {
            bool hasAlias = mapped.TryGetValue(alias, out var aliasValue);
            if (!mapped.TryGetValue(canonical, out var canonicalValue))
            {
                if (!hasAlias) continue; // reported as missing by the strict load
                mapped[canonical] = aliasValue!;
                filled++;
                continue;
            }
            if (!hasAlias)
            {
                mapped[alias] = canonicalValue;
                filled++;
                continue;
            }
            if (!SameValues(canonicalValue, aliasValue!))
                throw new CheckpointFormatException(
                    $"{source}: '{alias}' and '{canonical}' differ, but the model shares one tensor between them (BLIP ties the decoder to the encoder except self-attention, and the LM head to the word embeddings).");
            checkedCount++;
        }
        log?.Invoke($"{source}: {checkedCount} tied entries checked equal to their encoder entries{(filled > 0 ? $", {filled} filled from them" : "")}; they share one Parameter each.");
    }

    private static void InterpolatePositionEmbeddings(BlipPretrainingModel model, Dictionary<string, Tensor> mapped, string source, Action<string>? log, List<Tensor> created)
    {
        var vision = model.Config.VisionConfig;
        foreach (string key in PositionEmbeddingKeys)
        {
            if (!mapped.TryGetValue(key, out var value) || value.dim() != 3 || value.shape[1] == vision.NumPositions) continue;
            var resized = PositionEmbeddings.Interpolate(value, vision.GridSize, vision.GridSize);
            created.Add(resized);
            mapped[key] = resized;
            log?.Invoke($"{source}: '{key}' interpolated (bicubic) from [{string.Join(", ", value.shape)}] to [{string.Join(", ", resized.shape)}] for {vision.ImageSize} px images.");
        }
    }

    private static void PrepareQueues(BlipPretrainingModel model, Dictionary<string, Tensor> mapped, string source, OriginalLoadOptions options, Action<string>? log)
    {
        var own = model.state_dict();
        if (options.ResetQueues)
        {
            foreach (string key in QueueKeys)
            {
                mapped.Remove(key);
                if (own.TryGetValue(key, out var value)) mapped[key] = value;
            }
            log?.Invoke($"{source}: queues not loaded (ResetQueues): the model's fresh queues are kept.");
            return;
        }
        if (model.idx_queue is not null && !mapped.ContainsKey("idx_queue"))
        {
            using (no_grad()) model.idx_queue.fill_(-100);
            mapped["idx_queue"] = model.idx_queue;
            using (no_grad()) model.queue_ptr.zero_();
            mapped["queue_ptr"] = model.queue_ptr;
            log?.Invoke($"{source}: no idx_queue in the checkpoint: the id queue starts empty (-100) and the pointer at 0, as BLIP_Retrieval starts from a pretraining checkpoint; the feature queues are loaded.");
        }
    }

    private static bool SameValues(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && ReferenceEqualsOrEqual(a, b);

    private static bool ReferenceEqualsOrEqual(Tensor a, Tensor b)
    {
        if (ReferenceEquals(a, b)) return true;
        using var same = a.eq(b);
        using var all = same.all();
        return all.ToBoolean();
    }
}
