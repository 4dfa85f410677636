using BlipSharp.Checkpoints.Hub;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace BlipSharp.Checkpoints;

/// <summary>Options for loading a Hugging Face BLIP checkpoint folder.</summary>
public sealed record BlipLoadOptions
{
    /// <summary>
    /// Floating-point dtype of the loaded model. Null (the default) loads float32 whatever the file stores;
    /// <see cref="ScalarType.BFloat16"/> or <see cref="ScalarType.Float16"/> keep or convert to that dtype.
    /// </summary>
    public ScalarType? DType { get; init; }

    /// <summary>Device to place the model on (default CPU).</summary>
    public Device? Device { get; init; }

    /// <summary>
    /// Image size to run the vision encoder at, when it differs from the checkpoint's <c>image_size</c>: the
    /// position embeddings are interpolated to the new patch grid (a logged step) and the config updated.
    /// </summary>
    public int? ImageSize { get; init; }

    /// <summary>Receives one line per notable loading step (tied weights filled, position embeddings resized).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// How a Hugging Face repo id given instead of a folder is downloaded and cached (endpoint, cache folder, token,
    /// revision, offline mode, progress); null reads the environment as huggingface_hub does. See <see cref="HubModel"/>.
    /// </summary>
    public HubOptions? Hub { get; init; }
}

/// <summary>
/// Loads Hugging Face BLIP checkpoint folders (<c>config.json</c> plus <c>model.safetensors</c> or
/// <c>pytorch_model.bin</c>) into the task models, strictly. Where a folder is expected, a Hub repo id such as
/// <c>Salesforce/blip-image-captioning-base</c> works too: it is downloaded into the huggingface_hub cache
/// (<see cref="HubModel"/>, <see cref="BlipLoadOptions.Hub"/>).
/// </summary>
public static class BlipCheckpoint
{
    /// <summary>The key of the decoder's output projection, tied to the word embeddings in real checkpoints.</summary>
    public const string DecoderWeightSuffix = "cls.predictions.decoder.weight";
    private const string DecoderBiasSuffix = "cls.predictions.decoder.bias";
    private const string BiasSuffix = "cls.predictions.bias";
    private const string WordEmbeddingsSuffix = "bert.embeddings.word_embeddings.weight";

    /// <summary>Loads a captioning model.</summary>
    public static BlipForConditionalGeneration LoadForConditionalGeneration(string pathOrRepoId, BlipLoadOptions? options = null) =>
        Load(pathOrRepoId, c => new BlipForConditionalGeneration(c), nameof(BlipForConditionalGeneration), options);

    /// <summary>Loads an ITM/ITC retrieval model.</summary>
    public static BlipForImageTextRetrieval LoadForImageTextRetrieval(string pathOrRepoId, BlipLoadOptions? options = null) =>
        Load(pathOrRepoId, c => new BlipForImageTextRetrieval(c), nameof(BlipForImageTextRetrieval), options);

    /// <summary>Loads a VQA model.</summary>
    public static BlipForQuestionAnswering LoadForQuestionAnswering(string pathOrRepoId, BlipLoadOptions? options = null) =>
        Load(pathOrRepoId, c => new BlipForQuestionAnswering(c), nameof(BlipForQuestionAnswering), options);

    /// <summary>Loads the CLIP-style contrastive model.</summary>
    public static BlipModel LoadModel(string pathOrRepoId, BlipLoadOptions? options = null) =>
        Load(pathOrRepoId, c => new BlipModel(c), nameof(BlipModel), options);

    /// <summary>The weights file of a checkpoint folder: model.safetensors, else pytorch_model.bin.</summary>
    public static string FindWeights(string directory)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"checkpoint folder not found: {directory}");
        foreach (string name in new[] { "model.safetensors", "pytorch_model.bin" })
        {
            string path = Path.Combine(directory, name);
            if (File.Exists(path)) return path;
        }
        if (Directory.GetFiles(directory, "model-*-of-*.safetensors").Length > 0 || File.Exists(Path.Combine(directory, "model.safetensors.index.json")))
            return Path.Combine(directory, "model.safetensors.index.json");
        throw new FileNotFoundException($"no weights in {directory}: expected model.safetensors or pytorch_model.bin.");
    }

    /// <summary>Reads every tensor of a checkpoint folder's weights (safetensors, sharded safetensors or torch.save).</summary>
    /// <param name="pathOrRepoId">A checkpoint folder, or a Hub repo id whose weights are downloaded into the cache.</param>
    /// <param name="hub">Hub settings for a repo id; null reads the environment.</param>
    public static Dictionary<string, Tensor> ReadWeights(string pathOrRepoId, HubOptions? hub = null) =>
        ReadWeightsFile(FindWeights(HubModel.ResolveForLoading(pathOrRepoId, new HubFileSet { IncludeWeights = true }, hub)));

    private static Dictionary<string, Tensor> ReadWeightsFile(string path)
    {
        if (path.EndsWith(".index.json", StringComparison.Ordinal)) return ReadShardedSafeTensors(path);
        if (path.EndsWith(".safetensors", StringComparison.Ordinal)) return SafeTensors.Load(path);
        return TorchCheckpoint.LoadStateDict(path);
    }

    /// <summary>
    /// Builds a model with <paramref name="factory"/> from the folder's config and loads its weights strictly; a Hub
    /// repo id is first resolved to its cache snapshot (<see cref="HubFileSet.Model"/>).
    /// </summary>
    public static T Load<T>(string pathOrRepoId, Func<BlipConfig, T> factory, string architecture, BlipLoadOptions? options = null)
        where T : nn.Module, IBlipTaskModel
    {
        options ??= new BlipLoadOptions();
        string directory = HubModel.ResolveForLoading(pathOrRepoId, HubFileSet.Model, options.Hub);
        var config = BlipConfig.FromPretrained(directory);
        CheckArchitecture(config, architecture, directory);
        int checkpointImageSize = config.VisionConfig.ImageSize;
        if (options.ImageSize is { } size && size != checkpointImageSize)
            config = config with { VisionConfig = config.VisionConfig with { ImageSize = size } };

        string source = FindWeights(directory);
        var weights = ReadWeightsFile(source);
        try
        {
            ResolveTiedWeights(weights, source, options.Log);
            if (config.VisionConfig.ImageSize != checkpointImageSize)
                ResizePositionEmbedding(weights, config.VisionConfig, source, options.Log);

            T model;
            using (no_grad())
            {
                model = factory(config);
            }
            try
            {
                StateDictLoader.LoadStrict(model, weights, source);
                if (options.DType is { } dtype && dtype != ScalarType.Float32) model.to(dtype);
                if (options.Device is { } device) model.to(device);
                model.eval();
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
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    private static void CheckArchitecture(BlipConfig config, string architecture, string directory)
    {
        if (config.Architectures is not { Count: > 0 } archs || archs.Contains(architecture)) return;
        throw new CheckpointFormatException(
            $"{Path.Combine(directory, "config.json")} describes a {string.Join("/", archs)} checkpoint, not a {architecture}: load it with the matching task model.");
    }

    /// <summary>
    /// The explicit tie map: a missing decoder projection is filled from the word embeddings (the values are
    /// the same tensor in transformers); a saved <c>decoder.bias</c> must equal <c>cls.predictions.bias</c> and
    /// is dropped, because here the bias lives only under <c>cls.predictions.bias</c>.
    /// </summary>
    internal static void ResolveTiedWeights(Dictionary<string, Tensor> weights, string source, Action<string>? log)
    {
        foreach (string key in weights.Keys.Where(k => k.EndsWith(WordEmbeddingsSuffix, StringComparison.Ordinal)).ToList())
        {
            string prefix = key[..^WordEmbeddingsSuffix.Length];
            string decoderKey = prefix + DecoderWeightSuffix;
            bool hasHead = weights.Keys.Any(k => k.StartsWith(prefix + "cls.", StringComparison.Ordinal));
            if (hasHead && !weights.ContainsKey(decoderKey))
            {
                weights[decoderKey] = weights[key].clone();
                log?.Invoke($"{source}: '{decoderKey}' not stored; tied to '{key}'.");
            }
        }
        foreach (string key in weights.Keys.Where(k => k.EndsWith(DecoderBiasSuffix, StringComparison.Ordinal)).ToList())
        {
            string biasKey = key[..^DecoderBiasSuffix.Length] + BiasSuffix;
            if (weights.TryGetValue(biasKey, out var bias))
            {
                if (!bias.shape.SequenceEqual(weights[key].shape) || !bias.allclose(weights[key], 0, 0))
                    throw new CheckpointFormatException($"{source}: '{key}' and '{biasKey}' must be the same tied tensor but differ.");
            }
            else
            {
                weights[biasKey] = weights[key];
                weights.Remove(key);
                log?.Invoke($"{source}: '{key}' stored as '{biasKey}'.");
                continue;
            }
            weights[key].Dispose();
            weights.Remove(key);
        }
    }

    private static void ResizePositionEmbedding(Dictionary<string, Tensor> weights, BlipVisionConfig vision, string source, Action<string>? log)
    {
        foreach (string key in weights.Keys.Where(k => k.EndsWith("vision_model.embeddings.position_embedding", StringComparison.Ordinal)).ToList())
        {
            var old = weights[key];
            var resized = PositionEmbeddings.Interpolate(old, vision.GridSize, vision.GridSize);
            log?.Invoke($"{source}: '{key}' interpolated from [{string.Join(", ", old.shape)}] to [{string.Join(", ", resized.shape)}] for {vision.ImageSize} px images.");
            old.Dispose();
            weights[key] = resized;
        }
    }

    private static Dictionary<string, Tensor> ReadShardedSafeTensors(string indexPath)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(indexPath));
        if (!doc.RootElement.TryGetProperty("weight_map", out var map))
            throw new CheckpointFormatException($"{indexPath}: no weight_map.");
        string dir = Path.GetDirectoryName(indexPath)!;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (string shard in map.EnumerateObject().Select(p => p.Value.GetString()!).Distinct())
        {
            string full = Path.GetFullPath(Path.Combine(dir, shard));
            if (!full.StartsWith(Path.GetFullPath(dir), StringComparison.Ordinal))
                throw new CheckpointFormatException($"{indexPath}: shard '{shard}' lies outside the checkpoint folder.");
            foreach (var (k, v) in SafeTensors.Load(full))
            {
                if (!result.TryAdd(k, v))
                    throw new CheckpointFormatException($"{full}: key '{k}' appears in more than one shard.");
            }
        }
        return result;
    }
}
