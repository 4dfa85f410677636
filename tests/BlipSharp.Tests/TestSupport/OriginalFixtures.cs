using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using BlipSharp.Training.Pretraining;

namespace BlipSharp.Tests.TestSupport;

/// <summary>
/// The blip-original fixture folders: their own config schema (<c>blip-original-fixture-config/1</c>: BLIP's
/// constructor arguments, the ViT settings and the <c>med_config</c> BERT JSON) read into BlipSharp configs.
/// </summary>
public static class OriginalFixtures
{
    public const string PretrainModel = "models.blip_pretrain.BLIP_Pretrain";
    public const string RetrievalModel = "models.blip_retrieval.BLIP_Retrieval";

    /// <summary>Every case folder whose config.json describes <paramref name="model"/>; fails when there is none.</summary>
    public static IReadOnlyList<string> CaseDirs(string model)
    {
        var dirs = Directory.GetDirectories(Fixtures.BlipOriginalDir)
            .Where(d => File.Exists(Path.Combine(d, "config.json")) && File.Exists(Path.Combine(d, "cases.json")))
            .Where(d =>
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(d, "config.json")));
                return doc.RootElement.TryGetProperty("model", out var m) && m.GetString() == model;
            })
            .OrderBy(d => d, StringComparer.Ordinal)
            .ToList();
        if (dirs.Count == 0) throw new InvalidOperationException($"no case folder of {Fixtures.BlipOriginalDir} describes {model}");
        return dirs;
    }

    /// <summary>xunit member data: one row per pretraining case folder name.</summary>
    public static IEnumerable<object[]> PretrainCaseNames() => CaseDirs(PretrainModel).Select(d => new object[] { Path.GetFileName(d) });

    /// <summary>xunit member data: one row per retrieval case folder name.</summary>
    public static IEnumerable<object[]> RetrievalCaseNames() => CaseDirs(RetrievalModel).Select(d => new object[] { Path.GetFileName(d) });

    /// <summary>The checkpoint a folder's model was built from (<c>weights.file</c>, relative to the folder); it must exist.</summary>
    public static string WeightsFile(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        string file = doc.RootElement.GetProperty("weights").GetProperty("file").GetString()
            ?? throw new InvalidDataException($"{dir}/config.json: weights.file is not a string");
        string path = Path.GetFullPath(Path.Combine(dir, file));
        if (!File.Exists(path)) throw new FileNotFoundException($"{dir}/config.json: weights.file '{file}' does not exist ({path})", path);
        return path;
    }

    public static string CaseDir(string name) => Path.Combine(Fixtures.BlipOriginalDir, name);

    /// <summary>The pretraining model configuration of a fixture folder.</summary>
    public static BlipPretrainingConfig PretrainingConfig(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var root = doc.RootElement;
        var vision = root.GetProperty("vision");
        var constructor = root.GetProperty("constructor");
        var visionConfig = BlipPretrainingConfig.VisionTransformer(
            imageSize: vision.GetProperty("img_size").GetInt32(),
            patchSize: vision.GetProperty("patch_size").GetInt32(),
            width: vision.GetProperty("embed_dim").GetInt32(),
            depth: vision.GetProperty("depth").GetInt32(),
            heads: vision.GetProperty("num_heads").GetInt32(),
            mlpRatio: vision.GetProperty("mlp_ratio").GetDouble(),
            layerNormEps: LayerNormEps(vision.GetProperty("norm_layer").GetString()!));
        if (vision.TryGetProperty("mlp_hidden", out var hidden) && hidden.GetInt32() != visionConfig.IntermediateSize)
            throw new InvalidDataException($"{dir}/config.json: mlp_hidden {hidden.GetInt32()} != int(embed_dim * mlp_ratio) {visionConfig.IntermediateSize}");
        if (!vision.GetProperty("act_layer").GetString()!.Contains("GELU", StringComparison.Ordinal))
            throw new InvalidDataException($"{dir}/config.json: unexpected ViT activation {vision.GetProperty("act_layer")}");
        return new BlipPretrainingConfig
        {
            VisionConfig = visionConfig,
            TextConfig = BlipPretrainingConfig.TextConfigFromMedConfig(root.GetProperty("med_config").GetRawText(), $"{dir}/config.json med_config"),
            EmbedDim = constructor.GetProperty("embed_dim").GetInt32(),
            QueueSize = constructor.GetProperty("queue_size").GetInt32(),
            Momentum = constructor.GetProperty("momentum").GetDouble(),
        }.Normalized();
    }

    /// <summary>
    /// The Hugging Face style configuration of a fine-tuning fixture folder (caption, VQA, NLVR, retrieval): the ViT
    /// settings of <c>vision</c> and the BERT of <c>med_config</c>; <c>image_text_hidden_size</c> from the constructor's
    /// <c>embed_dim</c> when it has one.
    /// </summary>
    public static BlipSharp.Configuration.BlipConfig TaskConfig(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var root = doc.RootElement;
        var vision = root.GetProperty("vision");
        var config = new BlipSharp.Configuration.BlipConfig
        {
            VisionConfig = BlipPretrainingConfig.VisionTransformer(
                imageSize: vision.GetProperty("img_size").GetInt32(),
                patchSize: vision.GetProperty("patch_size").GetInt32(),
                width: vision.GetProperty("embed_dim").GetInt32(),
                depth: vision.GetProperty("depth").GetInt32(),
                heads: vision.GetProperty("num_heads").GetInt32(),
                mlpRatio: vision.GetProperty("mlp_ratio").GetDouble(),
                layerNormEps: LayerNormEps(vision.GetProperty("norm_layer").GetString()!)),
            TextConfig = BlipPretrainingConfig.TextConfigFromMedConfig(root.GetProperty("med_config").GetRawText(), $"{dir}/config.json med_config"),
        };
        if (root.GetProperty("constructor").TryGetProperty("embed_dim", out var embed))
            config = config with { ImageTextHiddenSize = embed.GetInt32() };
        return config;
    }

    /// <summary>The eps of a <c>"nn.LayerNorm(eps=1e-6)"</c> description.</summary>
    public static double LayerNormEps(string normLayer)
    {
        var m = Regex.Match(normLayer, @"eps\s*=\s*([0-9.eE+-]+)");
        if (!m.Success) throw new InvalidDataException($"cannot read the LayerNorm eps from '{normLayer}'");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>The optimizer settings of a fixture folder (<c>training</c>).</summary>
    public static BlipSharp.Training.Optimization.AdamWOptions AdamW(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        var t = doc.RootElement.GetProperty("training");
        // Absent betas / eps: torch.optim.AdamW's defaults (retrieval's config.json names only lr and weight_decay).
        var betas = t.TryGetProperty("betas", out var b) ? b.EnumerateArray().Select(x => x.GetDouble()).ToArray() : [0.9, 0.999];
        if (t.TryGetProperty("amsgrad", out var ams) && ams.GetBoolean()) throw new InvalidDataException($"{dir}: amsgrad is not used by BLIP");
        return new BlipSharp.Training.Optimization.AdamWOptions
        {
            LearningRate = t.GetProperty("lr").GetDouble(),
            WeightDecay = t.GetProperty("weight_decay").GetDouble(),
            Beta1 = betas[0],
            Beta2 = betas[1],
            Eps = t.TryGetProperty("eps", out var eps) ? eps.GetDouble() : 1e-8,
        };
    }
}
