using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Training.Training;

namespace BlipSharp.Training.Finetuning;

/// <summary>Writes what an evaluation produces: result files and <c>metrics.json</c>, atomically (a temporary file, then a rename).</summary>
public static class EvaluationOutput
{
    /// <summary>The scores file in an evaluation folder.</summary>
    public const string MetricsFile = "metrics.json";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Writes <paramref name="json"/> to <paramref name="path"/> atomically; the folder is created when missing.</summary>
    /// <param name="path">The file.</param>
    /// <param name="json">The content.</param>
    /// <param name="indented">Indent (small files) or not (large result files).</param>
    public static void WriteJson(string path, JsonNode json, bool indented = false)
    {
        ArgumentNullException.ThrowIfNull(json);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string tmp = full + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented }))
                json.WriteTo(writer);
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>
    /// Writes <c>metrics.json</c> (task, split, weights, the scores, the result file) into
    /// <see cref="EvaluationRequest.OutputDirectory"/> and returns the report.
    /// </summary>
    /// <param name="task">The task's name.</param>
    /// <param name="request">The evaluation.</param>
    /// <param name="metrics">The scores.</param>
    /// <param name="primaryMetric">The score the task is compared by (a key of <paramref name="metrics"/>).</param>
    /// <param name="resultsFile">The result file that was scored, if any.</param>
    /// <param name="weightsFile">The weights file evaluated (null: the recipe's starting weights).</param>
    public static EvaluationReport Finish(string task, EvaluationRequest request, IReadOnlyDictionary<string, double> metrics, string primaryMetric,
        string? resultsFile, string? weightsFile)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(metrics);
        if (!metrics.ContainsKey(primaryMetric)) throw new ArgumentException($"the metrics lack the primary metric '{primaryMetric}'", nameof(primaryMetric));
        var scores = new JsonObject();
        foreach (var (name, value) in metrics) scores[name] = double.IsFinite(value) ? JsonValue.Create(value) : JsonValue.Create(value.ToString(CultureInfo.InvariantCulture));
        string path = Path.Combine(request.OutputDirectory, MetricsFile);
        WriteJson(path, new JsonObject
        {
            ["task"] = task,
            ["split"] = request.Split,
            ["weights"] = weightsFile is null ? null : Path.GetFullPath(weightsFile),
            ["primary_metric"] = primaryMetric,
            ["metrics"] = scores,
            ["results"] = resultsFile is null ? null : Path.GetFullPath(resultsFile),
        }, indented: true);
        return new EvaluationReport(task, request.Split, metrics, primaryMetric, resultsFile, path, weightsFile);
    }

    /// <summary>
    /// The split's settings in the recipe's <c>evaluation</c> section: <c>evaluation.splits.SPLIT</c>, an object the task
    /// reads (annotation files and the like).
    /// </summary>
    /// <param name="config">The recipe.</param>
    /// <param name="split">The split's name.</param>
    /// <exception cref="TrainingConfigException">The recipe has no such split; the message lists the ones it has.</exception>
    public static JsonObject Split(TrainingConfig config, string split)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Evaluation["splits"] is not JsonObject splits)
            throw new TrainingConfigException("evaluation.splits", "must be an object naming each split's files, e.g. {\"test\": {...}}");
        if (splits[split] is JsonObject section) return section;
        if (splits[split] is not null) throw new TrainingConfigException($"evaluation.splits.{split}", "must be an object");
        throw new TrainingConfigException("evaluation.splits", $"has no split '{split}' (it has: {string.Join(", ", splits.Select(s => s.Key))})");
    }

    /// <summary>A required string of a section (a file name), with the dotted key in the error.</summary>
    /// <param name="section">The section.</param>
    /// <param name="key">The key within it.</param>
    /// <param name="prefix">The section's dotted key, e.g. <c>evaluation.splits.test</c>.</param>
    public static string RequiredString(JsonObject section, string key, string prefix) =>
        ModelSection.Read(section, key, (string?)null, prefix) is { Length: > 0 } value
            ? value
            : throw new TrainingConfigException($"{prefix}.{key}", "is required");

    /// <summary>An optional value of a section, with the dotted key in a type error.</summary>
    /// <typeparam name="T">The value's type.</typeparam>
    /// <param name="section">The section.</param>
    /// <param name="key">The key within it.</param>
    /// <param name="fallback">The value when absent.</param>
    /// <param name="prefix">The section's dotted key.</param>
    public static T Read<T>(JsonObject section, string key, T fallback, string prefix) => ModelSection.Read(section, key, fallback, prefix);
}
