using System.Text.RegularExpressions;
using BlipSharp.Checkpoints;
using BlipSharp.Modeling;
using BlipSharp.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Training.Nlvr;

/// <summary>
/// Loads salesforce/BLIP checkpoints into <see cref="BlipForNlvr"/>: an NLVR checkpoint (<c>model_base_nlvr.pth</c>)
/// as it is, strictly (<see cref="LoadNlvr"/>), or a pretraining checkpoint to start NLVR fine-tuning from, the way
/// <c>blip_nlvr.load_checkpoint</c> does (<see cref="FromPretraining(BlipForNlvr, string, Action{string}?)"/>).
/// </summary>
public static partial class NlvrCheckpoint
{
    /// <summary>
    /// The parts of a pretraining checkpoint (after the ViT rename) that NLVR has no use for: the decoder, the momentum
    /// encoders and projections, the ITC projections and temperature, the ITM head and the queues.
    /// </summary>
    public static IReadOnlyList<string> PretrainingOnlyPrefixes { get; } =
        ["text_decoder.", "vision_model_m.", "text_encoder_m.", "vision_proj", "text_proj", "itm_head.", "temp", "image_queue", "text_queue", "queue_ptr", "idx_queue"];

    [GeneratedRegex(@"^(text_encoder\.encoder\.layer\.\d+\.crossattention\.)self\.(.+)$", RegexOptions.CultureInvariant)]
    private static partial Regex CrossAttentionRegex();

    [GeneratedRegex(@"^(text_encoder\.encoder\.layer\.\d+\.crossattention\.output\.)dense\.(weight|bias)$", RegexOptions.CultureInvariant)]
    private static partial Regex CrossOutputDenseRegex();

    /// <summary>Loads a BLIP NLVR checkpoint (<c>.pth</c> or safetensors copy) strictly: every key of the model, nothing else.</summary>
    /// <param name="model">The model to fill.</param>
    /// <param name="path">The checkpoint file.</param>
    /// <param name="log">Receives the loader's notes (position_ids checked, position embeddings interpolated).</param>
    public static void LoadNlvr(BlipForNlvr model, string path, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        OriginalTaskCheckpoint.LoadInto(model, path, new OriginalTaskLoadOptions { Log = log });
    }

    /// <summary>Reads a BLIP pretraining checkpoint and starts <paramref name="model"/> from it; see <see cref="FromPretraining(BlipForNlvr, IReadOnlyDictionary{string, Tensor}, string, Action{string}?)"/>.</summary>
    public static void FromPretraining(BlipForNlvr model, string path, Action<string>? log = null)
    {
        var original = OriginalTaskCheckpoint.ReadStateDict(path);
        try
        {
            FromPretraining(model, original, path, log);
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Starts NLVR fine-tuning from a pretraining state_dict as <c>blip_nlvr.load_checkpoint</c> does: each text encoder
    /// layer's <c>crossattention.self.*</c> is copied into both <c>self0.*</c> and <c>self1.*</c> and its
    /// <c>crossattention.output.dense.*</c> into both <c>dense0.*</c> and <c>dense1.*</c>; <c>merge_layer</c> gets
    /// BERT's initialisation (N(0, initializer_range), zero bias: what BLIP's constructor gives it) and <c>cls_head</c>
    /// keeps the model's own initialisation; the ViT (position embeddings interpolated when the image size differs) and
    /// the rest of the text encoder load; the <see cref="PretrainingOnlyPrefixes"/> parts are skipped by name. Every
    /// other mismatch is an error naming the key (BLIP's <c>strict=False</c> would print it and go on). Each step is
    /// logged.
    /// </summary>
    /// <param name="model">The model to fill.</param>
    /// <param name="original">The checkpoint's state_dict, original key names (not disposed here).</param>
    /// <param name="source">Named in errors and log lines.</param>
    /// <param name="log">Receives one line per step.</param>
    /// <exception cref="CheckpointFormatException">The checkpoint already has two-image keys, lacks a layer's cross-attention, or does not fit.</exception>
    public static void FromPretraining(BlipForNlvr model, IReadOnlyDictionary<string, Tensor> original, string source, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(original);
        var expanded = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var duplicatedLayers = new SortedSet<string>(StringComparer.Ordinal);
        int attentionKeys = 0, denseKeys = 0;
        foreach (var (key, value) in original)
        {
            if (key.Contains(".crossattention.self0.", StringComparison.Ordinal) || key.Contains(".crossattention.output.dense0.", StringComparison.Ordinal))
                throw new CheckpointFormatException($"{source}: '{key}' is a two-image (NLVR) key: this is not a pretraining checkpoint; load it with {nameof(LoadNlvr)}.");
            if (CrossAttentionRegex().Match(key) is { Success: true } attention)
            {
                Add(expanded, $"{attention.Groups[1].Value}self0.{attention.Groups[2].Value}", value, source);
                Add(expanded, $"{attention.Groups[1].Value}self1.{attention.Groups[2].Value}", value, source);
                duplicatedLayers.Add(attention.Groups[1].Value);
                attentionKeys++;
            }
            else if (CrossOutputDenseRegex().Match(key) is { Success: true } dense)
            {
                Add(expanded, $"{dense.Groups[1].Value}dense0.{dense.Groups[2].Value}", value, source);
                Add(expanded, $"{dense.Groups[1].Value}dense1.{dense.Groups[2].Value}", value, source);
                denseKeys++;
            }
            else
            {
                Add(expanded, key, value, source);
            }
        }
        log?.Invoke($"{source}: {attentionKeys} cross-attention key(s) 'crossattention.self.*' copied into self0 and self1, {denseKeys} "
            + $"'crossattention.output.dense.*' into dense0 and dense1, in {duplicatedLayers.Count} text layer(s) (blip_nlvr.load_checkpoint).");

        var fresh = FreshParameters(model, expanded, source, log);
        foreach (var (key, value) in fresh) expanded[key] = value;
        OriginalTaskCheckpoint.LoadInto(model, expanded, source, new OriginalTaskLoadOptions { Log = log, UnusedPrefixes = PretrainingOnlyPrefixes });
    }

    private static void Add(Dictionary<string, Tensor> expanded, string key, Tensor value, string source)
    {
        if (!expanded.TryAdd(key, value))
            throw new CheckpointFormatException($"{source}: '{key}' occurs twice after duplicating the cross-attention into self0/self1 and dense0/dense1.");
    }

    /// <summary>
    /// The parameters a pretraining checkpoint cannot provide, initialised as BLIP initialises them and then handed to
    /// the strict loader as their own values: <c>merge_layer</c> (BERT init) and <c>cls_head</c> (as constructed).
    /// </summary>
    private static Dictionary<string, Tensor> FreshParameters(BlipForNlvr model, Dictionary<string, Tensor> expanded, string source, Action<string>? log)
    {
        double std = model.Config.Blip.TextConfig.InitializerRange;
        int merged = 0;
        using (no_grad())
        {
            foreach (var layer in model.text_encoder.encoder.layer)
            {
                if (layer.crossattention.output.merge_layer is not { } merge) continue;
                merge.weight!.normal_(0.0, std);
                merge.bias!.zero_();
                merged++;
            }
        }
        var fresh = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, value) in model.state_dict())
        {
            if (!key.Contains(".merge_layer.", StringComparison.Ordinal) && !key.StartsWith("cls_head.", StringComparison.Ordinal)) continue;
            if (expanded.ContainsKey(key))
                throw new CheckpointFormatException($"{source}: '{key}' is in a pretraining checkpoint, which has no NLVR head or merge layers; load an NLVR checkpoint with {nameof(LoadNlvr)}.");
            fresh[key] = value;
        }
        log?.Invoke($"{source}: not in a pretraining checkpoint, initialised here: merge_layer of {merged} text layer(s) (N(0, {std}), zero bias, as BERT's init), "
            + $"cls_head ({fresh.Keys.Count(k => k.StartsWith("cls_head.", StringComparison.Ordinal))} tensors, as constructed).");
        return fresh;
    }
}
