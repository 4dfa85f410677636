using System.Text.RegularExpressions;
using BlipSharp.Checkpoints;
using BlipSharp.Modeling.Vision;
using BlipSharp.Training.Training;
using static TorchSharp.torch;

namespace BlipSharp.Training.Checkpoints;

/// <summary>
/// Starts a ViT from pretrained weights, as BLIP starts its vision encoder from an ImageNet model (DeiT-B/16 for
/// ViT-B, <c>torch.hub.load_state_dict_from_url(...deit_base_patch16_224...)["model"]</c>, loaded with
/// <c>strict=False</c> so that the classifier head is left out). Accepted sources:
/// <list type="bullet">
/// <item>a timm/DeiT <c>.pth</c> (keys <c>cls_token</c>, <c>pos_embed</c>, <c>patch_embed.proj.*</c>, <c>blocks.N.*</c>,
/// <c>norm.*</c>, under <c>"model"</c> or at the top level, optionally prefixed <c>visual_encoder.</c> or <c>module.</c>),
/// renamed by <see cref="OriginalBlipKeyMap"/>;</item>
/// <item>a safetensors or <c>.pth</c> file in this library's layout (keys <c>vision_model.*</c>: a Hugging Face BLIP
/// checkpoint, or the model of a <c>classify</c> run);</item>
/// <item>a run folder of <c>blip pretrain</c> (its newest checkpoint's <c>model.safetensors</c>).</item>
/// </list>
/// Every ViT parameter must be present with the model's shape (the position embeddings are interpolated when the
/// grid differs); entries outside the ViT (a classifier head, text weights) are counted in the log and not loaded.
/// </summary>
public static class PretrainedVisionEncoder
{
    private const string Prefix = "vision_model.";
    private static readonly Regex TimmKey = new(@"^(cls_token|pos_embed|dist_token|patch_embed\.|blocks\.\d+\.|norm\.|head\.|head_dist\.|fc_norm\.)", RegexOptions.CultureInvariant);

    /// <summary>Resolves <paramref name="path"/> (a file, or a run folder to its newest checkpoint's weights).</summary>
    /// <exception cref="FileNotFoundException">Neither a file nor a run folder with a checkpoint.</exception>
    public static string ResolveFile(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (File.Exists(path)) return path;
        if (Directory.Exists(path))
        {
            string? latest = new CheckpointStore(Path.Combine(path, "checkpoints")).Latest();
            string? weights = latest is null ? null : Path.Combine(latest, "model.safetensors");
            if (weights is not null && File.Exists(weights)) return weights;
            throw new FileNotFoundException($"{path} is a folder but not a run folder with a checkpoint (no checkpoints/latest with model.safetensors).", path);
        }
        throw new FileNotFoundException($"{path} does not exist.", path);
    }

    /// <summary>Loads the ViT weights found at <paramref name="path"/> into <paramref name="vision"/>.</summary>
    /// <param name="vision">The encoder to fill.</param>
    /// <param name="path">A checkpoint file or a run folder (see the class summary).</param>
    /// <param name="log">Receives one line on what was loaded, renamed, interpolated and left out.</param>
    /// <exception cref="CheckpointFormatException">A ViT entry is missing or has the wrong shape; the message names it.</exception>
    public static void LoadInto(BlipVisionModel vision, string path, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(vision);
        string file = ResolveFile(path);
        var weights = file.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? SafeTensors.Load(file) : TorchCheckpoint.LoadStateDict(file);
        try
        {
            LoadInto(vision, weights, file, log);
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    /// <summary>Loads <c>model.vision_init</c> of a recipe; a missing or unusable file is a recipe error naming the key.</summary>
    internal static void LoadForRecipe(BlipVisionModel vision, string path, Action<string> log)
    {
        try
        {
            LoadInto(vision, path, log);
        }
        catch (Exception e) when (e is FileNotFoundException or CheckpointFormatException or InvalidDataException)
        {
            throw new TrainingConfigException("model.vision_init", $"({path}) cannot initialise the vision encoder: {e.Message}");
        }
    }

    /// <summary>Loads a state dict (either layout) into <paramref name="vision"/>; the tensors are not disposed.</summary>
    /// <param name="vision">The encoder to fill.</param>
    /// <param name="weights">The checkpoint's entries.</param>
    /// <param name="source">Named in errors and the log line.</param>
    /// <param name="log">Receives one line on what was loaded.</param>
    public static void LoadInto(BlipVisionModel vision, IReadOnlyDictionary<string, Tensor> weights, string source, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(vision);
        ArgumentNullException.ThrowIfNull(weights);
        var (mapped, layout, ignored) = Map(weights, source);
        var created = new List<Tensor>();
        try
        {
            string interpolated = "";
            const string positions = "embeddings.position_embedding";
            if (mapped.TryGetValue(positions, out var pos) && pos.dim() == 3 && pos.shape[1] != vision.Config.NumPositions)
            {
                var resized = PositionEmbeddings.Interpolate(pos, vision.Config.GridSize, vision.Config.GridSize);
                created.Add(resized);
                mapped[positions] = resized;
                interpolated = $", position embeddings interpolated (bicubic) from {pos.shape[1] - 1} to {vision.Config.GridSize * vision.Config.GridSize} patches";
            }
            StateDictLoader.LoadStrict(vision, mapped, source);
            log?.Invoke($"vision encoder initialised from {source} ({layout} layout, {mapped.Count} entries{interpolated}"
                + (ignored.Count == 0 ? ")" : $"; {ignored.Count} entries outside the ViT not loaded: {string.Join(", ", ignored.Take(5))}{(ignored.Count > 5 ? ", ..." : "")})"));
        }
        finally
        {
            foreach (var t in created) t.Dispose();
        }
    }

    /// <summary>The entries renamed to <see cref="BlipVisionModel"/>'s own keys, the layout found, and the keys left out.</summary>
    private static (Dictionary<string, Tensor> Mapped, string Layout, List<string> Ignored) Map(IReadOnlyDictionary<string, Tensor> weights, string source)
    {
        var mapped = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var ignored = new List<string>();
        bool library = weights.Keys.Any(k => k.StartsWith(Prefix, StringComparison.Ordinal));
        foreach (var (key, value) in weights)
        {
            if (library)
            {
                if (key.StartsWith(Prefix, StringComparison.Ordinal)) mapped[key[Prefix.Length..]] = value;
                else ignored.Add(key);
                continue;
            }
            string bare = key.StartsWith("module.", StringComparison.Ordinal) ? key["module.".Length..] : key;
            if (bare.StartsWith("visual_encoder.", StringComparison.Ordinal)) bare = bare["visual_encoder.".Length..];
            else if (bare.StartsWith("visual_encoder_m.", StringComparison.Ordinal) || !TimmKey.IsMatch(bare))
            {
                ignored.Add(key);
                continue;
            }
            string renamed = OriginalBlipKeyMap.Rename("visual_encoder." + bare);
            if (!renamed.StartsWith(Prefix, StringComparison.Ordinal))
            {
                ignored.Add(key); // a classifier head, a distillation token
                continue;
            }
            if (!mapped.TryAdd(renamed[Prefix.Length..], value))
                throw new CheckpointFormatException($"{source}: two entries map to '{renamed}' (one of them is '{key}').");
        }
        if (mapped.Count == 0)
            throw new CheckpointFormatException($"{source}: no vision encoder weights found (looked for '{Prefix}*' keys or timm/DeiT ViT keys such as 'patch_embed.proj.weight'; "
                + $"the file has {string.Join(", ", weights.Keys.Take(5))}{(weights.Count > 5 ? ", ..." : "")}).");
        return (mapped, library ? "BlipSharp/Hugging Face" : "timm/DeiT", ignored);
    }
}
