using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.CapFilt;

/// <summary>Kept and dropped texts of one source.</summary>
/// <param name="Total">Texts scored (human: passed through).</param>
/// <param name="Kept">Texts kept.</param>
public sealed record CapFiltSourceCounts(long Total, long Kept)
{
    /// <summary>Texts dropped.</summary>
    public long Dropped => Total - Kept;

    /// <summary>Kept / total (0 when there are none).</summary>
    public double KeptFraction => Total == 0 ? 0 : Kept / (double)Total;
}

/// <summary>
/// How well the filter separated web texts labelled noisy (a boolean <c>noisy</c> field in the input record, as the
/// synthetic world writes) from clean ones. "Positive" means dropped.
/// </summary>
/// <param name="Noisy">Labelled noisy web texts.</param>
/// <param name="Clean">Labelled clean web texts.</param>
/// <param name="NoisyDropped">Noisy texts dropped.</param>
/// <param name="CleanKept">Clean texts kept.</param>
/// <param name="DropRateByKind">Fraction dropped per <c>noise_kind</c> (when the records name one; <c>none</c> for clean texts).</param>
public sealed record CapFiltNoiseReport(long Noisy, long Clean, long NoisyDropped, long CleanKept, IReadOnlyDictionary<string, double> DropRateByKind)
{
    /// <summary>Of the dropped texts, the fraction that were noisy.</summary>
    public double Precision => NoisyDropped + (Clean - CleanKept) == 0 ? 0 : NoisyDropped / (double)(NoisyDropped + Clean - CleanKept);

    /// <summary>Of the noisy texts, the fraction dropped.</summary>
    public double Recall => Noisy == 0 ? 0 : NoisyDropped / (double)Noisy;

    /// <summary>Of the clean texts, the fraction kept.</summary>
    public double CleanKeptFraction => Clean == 0 ? 0 : CleanKept / (double)Clean;
}

/// <summary>What <see cref="CapFiltMerge.Merge"/> wrote.</summary>
/// <param name="Records">Input records (every one accounted for exactly once).</param>
/// <param name="Images">Records whose image was read and scored.</param>
/// <param name="Unreadable">Records whose image could not be read.</param>
/// <param name="Malformed">Records that could not be parsed.</param>
/// <param name="Web">Web texts kept / scored.</param>
/// <param name="Synthetic">Synthetic captions kept / scored.</param>
/// <param name="Human">Human-annotated texts passed through.</param>
/// <param name="Noise">The planted-noise report, when the inputs label their texts.</param>
/// <param name="TrainFiles">The bootstrapped dataset: files to list in a pretraining recipe's <c>data.train_files</c>.</param>
/// <param name="OutputDirectory">Where the dataset and summary are.</param>
public sealed record CapFiltSummary(long Records, long Images, long Unreadable, long Malformed, CapFiltSourceCounts Web, CapFiltSourceCounts Synthetic,
    CapFiltSourceCounts Human, CapFiltNoiseReport? Noise, IReadOnlyList<string> TrainFiles, string OutputDirectory);

/// <summary>
/// <c>blip capfilt merge</c>: checks that the committed chunks of one or more CapFilt output folders (one per machine,
/// or one shared folder) cover every input record exactly once, and writes the bootstrapped dataset:
/// <list type="bullet">
/// <item><c>bootstrapped.jsonl</c>: BLIP's annotation format, one record per kept text, <c>{"image", "caption",
/// "image_id", "capfilt_source": "web"|"synthetic"|"human", "itm", "itc", ...}</c> (web texts keep their input
/// record's other fields); image paths relative to the output folder; for shard inputs it holds the human pairs
/// only and the images with their kept texts are in <c>shards/</c>;</item>
/// <item><c>scores.jsonl</c>: every input record once, with every text's ITM probability, ITC cosine and verdict;</item>
/// <item><c>issues.jsonl</c>: the unreadable and malformed records (<c>ordinal</c>, <c>source</c>, <c>location</c>,
/// <c>status</c>, <c>reason</c> and, when the record names one, <c>image</c>);</item>
/// <item><c>summary.json</c>: kept/dropped counts per source, score histograms and, when the web records carry a
/// <c>noisy</c> label, the filter's precision and recall on it. Written last: its presence means the merge finished.</item>
/// </list>
/// </summary>
public static class CapFiltMerge
{
    /// <summary>The bootstrapped annotation file.</summary>
    public const string DatasetFile = "bootstrapped.jsonl";

    /// <summary>Every record with its scores.</summary>
    public const string ScoresFile = "scores.jsonl";

    /// <summary>Unreadable and malformed records.</summary>
    public const string IssuesFile = "issues.jsonl";

    /// <summary>Counts, histograms and the noise report.</summary>
    public const string SummaryFile = "summary.json";

    /// <summary>For shard inputs: the folder of output shards.</summary>
    public const string ShardsDirectory = "shards";

    /// <summary>Bins of the score histograms.</summary>
    public const int HistogramBins = 20;

    /// <summary>Checks and merges.</summary>
    /// <param name="inputs">CapFilt output folders (the same settings in each).</param>
    /// <param name="outputDirectory">Where the dataset goes (may be one of <paramref name="inputs"/>).</param>
    /// <param name="log">Receives notes.</param>
    /// <exception cref="CapFiltException">A chunk is missing, damaged or from other settings; the message names it and the part to run again.</exception>
    public static CapFiltSummary Merge(IReadOnlyList<string> inputs, string outputDirectory, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputDirectory);
        if (inputs.Count == 0) throw new CapFiltException("merge: name at least one CapFilt output folder");
        log ??= _ => { };
        var settings = ReadSettings(inputs);
        var (records, chunkSize, partCounts) = ReadParts(inputs);
        long chunks = (records + chunkSize - 1) / chunkSize;
        var chunkFiles = new string[chunks];
        var missing = new List<long>();
        for (long k = 0; k < chunks; k++)
        {
            string? found = inputs.Select(d => CapFiltRunner.ChunkPath(d, k)).FirstOrDefault(File.Exists);
            if (found is null) missing.Add(k);
            else chunkFiles[k] = found;
        }
        if (missing.Count > 0)
        {
            string parts = string.Join(" or ", partCounts.Select(n => string.Join(", ", missing.Select(k => k % n).Distinct().Order().Select(i => $"--shard {i}/{n}"))));
            throw new CapFiltException($"merge: {missing.Count} of {chunks} chunks are not committed (chunk {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}); "
                + $"run blip capfilt again with {parts} (the same command and output folder: committed chunks are kept)");
        }
        bool shardInput = settings["inputs"]!.AsArray().Any(i => CapFiltInput.IsShard(i!.GetValue<string>()));
        string output = Path.GetFullPath(outputDirectory);
        Directory.CreateDirectory(output);
        // summary.json says the merge finished: a merge that starts again is not finished until it writes a new one.
        File.Delete(Path.Combine(output, SummaryFile));
        RemoveStaleTemporaries(output, log);

        var stats = new Stats();
        var trainFiles = new List<string> { Path.Combine(output, DatasetFile) };
        if (shardInput) Directory.CreateDirectory(Path.Combine(output, ShardsDirectory));
        using (var dataset = new StagedFile(Path.Combine(output, DatasetFile)))
        using (var scores = new StagedFile(Path.Combine(output, ScoresFile)))
        using (var issues = new StagedFile(Path.Combine(output, IssuesFile)))
        {
            for (long k = 0; k < chunks; k++)
            {
                long first = k * chunkSize, count = Math.Min(chunkSize, records - first);
                ReadChunk(chunkFiles[k], first, count, line =>
                {
                    scores.Writer.Write(line);
                    scores.Writer.Write('\n');
                    using var doc = JsonDocument.Parse(line);
                    var r = doc.RootElement;
                    string status = r.GetProperty("status").GetString()!;
                    if (status != "ok")
                    {
                        issues.Writer.Write(JsonSerializer.Serialize(new
                        {
                            ordinal = r.GetProperty("ordinal").GetInt64(),
                            source = r.GetProperty("source").GetString(),
                            location = r.GetProperty("location").GetString(),
                            status,
                            reason = r.TryGetProperty("reason", out var reason) ? reason.GetString() : null,
                            image = r.TryGetProperty("image", out var image) ? image.GetString() : null,
                        }, IssueJson));
                        issues.Writer.Write('\n');
                    }
                    stats.Add(r, status);
                    if (!shardInput && status == "ok") WriteKept(dataset.Writer, r, output);
                });
                if (shardInput)
                {
                    string tar = CapFiltRunner.ChunkPath(Path.GetDirectoryName(Path.GetDirectoryName(chunkFiles[k]))!, k, ".tar");
                    if (!File.Exists(tar)) throw new CapFiltException($"merge: {chunkFiles[k]} is committed but its images {tar} are missing");
                    string target = Path.Combine(output, ShardsDirectory, Path.GetFileName(tar));
                    if (Path.GetFullPath(tar) != target) File.Copy(tar, target, overwrite: true);
                    trainFiles.Add(target);
                }
            }
            foreach (var human in settings["human"]!.AsArray().Select(h => h!.GetValue<string>()))
            {
                var set = BlipAnnotations.Load(human, new AnnotationOptions { OnIssue = issue => log($"human: skipped {issue}") });
                foreach (var entry in set)
                {
                    foreach (string caption in entry.Captions)
                    {
                        var record = new JsonObject
                        {
                            ["image"] = Relative(output, entry.Image.Name),
                            ["caption"] = caption,
                            ["image_id"] = entry.ImageId,
                            ["capfilt_source"] = "human",
                        };
                        dataset.Writer.Write(record.ToJsonString());
                        dataset.Writer.Write('\n');
                        stats.Human++;
                    }
                }
            }
            issues.Commit();
            scores.Commit();
            dataset.Commit();
        }
        var summary = stats.Summary(records, trainFiles, output);
        AtomicFile.WriteText(Path.Combine(output, SummaryFile), stats.ToJson(summary, settings).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        log($"merged {chunks} chunks ({records} records) into {output}");
        return summary;
    }

    private static readonly JsonSerializerOptions IssueJson = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    /// <summary>
    /// Deletes the staged files a killed merge left in <paramref name="output"/> (<c>scores.jsonl.tmp-PID-GUID</c>, ...):
    /// one merge writes an output folder at a time, so they are all stale.
    /// </summary>
    private static void RemoveStaleTemporaries(string output, Action<string> log)
    {
        int removed = 0;
        foreach (string name in new[] { DatasetFile, ScoresFile, IssuesFile, SummaryFile })
        {
            foreach (string file in Directory.EnumerateFiles(output, name + ".tmp-*"))
            {
                File.Delete(file);
                removed++;
            }
        }
        if (removed > 0) log($"removed {removed} unfinished file(s) of an interrupted merge");
    }

    /// <summary>Reads a finished merge's summary back.</summary>
    /// <param name="outputDirectory">The merge's output folder.</param>
    public static JsonObject ReadSummary(string outputDirectory)
    {
        string path = Path.Combine(outputDirectory, SummaryFile);
        if (!File.Exists(path)) throw new CapFiltException($"{outputDirectory} has no {SummaryFile}: the merge has not finished there");
        return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CapFiltException($"{path} is not a JSON object");
    }

    private static JsonObject ReadSettings(IReadOnlyList<string> inputs)
    {
        JsonObject? first = null;
        string? firstDir = null;
        foreach (string dir in inputs)
        {
            string path = Path.Combine(dir, CapFiltRunner.SettingsFile);
            if (!File.Exists(path)) throw new CapFiltException($"merge: {dir} has no {CapFiltRunner.SettingsFile}: not a CapFilt output folder");
            JsonObject settings;
            try
            {
                settings = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CapFiltException($"merge: {path} is not a JSON object");
            }
            catch (JsonException e)
            {
                throw new CapFiltException($"merge: {path} is not valid JSON: {e.Message}", e);
            }
            if (first is null)
            {
                first = settings;
                firstDir = dir;
            }
            else if (!JsonNode.DeepEquals(first, settings))
            {
                var keys = first.Select(kv => kv.Key).Concat(settings.Select(kv => kv.Key)).Distinct().Where(k => !JsonNode.DeepEquals(first[k], settings[k]));
                throw new CapFiltException($"merge: {dir} and {firstDir} were made with different settings ({string.Join(", ", keys)}); their chunks cannot be merged");
            }
        }
        return first!;
    }

    private static (long Records, int ChunkSize, IReadOnlyList<int> PartCounts) ReadParts(IReadOnlyList<string> inputs)
    {
        long? records = null;
        int chunkSize = 0;
        var counts = new SortedSet<int>();
        foreach (string dir in inputs)
        {
            string parts = Path.Combine(dir, CapFiltRunner.PartsDirectory);
            if (!Directory.Exists(parts)) continue;
            foreach (string file in Directory.GetFiles(parts, "part-*.json").Order(StringComparer.Ordinal))
            {
                JsonObject marker;
                try
                {
                    marker = JsonNode.Parse(File.ReadAllText(file)) as JsonObject ?? throw new CapFiltException($"merge: {file} is not a JSON object");
                }
                catch (JsonException e)
                {
                    throw new CapFiltException($"merge: {file} is not valid JSON: {e.Message}", e);
                }
                long r = marker["records"]?.GetValue<long>() ?? throw new CapFiltException($"merge: {file} has no 'records'");
                int c = marker["chunk_size"]?.GetValue<int>() ?? throw new CapFiltException($"merge: {file} has no 'chunk_size'");
                if (records is long known && (known != r || chunkSize != c))
                    throw new CapFiltException($"merge: {file} counts {r} records in chunks of {c}, another part counted {known} in chunks of {chunkSize}: the inputs changed between runs");
                records = r;
                chunkSize = c;
                counts.Add(ShardSpec.Parse(marker["part"]!.GetValue<string>()).Count);
            }
        }
        if (records is null)
            throw new CapFiltException($"merge: no part has finished in {string.Join(", ", inputs)} (no {CapFiltRunner.PartsDirectory}/part-I-of-N.json); run blip capfilt to the end first");
        return (records.Value, chunkSize, counts.ToList());
    }

    private static void ReadChunk(string path, long first, long count, Action<string> visit)
    {
        long expected = first;
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (line.Length == 0) continue;
            long ordinal;
            try
            {
                using var doc = JsonDocument.Parse(line);
                ordinal = doc.RootElement.GetProperty("ordinal").GetInt64();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new CapFiltException($"merge: {path}: line {lineNumber} is not a CapFilt record ({e.Message}); delete the file and run its part again", e);
            }
            if (ordinal != expected)
                throw new CapFiltException($"merge: {path}: line {lineNumber} holds record {ordinal}, expected {expected}; delete the file and run its part again");
            visit(line);
            expected++;
        }
        if (expected != first + count)
            throw new CapFiltException($"merge: {path} holds records {first}..{expected - 1}, expected {first}..{first + count - 1}; delete the file and run its part again");
    }

    private static void WriteKept(TextWriter writer, JsonElement r, string output)
    {
        string image = Relative(output, r.GetProperty("image").GetString()!);
        string? imageId = r.TryGetProperty("image_id", out var id) ? id.GetString() : null;
        foreach (var (source, webExtras) in new[] { ("web", true), ("synthetic", false) })
        {
            foreach (var t in r.GetProperty(source).EnumerateArray())
            {
                if (!t.GetProperty("kept").GetBoolean()) continue;
                var record = new JsonObject
                {
                    ["image"] = image,
                    ["caption"] = t.GetProperty("text").GetString(),
                    ["image_id"] = imageId,
                    ["capfilt_source"] = source,
                    ["itm"] = t.GetProperty("itm").GetDouble(),
                    ["itc"] = t.GetProperty("itc").GetDouble(),
                };
                if (webExtras)
                    foreach (var p in r.GetProperty("extra").EnumerateObject())
                        if (!record.ContainsKey(p.Name)) record[p.Name] = JsonNode.Parse(p.Value.GetRawText());
                writer.Write(record.ToJsonString());
                writer.Write('\n');
            }
        }
    }

    private static string Relative(string output, string image) =>
        Path.IsPathRooted(image) ? Path.GetRelativePath(output, image).Replace('\\', '/') : image;

    /// <summary>A file written to a temporary name and renamed into place on <see cref="Commit"/>; dropped otherwise.</summary>
    private sealed class StagedFile : IDisposable
    {
        private readonly string _path;
        private readonly string _temp;
        private readonly FileStream _stream;
        private bool _committed;

        public StagedFile(string path)
        {
            _path = path;
            _temp = $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
            _stream = new FileStream(_temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
            Writer = new StreamWriter(_stream, new UTF8Encoding(false), 1 << 16) { NewLine = "\n" };
        }

        public StreamWriter Writer { get; }

        public void Commit()
        {
            Writer.Flush();
            _stream.Flush(flushToDisk: true);
            Writer.Dispose();
            File.Move(_temp, _path, overwrite: true);
            _committed = true;
        }

        public void Dispose()
        {
            if (_committed) return;
            Writer.Dispose();
            File.Delete(_temp);
        }
    }

    private sealed class Stats
    {
        private readonly long[][] _itm = NewHistograms();
        private readonly long[][] _itc = NewHistograms();
        private readonly Dictionary<string, (long Total, long Dropped)> _kinds = new(StringComparer.Ordinal);
        public long Images, Unreadable, Malformed, WebTotal, WebKept, SynTotal, SynKept, Human;
        public long Noisy, Clean, NoisyDropped, CleanKept;

        // Histograms: [web kept, web dropped, synthetic kept, synthetic dropped].
        private static long[][] NewHistograms() => [new long[HistogramBins], new long[HistogramBins], new long[HistogramBins], new long[HistogramBins]];

        public void Add(JsonElement r, string status)
        {
            if (status == "unreadable") Unreadable++;
            else if (status == "malformed") Malformed++;
            if (status != "ok") return;
            Images++;
            bool? noisy = null;
            string? kind = null;
            if (r.TryGetProperty("extra", out var extra))
            {
                if (extra.TryGetProperty("noisy", out var n) && n.ValueKind is JsonValueKind.True or JsonValueKind.False) noisy = n.GetBoolean();
                if (extra.TryGetProperty("noise_kind", out var k) && k.ValueKind == JsonValueKind.String) kind = k.GetString();
            }
            foreach (var t in r.GetProperty("web").EnumerateArray())
            {
                bool kept = t.GetProperty("kept").GetBoolean();
                WebTotal++;
                if (kept) WebKept++;
                Bin(0, kept, t);
                if (noisy is bool isNoisy)
                {
                    if (isNoisy)
                    {
                        Noisy++;
                        if (!kept) NoisyDropped++;
                    }
                    else
                    {
                        Clean++;
                        if (kept) CleanKept++;
                    }
                    string key = kind ?? (isNoisy ? "noisy" : "none");
                    var (total, dropped) = _kinds.GetValueOrDefault(key);
                    _kinds[key] = (total + 1, dropped + (kept ? 0 : 1));
                }
            }
            foreach (var t in r.GetProperty("synthetic").EnumerateArray())
            {
                bool kept = t.GetProperty("kept").GetBoolean();
                SynTotal++;
                if (kept) SynKept++;
                Bin(2, kept, t);
            }
        }

        private void Bin(int offset, bool kept, JsonElement t)
        {
            int row = offset + (kept ? 0 : 1);
            double itm = t.GetProperty("itm").GetDouble(), itc = t.GetProperty("itc").GetDouble();
            _itm[row][Math.Clamp((int)(itm * HistogramBins), 0, HistogramBins - 1)]++;
            _itc[row][Math.Clamp((int)((itc + 1) / 2 * HistogramBins), 0, HistogramBins - 1)]++;
        }

        public CapFiltSummary Summary(long records, IReadOnlyList<string> trainFiles, string output) => new(records, Images, Unreadable, Malformed,
            new CapFiltSourceCounts(WebTotal, WebKept), new CapFiltSourceCounts(SynTotal, SynKept), new CapFiltSourceCounts(Human, Human),
            Noisy + Clean > 0 ? new CapFiltNoiseReport(Noisy, Clean, NoisyDropped, CleanKept,
                _kinds.OrderBy(k => k.Key, StringComparer.Ordinal).ToDictionary(k => k.Key, k => k.Value.Dropped / (double)k.Value.Total)) : null,
            trainFiles, output);

        public JsonObject ToJson(CapFiltSummary s, JsonObject settings)
        {
            JsonObject Counts(CapFiltSourceCounts c) => new() { ["total"] = c.Total, ["kept"] = c.Kept, ["dropped"] = c.Dropped, ["kept_fraction"] = Math.Round(c.KeptFraction, 6) };
            JsonObject Histogram(long[][] h, double lo, double hi) => new()
            {
                ["edges"] = new JsonArray(Enumerable.Range(0, HistogramBins + 1).Select(i => (JsonNode)Math.Round(lo + (hi - lo) * i / HistogramBins, 6)).ToArray()),
                ["web_kept"] = new JsonArray(h[0].Select(v => (JsonNode)v).ToArray()),
                ["web_dropped"] = new JsonArray(h[1].Select(v => (JsonNode)v).ToArray()),
                ["synthetic_kept"] = new JsonArray(h[2].Select(v => (JsonNode)v).ToArray()),
                ["synthetic_dropped"] = new JsonArray(h[3].Select(v => (JsonNode)v).ToArray()),
            };
            var json = new JsonObject
            {
                ["records"] = s.Records,
                ["images"] = s.Images,
                ["unreadable"] = s.Unreadable,
                ["malformed"] = s.Malformed,
                ["web"] = Counts(s.Web),
                ["synthetic"] = Counts(s.Synthetic),
                ["human"] = Counts(s.Human),
                ["itm_histogram"] = Histogram(_itm, 0, 1),
                ["itc_histogram"] = Histogram(_itc, -1, 1),
                ["train_files"] = new JsonArray(s.TrainFiles.Select(f => (JsonNode)f).ToArray()),
                ["settings"] = settings.DeepClone(),
            };
            if (s.Noise is { } n)
            {
                json["planted_noise"] = new JsonObject
                {
                    ["noisy"] = n.Noisy,
                    ["clean"] = n.Clean,
                    ["noisy_dropped"] = n.NoisyDropped,
                    ["clean_kept"] = n.CleanKept,
                    ["precision"] = Math.Round(n.Precision, 6),
                    ["recall"] = Math.Round(n.Recall, 6),
                    ["clean_kept_fraction"] = Math.Round(n.CleanKeptFraction, 6),
                    ["drop_rate_by_kind"] = new JsonObject(n.DropRateByKind.Select(k => KeyValuePair.Create(k.Key, (JsonNode?)Math.Round(k.Value, 6)))),
                };
            }
            return json;
        }
    }

    /// <summary>One line per source and the noise report, for a terminal.</summary>
    /// <param name="s">The summary.</param>
    public static IEnumerable<string> Describe(CapFiltSummary s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var c = CultureInfo.InvariantCulture;
        yield return string.Create(c, $"{s.Records} records: {s.Images} images scored, {s.Unreadable} unreadable, {s.Malformed} malformed");
        yield return string.Create(c, $"web texts: kept {s.Web.Kept} of {s.Web.Total} ({s.Web.KeptFraction:P1}); synthetic captions: kept {s.Synthetic.Kept} of {s.Synthetic.Total} ({s.Synthetic.KeptFraction:P1}); human: {s.Human.Total} passed through");
        if (s.Noise is { } n)
            yield return string.Create(c, $"planted noise: {n.NoisyDropped} of {n.Noisy} noisy web texts dropped (recall {n.Recall:P1}, precision {n.Precision:P1}); {n.CleanKept} of {n.Clean} clean ones kept ({n.CleanKeptFraction:P1})");
        yield return $"dataset: {string.Join(", ", s.TrainFiles)}";
    }
}
