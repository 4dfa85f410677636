using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Training.Training;

namespace BlipSharp.Training.CapFilt;

/// <summary>How the bootstrapped pretraining is scheduled against the raw one.</summary>
public enum BootstrapSchedule
{
    /// <summary>The same number of optimizer steps as the raw pretraining (equal compute; the data is the only difference).</summary>
    Steps,

    /// <summary>The same number of epochs (BLIP's choice; a larger bootstrapped dataset then gets more steps).</summary>
    Epochs,
}

/// <summary>The <c>world</c> section: the synthetic world to make (<c>blip synth</c>) or an existing one.</summary>
public sealed record BootstrapWorld
{
    /// <summary>An existing <c>blip synth</c> folder; null: the pipeline makes one in the run folder.</summary>
    public string? Dir { get; init; }

    /// <summary>The world's seed.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Image side in pixels.</summary>
    public int Size { get; init; } = 32;

    /// <summary>Fraction of the pretraining captions that are wrong.</summary>
    public double Noise { get; init; } = 0.5;

    /// <summary>Images of the noisy pretraining split (null: <c>blip synth</c>'s default).</summary>
    public int? PretrainImages { get; init; }

    /// <summary>Images of the clean human-annotated split (null: the default).</summary>
    public int? HumanImages { get; init; }

    /// <summary>Images of the test split (null: the default).</summary>
    public int? TestImages { get; init; }

    /// <summary>Single-object images the ViT stage trains on (null: the default).</summary>
    public int? ClassifyImages { get; init; }
}

/// <summary>A training stage: a recipe file and extra <c>key=value</c> overrides.</summary>
public sealed record BootstrapStageRecipe
{
    /// <summary>The recipe file (relative paths are resolved against the bootstrap recipe's folder).</summary>
    public string Config { get; init; } = "";

    /// <summary>Overrides applied after the pipeline's own (data files, tokenizer, init, seed).</summary>
    public IReadOnlyList<string> Set { get; init; } = [];
}

/// <summary>The <c>capfilt</c> section: <see cref="CapFiltOptions"/> for the synthetic world.</summary>
public sealed record BootstrapCapFilt
{
    /// <summary>Synthetic captions per image.</summary>
    public int NumCaptions { get; init; } = 1;

    /// <summary>Nucleus sampling mass.</summary>
    public double TopP { get; init; } = 0.9;

    /// <summary>Sampling keeps at most this many tokens (0: no limit).</summary>
    public int TopK { get; init; } = 50;

    /// <summary>Minimum generated length counting <c>[DEC]</c> and the prompt.</summary>
    public int MinLength { get; init; } = 5;

    /// <summary>Maximum generated length counting <c>[DEC]</c> and the prompt.</summary>
    public int MaxLength { get; init; } = 20;

    /// <summary>Keep a text when its ITM match probability is at least this.</summary>
    public double Threshold { get; init; } = 0.5;

    /// <summary>Also require an ITC cosine of at least this (null: ITM only).</summary>
    public double? ItcThreshold { get; init; }

    /// <summary>Input records per committed chunk.</summary>
    public int ChunkSize { get; init; } = 1000;

    /// <summary>Images per model batch.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Seed of the sampling (null: the recipe's <see cref="BootstrapRecipe.Seed"/>).</summary>
    public long? Seed { get; init; }
}

/// <summary>
/// The whole of BLIP's bootstrapping as one recipe (<c>blip bootstrap</c>, <see cref="BootstrapPipeline"/>): a noisy
/// synthetic world, the ViT stage, a pretraining on the noisy pairs plus the human pairs (the baseline), a captioner
/// and a filter fine-tuned from it on the human pairs, CapFilt over the noisy pairs, a second pretraining from the ViT
/// stage on the bootstrapped dataset, and both pretrainings evaluated on the test split.
/// </summary>
public sealed record BootstrapRecipe
{
    /// <summary>The training seed: every stage recipe's <c>seed</c> (and CapFilt's sampling unless <c>capfilt.seed</c> is set).</summary>
    public long Seed { get; init; } = 1;

    /// <summary>The synthetic world.</summary>
    public BootstrapWorld World { get; init; } = new();

    /// <summary>The ViT stage (<c>configs/vit-tiny.json</c> on the world's <c>classify.json</c>).</summary>
    public BootstrapStageRecipe Vit { get; init; } = new() { Config = "vit-tiny.json" };

    /// <summary>Both pretrainings (<c>configs/pretrain-tiny.json</c>).</summary>
    public BootstrapStageRecipe Pretrain { get; init; } = new() { Config = "pretrain-tiny.json" };

    /// <summary>How the bootstrapped pretraining is scheduled against the raw one.</summary>
    public BootstrapSchedule Schedule { get; init; } = BootstrapSchedule.Steps;

    /// <summary>The captioner's fine-tuning (<c>configs/caption-tiny.json</c>).</summary>
    public BootstrapStageRecipe Captioner { get; init; } = new() { Config = "caption-tiny.json" };

    /// <summary>The filter's fine-tuning (<c>configs/retrieval-tiny.json</c>).</summary>
    public BootstrapStageRecipe Filter { get; init; } = new() { Config = "retrieval-tiny.json" };

    /// <summary>CapFilt's settings.</summary>
    public BootstrapCapFilt CapFilt { get; init; } = new();

    /// <summary>Beams of the evaluation captions (1: greedy).</summary>
    public int EvalBeams { get; init; } = 1;

    /// <summary>Evaluate only the first N test images (null: all).</summary>
    public int? EvalImages { get; init; }

    /// <summary>The run folder.</summary>
    public string OutputDir { get; init; } = "runs/bootstrap-synthetic";

    /// <summary>
    /// Reads a recipe file, applies <c>key=value</c> overrides (dotted keys as in the training recipes), checks every
    /// key and value and resolves the stage recipe paths against the file's folder.
    /// </summary>
    /// <param name="path">The recipe file (JSON; comments allowed).</param>
    /// <param name="overrides"><c>key=value</c> strings; a value that is not JSON is a string.</param>
    /// <exception cref="TrainingConfigException">A key is unknown or a value is wrong; the message names the file and the key.</exception>
    public static BootstrapRecipe Load(string path, IEnumerable<string>? overrides = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"bootstrap recipe not found: {path}", path);
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new TrainingConfigException($"{path}: not valid JSON: {e.Message}", e);
        }
        if (node is not JsonObject root) throw new TrainingConfigException($"{path}: a bootstrap recipe must be a JSON object");
        try
        {
            return FromJson(root, Path.GetDirectoryName(Path.GetFullPath(path))!, overrides);
        }
        catch (TrainingConfigException e) when (e.Key.Length > 0)
        {
            throw new TrainingConfigException(e.Key, $"in {path}: {e.Message[(e.Key.Length + 1)..]}");
        }
    }

    /// <summary>Builds a recipe from JSON (see <see cref="Load"/>).</summary>
    /// <param name="json">The recipe.</param>
    /// <param name="baseDirectory">Folder the stage recipe paths are relative to.</param>
    /// <param name="overrides"><c>key=value</c> strings.</param>
    /// <exception cref="TrainingConfigException">A key is unknown or a value is wrong; the message names the key.</exception>
    public static BootstrapRecipe FromJson(JsonObject json, string baseDirectory, IEnumerable<string>? overrides = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        var root = (JsonObject)json.DeepClone();
        foreach (string o in overrides ?? []) TrainingConfigLoader.Apply(root, o);
        var r = new Reader(root, "");
        var defaults = new BootstrapRecipe();
        var recipe = new BootstrapRecipe
        {
            Seed = r.Long("seed") ?? defaults.Seed,
            World = ReadWorld(r.Section("world")),
            Vit = ReadStage(r.Section("vit"), defaults.Vit, baseDirectory),
            Pretrain = ReadStage(r.Section("pretrain"), defaults.Pretrain, baseDirectory),
            Schedule = r.String("schedule") switch
            {
                null or "steps" => BootstrapSchedule.Steps,
                "epochs" => BootstrapSchedule.Epochs,
                var other => throw new TrainingConfigException("schedule", $"must be \"steps\" or \"epochs\" (got \"{other}\")"),
            },
            Captioner = ReadStage(r.Section("captioner"), defaults.Captioner, baseDirectory),
            Filter = ReadStage(r.Section("filter"), defaults.Filter, baseDirectory),
            CapFilt = ReadCapFilt(r.Section("capfilt")),
            EvalBeams = r.Section("evaluation").Int("beams") ?? defaults.EvalBeams,
            EvalImages = r.Section("evaluation").Int("images"),
            OutputDir = r.Section("output").String("dir") ?? defaults.OutputDir,
        };
        r.Section("evaluation").CheckKeys("beams", "images");
        r.Section("output").CheckKeys("dir");
        r.CheckKeys("seed", "world", "vit", "pretrain", "schedule", "captioner", "filter", "capfilt", "evaluation", "output");
        recipe.Validate();
        return recipe;
    }

    /// <summary>Checks the values; the message names the key.</summary>
    /// <exception cref="TrainingConfigException">A value is out of range.</exception>
    public void Validate()
    {
        if (World.Dir is null)
        {
            if (World.Size < 16) throw new TrainingConfigException("world.size", $"must be at least 16 pixels (got {World.Size})");
            if (!(World.Noise >= 0 && World.Noise <= 1)) throw new TrainingConfigException("world.noise", $"must lie within 0..1 (got {Format(World.Noise)})");
            foreach (var (key, value) in new[] { ("world.pretrain_images", World.PretrainImages), ("world.human_images", World.HumanImages), ("world.test_images", World.TestImages), ("world.classify_images", World.ClassifyImages) })
                if (value is < 1) throw new TrainingConfigException(key, $"must be at least 1 (got {value})");
        }
        foreach (var (key, stage) in new[] { ("vit", Vit), ("pretrain", Pretrain), ("captioner", Captioner), ("filter", Filter) })
        {
            if (string.IsNullOrWhiteSpace(stage.Config)) throw new TrainingConfigException(key + ".config", "must name a training recipe file");
            if (!File.Exists(stage.Config)) throw new TrainingConfigException(key + ".config", $"names {stage.Config}, which does not exist");
            foreach (string s in stage.Set)
                if (s.IndexOf('=', StringComparison.Ordinal) <= 0) throw new TrainingConfigException(key + ".set", $"holds '{s}', which is not key=value");
        }
        var c = CapFilt;
        if (c.NumCaptions < 0) throw new TrainingConfigException("capfilt.num_captions", $"must be at least 0 (got {c.NumCaptions})");
        if (!(c.TopP > 0 && c.TopP <= 1)) throw new TrainingConfigException("capfilt.top_p", $"must lie in (0, 1] (got {Format(c.TopP)})");
        if (c.TopK < 0) throw new TrainingConfigException("capfilt.top_k", $"must be at least 0 (got {c.TopK})");
        if (c.MinLength < 0) throw new TrainingConfigException("capfilt.min_length", $"must be at least 0 (got {c.MinLength})");
        if (c.MaxLength < 2 || c.MaxLength < c.MinLength) throw new TrainingConfigException("capfilt.max_length", $"must be at least 2 and at least capfilt.min_length (got {c.MaxLength}, min_length {c.MinLength})");
        if (!(c.Threshold >= 0 && c.Threshold <= 1)) throw new TrainingConfigException("capfilt.threshold", $"is an ITM probability within 0..1 (got {Format(c.Threshold)})");
        if (c.ItcThreshold is double itc && !(itc >= -1 && itc <= 1)) throw new TrainingConfigException("capfilt.itc_threshold", $"is a cosine within -1..1 (got {Format(itc)})");
        if (c.ChunkSize < 1) throw new TrainingConfigException("capfilt.chunk_size", $"must be at least 1 (got {c.ChunkSize})");
        if (c.BatchSize < 1) throw new TrainingConfigException("capfilt.batch_size", $"must be at least 1 (got {c.BatchSize})");
        if (EvalBeams < 1) throw new TrainingConfigException("evaluation.beams", $"must be at least 1 (got {EvalBeams})");
        if (EvalImages is < 1) throw new TrainingConfigException("evaluation.images", $"must be at least 1 (got {EvalImages})");
        if (string.IsNullOrWhiteSpace(OutputDir)) throw new TrainingConfigException("output.dir", "must name the run folder");
    }

    /// <summary>The recipe as JSON (stage recipe paths absolute), as saved in the run folder's <c>bootstrap.json</c>.</summary>
    public JsonObject ToJson() => new()
    {
        ["seed"] = Seed,
        ["world"] = new JsonObject
        {
            ["dir"] = World.Dir is null ? null : Path.GetFullPath(World.Dir),
            ["seed"] = World.Seed,
            ["size"] = World.Size,
            ["noise"] = World.Noise,
            ["pretrain_images"] = World.PretrainImages,
            ["human_images"] = World.HumanImages,
            ["test_images"] = World.TestImages,
            ["classify_images"] = World.ClassifyImages,
        },
        ["vit"] = StageJson(Vit),
        ["pretrain"] = StageJson(Pretrain),
        ["schedule"] = Schedule == BootstrapSchedule.Steps ? "steps" : "epochs",
        ["captioner"] = StageJson(Captioner),
        ["filter"] = StageJson(Filter),
        ["capfilt"] = new JsonObject
        {
            ["num_captions"] = CapFilt.NumCaptions,
            ["top_p"] = CapFilt.TopP,
            ["top_k"] = CapFilt.TopK,
            ["min_length"] = CapFilt.MinLength,
            ["max_length"] = CapFilt.MaxLength,
            ["threshold"] = CapFilt.Threshold,
            ["itc_threshold"] = CapFilt.ItcThreshold,
            ["chunk_size"] = CapFilt.ChunkSize,
            ["batch_size"] = CapFilt.BatchSize,
            ["seed"] = CapFilt.Seed,
        },
        ["evaluation"] = new JsonObject { ["beams"] = EvalBeams, ["images"] = EvalImages },
        ["output"] = new JsonObject { ["dir"] = Path.GetFullPath(OutputDir) },
    };

    private static JsonObject StageJson(BootstrapStageRecipe s) => new()
    {
        ["config"] = Path.GetFullPath(s.Config),
        ["set"] = new JsonArray(s.Set.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
    };

    private static string Format(double v) => v.ToString(CultureInfo.InvariantCulture);

    private static BootstrapWorld ReadWorld(Reader r)
    {
        var d = new BootstrapWorld();
        var world = new BootstrapWorld
        {
            Dir = r.String("dir"),
            Seed = r.Int("seed") ?? d.Seed,
            Size = r.Int("size") ?? d.Size,
            Noise = r.Double("noise") ?? d.Noise,
            PretrainImages = r.Int("pretrain_images"),
            HumanImages = r.Int("human_images"),
            TestImages = r.Int("test_images"),
            ClassifyImages = r.Int("classify_images"),
        };
        r.CheckKeys("dir", "seed", "size", "noise", "pretrain_images", "human_images", "test_images", "classify_images");
        return world;
    }

    private static BootstrapStageRecipe ReadStage(Reader r, BootstrapStageRecipe defaults, string baseDirectory)
    {
        string config = r.String("config") ?? defaults.Config;
        var stage = new BootstrapStageRecipe
        {
            Config = Path.GetFullPath(config, baseDirectory),
            Set = r.Strings("set") ?? [],
        };
        r.CheckKeys("config", "set");
        return stage;
    }

    private static BootstrapCapFilt ReadCapFilt(Reader r)
    {
        var d = new BootstrapCapFilt();
        var c = new BootstrapCapFilt
        {
            NumCaptions = r.Int("num_captions") ?? d.NumCaptions,
            TopP = r.Double("top_p") ?? d.TopP,
            TopK = r.Int("top_k") ?? d.TopK,
            MinLength = r.Int("min_length") ?? d.MinLength,
            MaxLength = r.Int("max_length") ?? d.MaxLength,
            Threshold = r.Double("threshold") ?? d.Threshold,
            ItcThreshold = r.Double("itc_threshold"),
            ChunkSize = r.Int("chunk_size") ?? d.ChunkSize,
            BatchSize = r.Int("batch_size") ?? d.BatchSize,
            Seed = r.Long("seed"),
        };
        r.CheckKeys("num_captions", "top_p", "top_k", "min_length", "max_length", "threshold", "itc_threshold", "chunk_size", "batch_size", "seed");
        return c;
    }

    /// <summary>Typed reads of one JSON section; errors name the dotted key.</summary>
    private readonly struct Reader(JsonObject? node, string prefix)
    {
        public Reader Section(string key)
        {
            var child = node?[key];
            if (child is null) return new Reader(null, prefix + key + ".");
            if (child is not JsonObject o) throw new TrainingConfigException(prefix + key, $"must be an object (got {child.ToJsonString()})");
            return new Reader(o, prefix + key + ".");
        }

        public void CheckKeys(params string[] known)
        {
            if (node is null) return;
            foreach (var (name, _) in node)
                if (!known.Contains(name, StringComparer.Ordinal))
                    throw new TrainingConfigException(prefix + name, $"is not a known key (known in {(prefix.Length == 0 ? "the top level" : prefix.TrimEnd('.'))}: {string.Join(", ", known)})");
        }

        public string? String(string key)
        {
            var v = node?[key];
            if (v is null) return null;
            if (v is JsonValue value && value.TryGetValue(out string? s)) return s;
            throw new TrainingConfigException(prefix + key, $"must be a string (got {v.ToJsonString()})");
        }

        public IReadOnlyList<string>? Strings(string key)
        {
            var v = node?[key];
            if (v is null) return null;
            if (v is not JsonArray array) throw new TrainingConfigException(prefix + key, $"must be a list of strings (got {v.ToJsonString()})");
            var list = new List<string>();
            foreach (var item in array)
            {
                if (item is JsonValue value && value.TryGetValue(out string? s)) list.Add(s);
                else throw new TrainingConfigException(prefix + key, $"must be a list of strings (got {v.ToJsonString()})");
            }
            return list;
        }

        public double? Double(string key)
        {
            var v = node?[key];
            if (v is null) return null;
            if (v is JsonValue value && value.GetValueKind() == JsonValueKind.Number) return value.GetValue<double>();
            throw new TrainingConfigException(prefix + key, $"must be a number (got {v.ToJsonString()})");
        }

        public long? Long(string key)
        {
            double? d = Double(key);
            if (d is null) return null;
            if (d != Math.Floor(d.Value) || Math.Abs(d.Value) > 9e15) throw new TrainingConfigException(prefix + key, $"must be a whole number (got {Format(d.Value)})");
            return (long)d.Value;
        }

        public int? Int(string key)
        {
            long? l = Long(key);
            if (l is null) return null;
            if (l is < int.MinValue or > int.MaxValue) throw new TrainingConfigException(prefix + key, $"is out of range (got {l})");
            return (int)l.Value;
        }
    }
}
