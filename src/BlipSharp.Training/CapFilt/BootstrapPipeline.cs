using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Generation;
using BlipSharp.Training.Evaluation;
using BlipSharp.Training.Training;

namespace BlipSharp.Training.CapFilt;

/// <summary>One training stage for <see cref="IBootstrapStageRunner.Train"/>.</summary>
/// <param name="Stage">The stage's name (its folder's name).</param>
/// <param name="Task">"pretrain" (the <c>blip pretrain</c> verb: the ViT stage and both pretrainings), "caption" or "retrieval" (<c>blip finetune</c>).</param>
/// <param name="Config">The recipe file.</param>
/// <param name="Overrides"><c>key=value</c> overrides, in order.</param>
/// <param name="RunDirectory">The run folder; a run there without a final checkpoint is resumed.</param>
public sealed record BootstrapTrainRequest(string Stage, string Task, string Config, IReadOnlyList<string> Overrides, string RunDirectory);

/// <summary>What a training stage did.</summary>
/// <param name="Completed">Every step ran (false: stopped; the next run resumes).</param>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Optimizer steps of the whole run.</param>
public sealed record BootstrapTrainResult(bool Completed, long Step, long TotalSteps);

/// <summary>
/// Runs the stages of a <see cref="BootstrapPipeline"/>: the <c>blip</c> command implements it with its verbs
/// (<c>synth</c>, <c>pretrain</c>, <c>finetune</c>, <c>capfilt</c>) and <see cref="SyntheticEvaluation"/>; tests with fakes.
/// </summary>
public interface IBootstrapStageRunner
{
    /// <summary>Writes the synthetic world into <paramref name="directory"/> (deterministic: a rerun writes the same files).</summary>
    /// <param name="world">The world's settings.</param>
    /// <param name="directory">The folder.</param>
    void Synthesize(BootstrapWorld world, string directory);

    /// <summary>Trains (or resumes) one run.</summary>
    /// <param name="request">The stage.</param>
    BootstrapTrainResult Train(BootstrapTrainRequest request);

    /// <summary>Optimizer steps per epoch of a recipe (its data, batch size and gradient accumulation).</summary>
    /// <param name="config">The recipe file.</param>
    /// <param name="overrides">Overrides.</param>
    long StepsPerEpoch(string config, IReadOnlyList<string> overrides);

    /// <summary>Runs (or goes on with) CapFilt and merges; false when stopped before the end.</summary>
    /// <param name="options">Inputs, output folder and settings.</param>
    /// <param name="captioner">The captioner's run folder.</param>
    /// <param name="filter">The filter's run folder.</param>
    bool CapFilt(CapFiltOptions options, string captioner, string filter);

    /// <summary>Scores a pretraining run on the test split.</summary>
    /// <param name="pretrainRun">The run folder.</param>
    /// <param name="testFile">The world's <c>test.json</c>.</param>
    /// <param name="options">Generation and image limit.</param>
    SyntheticEvaluationResult Evaluate(string pretrainRun, string testFile, SyntheticEvaluationOptions options);
}

/// <summary>A stage failed, or the run folder holds a completed stage made with other settings.</summary>
public sealed class BootstrapException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The test-split scores of one pretraining run.</summary>
/// <param name="ImageToTextR1">Image-to-text ITC retrieval R@1.</param>
/// <param name="ImageToTextR5">Image-to-text R@5.</param>
/// <param name="TextToImageR1">Text-to-image R@1.</param>
/// <param name="CaptionAccuracy">Greedy (or beam) captions naming the right colour and shape.</param>
/// <param name="Images">Test images.</param>
/// <param name="Steps">Optimizer steps the run trained.</param>
public sealed record BootstrapScores(double ImageToTextR1, double ImageToTextR5, double TextToImageR1, double CaptionAccuracy, int Images, long Steps);

/// <summary>CapFilt's counts and its precision/recall on the planted noise (from <c>summary.json</c>).</summary>
/// <param name="WebTotal">Web texts scored.</param>
/// <param name="WebKept">Web texts kept.</param>
/// <param name="SyntheticTotal">Synthetic captions scored.</param>
/// <param name="SyntheticKept">Synthetic captions kept.</param>
/// <param name="Human">Human pairs passed through.</param>
/// <param name="NoisePrecision">Of the dropped web texts, the fraction planted as noise (null when the data has no labels).</param>
/// <param name="NoiseRecall">Of the planted noisy web texts, the fraction dropped.</param>
/// <param name="CleanKeptFraction">Of the clean web texts, the fraction kept.</param>
public sealed record BootstrapCapFiltCounts(long WebTotal, long WebKept, long SyntheticTotal, long SyntheticKept, long Human,
    double? NoisePrecision, double? NoiseRecall, double? CleanKeptFraction);

/// <summary>Raw-noisy versus bootstrapped pretraining.</summary>
/// <param name="Raw">The pretraining on the noisy web pairs plus the human pairs.</param>
/// <param name="CapFilt">The pretraining on the bootstrapped dataset.</param>
/// <param name="Counts">What CapFilt kept.</param>
public sealed record BootstrapComparison(BootstrapScores Raw, BootstrapScores CapFilt, BootstrapCapFiltCounts Counts);

/// <summary>What one <see cref="BootstrapPipeline.Run"/> did.</summary>
/// <param name="Completed">Every stage is complete.</param>
/// <param name="Ran">Stages run (or resumed) now.</param>
/// <param name="Skipped">Stages found complete and skipped.</param>
/// <param name="Comparison">The scores (when complete).</param>
/// <param name="RunDirectory">The run folder.</param>
public sealed record BootstrapResult(bool Completed, IReadOnlyList<string> Ran, IReadOnlyList<string> Skipped, BootstrapComparison? Comparison, string RunDirectory);

/// <summary>
/// BLIP's bootstrapping loop (paper section 3.3, table 1) on the synthetic world, one stage per subfolder of the run
/// folder: <c>world</c> (<c>blip synth</c>, unless the recipe names one), <c>vit</c> (the ViT stage), <c>pretrain-raw</c>
/// (the baseline: pretraining on the noisy web pairs plus the human pairs), <c>captioner</c> and <c>filter</c> (fine-tuned
/// from the baseline on the human pairs), <c>capfilt</c> (over the web pairs, the human pairs passed through),
/// <c>pretrain-capfilt</c> (from the ViT stage on the bootstrapped dataset) and <c>evaluation</c> (both pretrainings on
/// the test split), then <c>results.json</c> and <c>results.md</c>. A completed stage leaves
/// <see cref="StageMarker"/> in its folder with the settings it was made with, and is skipped when run again; an
/// interrupted one is resumed (training from its newest checkpoint, CapFilt from its committed chunks). A completed
/// stage whose settings differ from the recipe's is an error naming it (delete it and the stages after it to redo them).
/// </summary>
public sealed class BootstrapPipeline
{
    /// <summary>The file in a stage folder that says the stage is complete (with the settings it was made with).</summary>
    public const string StageMarker = "bootstrap-stage.json";

    /// <summary>The resolved recipe, in the run folder.</summary>
    public const string RecipeFile = "bootstrap.json";

    /// <summary>The comparison as JSON, in the run folder.</summary>
    public const string ResultsFile = "results.json";

    /// <summary>The comparison as a Markdown table, in the run folder.</summary>
    public const string ReportFile = "results.md";

    /// <summary>The stages in order (their folder names).</summary>
    public static IReadOnlyList<string> Stages { get; } = ["world", "vit", "pretrain-raw", "captioner", "filter", "capfilt", "pretrain-capfilt", "evaluation"];

    private readonly BootstrapRecipe _recipe;
    private readonly IBootstrapStageRunner _runner;
    private readonly Action<string> _log;
    private readonly string _dir;
    private readonly List<string> _ran = [];
    private readonly List<string> _skipped = [];

    /// <summary>Prepares a run.</summary>
    /// <param name="recipe">The recipe (validated).</param>
    /// <param name="runner">Runs the stages.</param>
    /// <param name="log">Receives one line per stage.</param>
    public BootstrapPipeline(BootstrapRecipe recipe, IBootstrapStageRunner runner, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(recipe);
        ArgumentNullException.ThrowIfNull(runner);
        recipe.Validate();
        _recipe = recipe;
        _runner = runner;
        _log = log ?? (_ => { });
        _dir = Path.GetFullPath(recipe.OutputDir);
    }

    /// <summary>The folder of stage <paramref name="stage"/>.</summary>
    /// <param name="stage">One of <see cref="Stages"/>.</param>
    public string StageDirectory(string stage) => Path.Combine(_dir, stage);

    /// <summary>The world folder in use (the recipe's, or the run's <c>world</c> stage).</summary>
    public string WorldDirectory => _recipe.World.Dir is { } d ? Path.GetFullPath(d) : StageDirectory("world");

    /// <summary>Runs every stage that is not complete, in order; stops (not completed) when a stage is interrupted.</summary>
    /// <exception cref="BootstrapException">A stage failed, or a completed stage was made with other settings.</exception>
    public BootstrapResult Run()
    {
        Directory.CreateDirectory(_dir);
        WriteAtomic(Path.Combine(_dir, RecipeFile), _recipe.ToJson().ToJsonString(Indented));
        var r = _recipe;
        string world = WorldDirectory;
        string tokenizer = Path.Combine(world, "tokenizer");
        string seed = "seed=" + r.Seed.ToString(CultureInfo.InvariantCulture);

        // (0) the world
        var worldKey = new JsonObject { ["world"] = r.ToJson()["world"]!.DeepClone() };
        if (r.World.Dir is null)
        {
            if (!Stage("world", worldKey, () =>
                {
                    _runner.Synthesize(r.World, world);
                    return (true, null);
                })) return Stopped();
        }
        else if (!File.Exists(Path.Combine(world, "pretrain.json")))
        {
            throw new BootstrapException($"world.dir names {world}, which has no pretrain.json: not a blip synth folder");
        }

        // (1) the ViT stage
        var vitKey = Key(worldKey, "vit", r.Seed);
        string vit = StageDirectory("vit");
        if (!TrainStage("vit", vitKey, new BootstrapTrainRequest("vit", "pretrain", r.Vit.Config,
                [seed, $"data.train_files={Files(Path.Combine(world, "classify.json"))}", .. r.Vit.Set], vit), out _)) return Stopped();

        // (2) the baseline: pretraining on the web pairs plus the human pairs
        string human = Path.Combine(world, "human_train.json");
        string[] pretrainCommon = [seed, $"model.tokenizer={Json(tokenizer)}", $"model.vision_init={Json(vit)}"];
        var rawKey = Key(vitKey, "pretrain", r.Seed);
        string raw = StageDirectory("pretrain-raw");
        if (!TrainStage("pretrain-raw", rawKey, new BootstrapTrainRequest("pretrain-raw", "pretrain", r.Pretrain.Config,
                [.. pretrainCommon, $"data.train_files={Files(Path.Combine(world, "pretrain.json"), human)}", .. r.Pretrain.Set], raw), out var rawTrained)) return Stopped();

        // (3), (4) captioner and filter, fine-tuned from the baseline on the human pairs
        string[] finetuneCommon = [seed, $"data.train_files={Files(human)}", $"model.tokenizer={Json(tokenizer)}", $"model.init={Json(raw)}"];
        var captionerKey = Key(rawKey, "captioner", r.Seed);
        string captioner = StageDirectory("captioner");
        if (!TrainStage("captioner", captionerKey, new BootstrapTrainRequest("captioner", "caption", r.Captioner.Config, [.. finetuneCommon, .. r.Captioner.Set], captioner), out _))
            return Stopped();
        var filterKey = Key(rawKey, "filter", r.Seed);
        string filter = StageDirectory("filter");
        if (!TrainStage("filter", filterKey, new BootstrapTrainRequest("filter", "retrieval", r.Filter.Config, [.. finetuneCommon, .. r.Filter.Set], filter), out _))
            return Stopped();

        // (5) CapFilt over the web pairs
        var capfiltKey = new JsonObject { ["captioner"] = captionerKey, ["filter"] = filterKey, ["capfilt"] = r.ToJson()["capfilt"]!.DeepClone(), ["seed"] = r.Seed };
        string capfilt = StageDirectory("capfilt");
        var options = new CapFiltOptions
        {
            Inputs = [Path.Combine(world, "pretrain.json")],
            Human = [human],
            OutputDirectory = capfilt,
            NumCaptions = r.CapFilt.NumCaptions,
            TopP = r.CapFilt.TopP,
            TopK = r.CapFilt.TopK,
            MinLength = r.CapFilt.MinLength,
            MaxLength = r.CapFilt.MaxLength,
            Threshold = r.CapFilt.Threshold,
            ItcThreshold = r.CapFilt.ItcThreshold,
            ChunkSize = r.CapFilt.ChunkSize,
            BatchSize = r.CapFilt.BatchSize,
            Seed = r.CapFilt.Seed ?? r.Seed,
        };
        if (!Stage("capfilt", capfiltKey, () => (_runner.CapFilt(options, captioner, filter), null))) return Stopped();

        // (6) the bootstrapped pretraining, from the ViT stage, with the baseline's recipe
        string dataset = Path.Combine(capfilt, CapFiltMerge.DatasetFile);
        string[] bootstrappedData = [.. pretrainCommon, $"data.train_files={Files(dataset)}"];
        long rawSteps = rawTrained!.TotalSteps;
        var bootKey = new JsonObject { ["capfilt"] = capfiltKey, ["vit"] = vitKey, ["pretrain"] = r.ToJson()["pretrain"]!.DeepClone(), ["schedule"] = r.ToJson()["schedule"]!.DeepClone(), ["raw_steps"] = rawSteps };
        string boot = StageDirectory("pretrain-capfilt");
        if (!TrainStage("pretrain-capfilt", bootKey, () =>
            {
                string[] schedule = [];
                if (r.Schedule == BootstrapSchedule.Steps)
                {
                    long perEpoch = _runner.StepsPerEpoch(r.Pretrain.Config, [.. bootstrappedData, .. r.Pretrain.Set]);
                    if (perEpoch < 1) throw new BootstrapException($"{dataset} gives no complete batch: CapFilt kept too little to pretrain on");
                    long epochs = (rawSteps + perEpoch - 1) / perEpoch;
                    schedule = [$"train.epochs={epochs}", $"train.max_steps={rawSteps}"];
                    _log($"pretrain-capfilt: {perEpoch} steps per epoch; {epochs} epoch(s) cut at the baseline's {rawSteps} steps (schedule: steps)");
                }
                return new BootstrapTrainRequest("pretrain-capfilt", "pretrain", r.Pretrain.Config, [.. bootstrappedData, .. r.Pretrain.Set, .. schedule], boot);
            }, out var bootTrained)) return Stopped();

        // (7) evaluation
        var evalOptions = new SyntheticEvaluationOptions
        {
            MaxImages = r.EvalImages,
            Generation = r.EvalBeams == 1 ? GenerationOptions.Greedy : GenerationOptions.BeamSearch with { NumBeams = r.EvalBeams },
        };
        var evalKey = new JsonObject { ["raw"] = rawKey, ["capfilt"] = bootKey, ["evaluation"] = r.ToJson()["evaluation"]!.DeepClone() };
        string test = Path.Combine(world, "test.json");
        if (!Stage("evaluation", evalKey, () =>
            {
                var result = new JsonObject
                {
                    ["raw"] = ScoresJson(_runner.Evaluate(raw, test, evalOptions), rawTrained.Step),
                    ["capfilt"] = ScoresJson(_runner.Evaluate(boot, test, evalOptions), bootTrained!.Step),
                };
                return (true, result);
            })) return Stopped();
        var scores = (JsonObject)ReadMarker(StageDirectory("evaluation"))!["result"]!;

        var comparison = new BootstrapComparison(ParseScores(scores["raw"]!), ParseScores(scores["capfilt"]!), ReadCounts(capfilt));
        WriteAtomic(Path.Combine(_dir, ResultsFile), ResultsJson(comparison).ToJsonString(Indented));
        WriteAtomic(Path.Combine(_dir, ReportFile), Report(comparison));
        _log($"results: {Path.Combine(_dir, ResultsFile)}, {Path.Combine(_dir, ReportFile)}");
        return new BootstrapResult(true, _ran, _skipped, comparison, _dir);
    }

    /// <summary>The comparison as written to <see cref="ResultsFile"/>.</summary>
    /// <param name="c">The comparison.</param>
    public static JsonObject ResultsJson(BootstrapComparison c)
    {
        ArgumentNullException.ThrowIfNull(c);
        JsonObject S(BootstrapScores s) => new()
        {
            ["image_to_text_r1"] = s.ImageToTextR1,
            ["image_to_text_r5"] = s.ImageToTextR5,
            ["text_to_image_r1"] = s.TextToImageR1,
            ["caption_accuracy"] = s.CaptionAccuracy,
            ["images"] = s.Images,
            ["steps"] = s.Steps,
        };
        var n = c.Counts;
        return new JsonObject
        {
            ["raw"] = S(c.Raw),
            ["capfilt"] = S(c.CapFilt),
            ["margin"] = new JsonObject
            {
                ["image_to_text_r1"] = c.CapFilt.ImageToTextR1 - c.Raw.ImageToTextR1,
                ["image_to_text_r5"] = c.CapFilt.ImageToTextR5 - c.Raw.ImageToTextR5,
                ["text_to_image_r1"] = c.CapFilt.TextToImageR1 - c.Raw.TextToImageR1,
                ["caption_accuracy"] = c.CapFilt.CaptionAccuracy - c.Raw.CaptionAccuracy,
            },
            ["capfilt_counts"] = new JsonObject
            {
                ["web"] = new JsonObject { ["total"] = n.WebTotal, ["kept"] = n.WebKept, ["dropped"] = n.WebTotal - n.WebKept },
                ["synthetic"] = new JsonObject { ["total"] = n.SyntheticTotal, ["kept"] = n.SyntheticKept, ["dropped"] = n.SyntheticTotal - n.SyntheticKept },
                ["human"] = n.Human,
                ["planted_noise"] = n.NoisePrecision is null ? null : new JsonObject
                {
                    ["precision"] = n.NoisePrecision,
                    ["recall"] = n.NoiseRecall,
                    ["clean_kept_fraction"] = n.CleanKeptFraction,
                },
            },
        };
    }

    /// <summary>The comparison as the Markdown written to <see cref="ReportFile"/>.</summary>
    /// <param name="c">The comparison.</param>
    public static string Report(BootstrapComparison c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var inv = CultureInfo.InvariantCulture;
        string P(double v) => (100 * v).ToString("F1", inv);
        string M(double v) => (v >= 0 ? "+" : "") + (100 * v).ToString("F1", inv);
        var s = new StringBuilder();
        s.AppendLine("# Bootstrapping (CapFilt) on the synthetic world").AppendLine();
        s.AppendLine(string.Create(inv, $"Test split: {c.Raw.Images} images. Retrieval is ITC R@1 (%), captions are greedy and right when they name the right colour and shape (%)."));
        s.AppendLine();
        s.AppendLine("| pretraining data | steps | image->text R@1 | text->image R@1 | caption accuracy |");
        s.AppendLine("|---|---:|---:|---:|---:|");
        s.AppendLine(string.Create(inv, $"| raw noisy web + human | {c.Raw.Steps} | {P(c.Raw.ImageToTextR1)} | {P(c.Raw.TextToImageR1)} | {P(c.Raw.CaptionAccuracy)} |"));
        s.AppendLine(string.Create(inv, $"| CapFilt (bootstrapped) | {c.CapFilt.Steps} | {P(c.CapFilt.ImageToTextR1)} | {P(c.CapFilt.TextToImageR1)} | {P(c.CapFilt.CaptionAccuracy)} |"));
        s.AppendLine(string.Create(inv, $"| margin | | {M(c.CapFilt.ImageToTextR1 - c.Raw.ImageToTextR1)} | {M(c.CapFilt.TextToImageR1 - c.Raw.TextToImageR1)} | {M(c.CapFilt.CaptionAccuracy - c.Raw.CaptionAccuracy)} |"));
        s.AppendLine();
        var n = c.Counts;
        s.AppendLine(string.Create(inv, $"CapFilt kept {n.WebKept} of {n.WebTotal} web texts and {n.SyntheticKept} of {n.SyntheticTotal} synthetic captions; {n.Human} human pairs passed through."));
        if (n.NoisePrecision is double p)
            s.AppendLine(string.Create(inv, $"On the planted noise the filter's drops have precision {P(p)} % and recall {P(n.NoiseRecall ?? 0)} %; it kept {P(n.CleanKeptFraction ?? 0)} % of the clean web texts."));
        return s.ToString();
    }

    /// <summary>
    /// Optimizer steps per epoch of a training recipe with overrides: its dataset's usable samples over the batch size
    /// (the last partial batch dropped), over the gradient accumulation, as the <see cref="Trainer{TBatch}"/> counts them.
    /// </summary>
    /// <param name="config">The recipe file.</param>
    /// <param name="overrides">Overrides.</param>
    public static long CountStepsPerEpoch(string config, IReadOnlyList<string> overrides)
    {
        var recipe = TrainingConfigLoader.Load(config, overrides);
        var dataset = TrainingData.LoadDataset(recipe.Data);
        long batches = dataset.Count / recipe.Data.BatchSize;
        return (batches + recipe.Train.GradAccumSteps - 1) / recipe.Train.GradAccumSteps;
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private BootstrapResult Stopped() => new(false, _ran, _skipped, null, _dir);

    private JsonObject Key(JsonObject upstream, string section, long seed) =>
        new() { ["upstream"] = upstream.DeepClone(), [section] = _recipe.ToJson()[section]!.DeepClone(), ["seed"] = seed };

    private static string Json(string path) => JsonValue.Create(path)!.ToJsonString();

    private static string Files(params string[] files) => new JsonArray(files.Select(f => (JsonNode)JsonValue.Create(f)).ToArray()).ToJsonString();

    /// <summary>Runs a stage unless its marker says it is complete with these settings.</summary>
    private bool Stage(string name, JsonObject settings, Func<(bool Completed, JsonObject? Result)> run)
    {
        string dir = StageDirectory(name);
        var marker = ReadMarker(dir);
        if (marker is not null)
        {
            if (!JsonNode.DeepEquals(marker["settings"], settings))
                throw new BootstrapException($"stage {name} in {dir} was completed with other settings ({FirstDifference(marker["settings"], settings, "")}); "
                    + $"delete {dir} and the stages after it ({string.Join(", ", Stages.SkipWhile(s => s != name).Skip(1))}) to redo them, or use another run folder");
            _log($"{name}: complete, skipped");
            _skipped.Add(name);
            return true;
        }
        _log(Directory.Exists(dir) ? $"{name}: resuming in {dir}" : $"{name}: starting in {dir}");
        _ran.Add(name);
        var (completed, result) = run();
        if (!completed)
        {
            _log($"{name}: stopped before the end; run the same command again to go on");
            return false;
        }
        Directory.CreateDirectory(dir);
        WriteAtomic(Path.Combine(dir, StageMarker), new JsonObject { ["stage"] = name, ["settings"] = settings.DeepClone(), ["result"] = result }.ToJsonString(Indented));
        _log($"{name}: complete");
        return true;
    }

    private bool TrainStage(string name, JsonObject settings, BootstrapTrainRequest request, out BootstrapTrainResult? trained) =>
        TrainStage(name, settings, () => request, out trained);

    private bool TrainStage(string name, JsonObject settings, Func<BootstrapTrainRequest> request, out BootstrapTrainResult? trained)
    {
        bool ok = Stage(name, settings, () =>
        {
            var t = _runner.Train(request());
            return (t.Completed, new JsonObject { ["step"] = t.Step, ["total_steps"] = t.TotalSteps });
        });
        trained = null;
        if (!ok) return false;
        var result = ReadMarker(StageDirectory(name))?["result"] as JsonObject;
        trained = new BootstrapTrainResult(true, result?["step"]?.GetValue<long>() ?? 0, result?["total_steps"]?.GetValue<long>() ?? 0);
        return true;
    }

    private static JsonObject? ReadMarker(string dir)
    {
        string path = Path.Combine(dir, StageMarker);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new BootstrapException($"{path} is not a JSON object; delete it to redo the stage");
        }
        catch (JsonException e)
        {
            throw new BootstrapException($"{path} is not valid JSON ({e.Message}); delete it to redo the stage", e);
        }
    }

    private static string FirstDifference(JsonNode? a, JsonNode? b, string key)
    {
        if (a is JsonObject oa && b is JsonObject ob)
        {
            foreach (string k in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)).Order(StringComparer.Ordinal))
            {
                if (JsonNode.DeepEquals(oa[k], ob[k])) continue;
                return FirstDifference(oa[k], ob[k], key.Length == 0 ? k : key + "." + k);
            }
            return key;
        }
        return $"{key}: {a?.ToJsonString() ?? "null"} -> {b?.ToJsonString() ?? "null"}";
    }

    private static JsonObject ScoresJson(SyntheticEvaluationResult s, long steps) => new()
    {
        ["image_to_text_r1"] = s.ImageToTextR1,
        ["image_to_text_r5"] = s.ImageToTextR5,
        ["text_to_image_r1"] = s.TextToImageR1,
        ["caption_accuracy"] = s.CaptionAccuracy,
        ["images"] = s.Images,
        ["steps"] = steps,
    };

    private static BootstrapScores ParseScores(JsonNode s) => new(
        s["image_to_text_r1"]!.GetValue<double>(), s["image_to_text_r5"]!.GetValue<double>(), s["text_to_image_r1"]!.GetValue<double>(),
        s["caption_accuracy"]!.GetValue<double>(), s["images"]!.GetValue<int>(), s["steps"]!.GetValue<long>());

    private static BootstrapCapFiltCounts ReadCounts(string capfiltDirectory)
    {
        JsonObject summary;
        try
        {
            summary = CapFiltMerge.ReadSummary(capfiltDirectory);
        }
        catch (CapFiltException e)
        {
            throw new BootstrapException(e.Message, e);
        }
        catch (JsonException e)
        {
            throw new BootstrapException($"{Path.Combine(capfiltDirectory, CapFiltMerge.SummaryFile)} is not valid JSON: {e.Message}", e);
        }
        long Get(string section, string key) => summary[section]?[key]?.GetValue<long>()
            ?? throw new BootstrapException($"{Path.Combine(capfiltDirectory, CapFiltMerge.SummaryFile)} has no {section}.{key}");
        var noise = summary["planted_noise"] as JsonObject;
        return new BootstrapCapFiltCounts(Get("web", "total"), Get("web", "kept"), Get("synthetic", "total"), Get("synthetic", "kept"), Get("human", "total"),
            noise?["precision"]?.GetValue<double>(), noise?["recall"]?.GetValue<double>(), noise?["clean_kept_fraction"]?.GetValue<double>());
    }

    private static void WriteAtomic(string path, string text) => AtomicFile.WriteText(path, text);
}
