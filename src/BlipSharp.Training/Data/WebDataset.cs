using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace BlipSharp.Training.Data;

/// <summary>How <see cref="WebDataset"/> reads shards.</summary>
public sealed record WebDatasetOptions
{
    /// <summary>Throw on the first malformed sample (or truncated shard) instead of skipping it.</summary>
    public bool Strict { get; init; }

    /// <summary>Called for every skipped sample.</summary>
    public Action<DataIssue>? OnIssue { get; init; }

    /// <summary>Member extensions (lower case, without the dot) that hold the image; the first present wins.</summary>
    public IReadOnlyList<string> ImageExtensions { get; init; } = ["jpg", "jpeg", "png", "webp"];

    /// <summary>Member extensions holding the caption as UTF-8 text; tried before <c>json</c>.</summary>
    public IReadOnlyList<string> TextExtensions { get; init; } = ["txt"];

    /// <summary>The field of a <c>.json</c> member holding the caption (a string or a list of strings).</summary>
    public string CaptionField { get; init; } = "caption";

    /// <summary>The field of a <c>.json</c> member holding the image id; the sample key is used when it is absent.</summary>
    public string ImageIdField { get; init; } = "image_id";

    /// <summary>Non-image members larger than this are not read (their sample is kept if it has what it needs).</summary>
    public int MaxMetadataBytes { get; init; } = 16 << 20;
}

/// <summary>One WebDataset sample: the members sharing a key, by extension.</summary>
/// <param name="Key">The key: the member path up to the first dot of its file name.</param>
/// <param name="Fields">Member data by lower-cased extension (<c>"jpg"</c>, <c>"txt"</c>, <c>"json"</c>, <c>"seg.png"</c>).</param>
/// <param name="Source">The shard.</param>
/// <param name="Index">The sample's position in the shard.</param>
public sealed record WebDatasetSample(string Key, IReadOnlyDictionary<string, byte[]> Fields, string Source, int Index);

/// <summary>
/// WebDataset <c>.tar</c> shards: samples are runs of consecutive members with the same key, the member path up to
/// the first dot of its file name (<c>"a/000123.jpg"</c> and <c>"a/000123.txt"</c> form sample <c>"a/000123"</c>,
/// extensions <c>"jpg"</c> and <c>"txt"</c>), exactly as webdataset's <c>base_plus_ext</c> and <c>group_by_keys</c>
/// do. Shards are read in place with <see cref="TarStreamReader"/>, never unpacked.
/// </summary>
public static partial class WebDataset
{
    [GeneratedRegex(@"^((?:.*/|)[^.]+)[.]([^/]*)$", RegexOptions.CultureInvariant)]
    private static partial Regex KeyPattern();

    /// <summary>webdataset's <c>base_plus_ext</c>: splits a member path into key and extension, or (null, null) when it has no extension.</summary>
    /// <param name="path">The member path.</param>
    public static (string? Key, string? Extension) SplitKey(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var m = KeyPattern().Match(path);
        return m.Success ? (m.Groups[1].Value, m.Groups[2].Value) : (null, null);
    }

    /// <summary>
    /// Streams the samples of one shard (every member read into memory, one sample at a time). Only regular files
    /// count; top-level <c>__name__</c> metadata members and members without an extension are ignored, as webdataset does.
    /// A key repeated with the same extension within one sample is an error.
    /// </summary>
    /// <param name="tar">The shard, from its start; not disposed.</param>
    /// <param name="sourceName">How errors name the shard.</param>
    public static IEnumerable<WebDatasetSample> ReadSamples(Stream tar, string sourceName = "shard")
    {
        ArgumentNullException.ThrowIfNull(tar);
        using var reader = new TarStreamReader(tar, sourceName, leaveOpen: true);
        string? key = null;
        Dictionary<string, byte[]>? fields = null;
        int index = 0;
        while (reader.ReadNext() is { } entry)
        {
            if (!IsSampleMember(entry, out string? k, out string? ext)) continue;
            if (key != k)
            {
                if (fields is { Count: > 0 }) yield return new WebDatasetSample(key!, fields, sourceName, index++);
                key = k;
                fields = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            }
            if (fields!.ContainsKey(ext!))
                throw new DataFormatException(new DataIssue(sourceName, $"member '{entry.Name}'", $"duplicate extension '{ext}' for key '{key}'"));
            fields[ext!] = reader.ReadData();
        }
        if (fields is { Count: > 0 }) yield return new WebDatasetSample(key!, fields, sourceName, index);
    }

    /// <summary>
    /// Indexes shards into an image-text dataset without unpacking them: caption members (<c>.txt</c>, or the
    /// caption field of <c>.json</c>) are read, image members are only located and are read in place when
    /// needed. A sample without an image or a caption, with an unreadable <c>.json</c>, or with a repeated
    /// extension is skipped and logged with the shard and key; a truncated shard keeps the samples before the
    /// damage and logs the rest (unless <see cref="WebDatasetOptions.Strict"/>).
    /// </summary>
    /// <param name="shardPaths">The <c>.tar</c> files, in order.</param>
    /// <param name="options">What to read; defaults when null.</param>
    public static ImageTextDataset Load(IEnumerable<string> shardPaths, WebDatasetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(shardPaths);
        options ??= new WebDatasetOptions();
        var shards = shardPaths.ToList();
        if (shards.Count == 0) throw new ArgumentException("no shards given", nameof(shardPaths));
        var log = new DataIssueLog(options.Strict, options.OnIssue);
        var indexer = new ImageIndexer();
        var entries = new List<ImageTextEntry>();
        foreach (string shard in shards) IndexShard(shard, options, log, indexer, entries);
        return new ImageTextDataset(string.Join(", ", shards), entries, log);
    }

    private static bool IsSampleMember(TarEntryInfo entry, out string? key, out string? ext)
    {
        key = ext = null;
        if (entry.Kind != TarEntryKind.File) return false;
        if (!entry.Name.Contains('/') && entry.Name.StartsWith("__", StringComparison.Ordinal) && entry.Name.EndsWith("__", StringComparison.Ordinal)) return false;
        (key, ext) = SplitKey(entry.Name);
        if (key == null) return false;
        ext = ext!.ToLowerInvariant();
        return true;
    }

    private sealed class PendingSample(string key, int index)
    {
        public string Key { get; } = key;
        public int Index { get; } = index;
        public Dictionary<string, (long Offset, long Size, string Member)> Images { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, byte[]> Meta { get; } = new(StringComparer.Ordinal);
        public HashSet<string> Seen { get; } = new(StringComparer.Ordinal);
        public string? Error { get; set; }
    }

    private static void IndexShard(string shard, WebDatasetOptions options, DataIssueLog log, ImageIndexer indexer, List<ImageTextEntry> entries)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(shard, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(new DataIssue(shard, "file", $"cannot be opened: {e.Message}"), e);
        }
        var imageExts = new HashSet<string>(options.ImageExtensions.Select(e => e.ToLowerInvariant()), StringComparer.Ordinal);
        using var reader = new TarStreamReader(stream, shard);
        PendingSample? current = null;
        int sampleIndex = 0;
        try
        {
            while (reader.ReadNext() is { } entry)
            {
                if (!IsSampleMember(entry, out string? key, out string? ext)) continue;
                if (current == null || current.Key != key)
                {
                    if (current != null) Complete(current, shard, options, log, indexer, entries);
                    current = new PendingSample(key!, sampleIndex++);
                }
                if (!current.Seen.Add(ext!))
                {
                    current.Error ??= $"duplicate extension '{ext}' (member '{entry.Name}')";
                    continue;
                }
                if (imageExts.Contains(ext!))
                    current.Images[ext!] = (entry.DataOffset, entry.Size, entry.Name);
                else if (entry.Size <= options.MaxMetadataBytes)
                    current.Meta[ext!] = reader.ReadData();
            }
        }
        catch (DataFormatException e) when (!log.Strict)
        {
            // A damaged shard: keep what was complete before the damage; the sample being read is lost.
            string lost = current != null ? $"; sample '{current.Key}' and the rest of the shard are skipped" : "";
            log.Report(new DataIssue(shard, e.Issue.Location, e.Issue.Reason + lost), e);
            return;
        }
        if (current != null) Complete(current, shard, options, log, indexer, entries);
    }

    private static void Complete(PendingSample s, string shard, WebDatasetOptions options, DataIssueLog log, ImageIndexer indexer, List<ImageTextEntry> entries)
    {
        string location = $"sample '{s.Key}' (#{s.Index})";
        if (s.Error != null)
        {
            log.Report(new DataIssue(shard, location, s.Error));
            return;
        }
        string? imageExt = options.ImageExtensions.Select(e => e.ToLowerInvariant()).FirstOrDefault(s.Images.ContainsKey);
        if (imageExt == null)
        {
            log.Report(new DataIssue(shard, location, $"no image member (looked for {string.Join(", ", options.ImageExtensions.Select(e => "." + e))}; has {Members(s)})"));
            return;
        }
        if (!TryReadText(s.Key, s.Meta, options, out var captions, out string? imageId, out var extra, out string? problem, out var inner))
        {
            log.Report(new DataIssue(shard, location, problem!), inner);
            return;
        }
        if (captions == null)
        {
            log.Report(new DataIssue(shard, location, $"{NoCaption(options)}; has {Members(s)})"));
            return;
        }
        var (offset, size, member) = s.Images[imageExt];
        imageId ??= s.Key;
        entries.Add(new ImageTextEntry(ImageSource.FromFileRange(shard, member, offset, size), captions, imageId,
            indexer.IndexOf(imageId), extra, shard, location));
    }

    /// <summary>
    /// Reads a sample's text members: the <c>.json</c> member (caption field, image id, every other field) and the text
    /// members (<see cref="WebDatasetOptions.TextExtensions"/>, which win over the JSON caption). False with the problem
    /// when a member is malformed; true with null captions when the sample has none (<see cref="NoCaption"/>).
    /// </summary>
    internal static bool TryReadText(string key, IReadOnlyDictionary<string, byte[]> members, WebDatasetOptions options, out IReadOnlyList<string>? captions,
        out string? imageId, out Dictionary<string, JsonElement> extra, out string? problem, out Exception? inner)
    {
        captions = null;
        imageId = null;
        extra = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        problem = null;
        inner = null;
        if (members.TryGetValue("json", out var json))
        {
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(json);
            }
            catch (JsonException e)
            {
                (problem, inner) = ($"invalid JSON in '{key}.json': {e.Message}", e);
                return false;
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                {
                    problem = $"'{key}.json' must hold a JSON object, got a {AnnotationReader.Kind(doc.RootElement)}";
                    return false;
                }
                foreach (var p in doc.RootElement.EnumerateObject())
                {
                    if (p.NameEquals(options.CaptionField))
                    {
                        captions = AnnotationReader.ParseCaptions(p.Value, options.CaptionField, out string? error);
                        if (captions == null)
                        {
                            problem = $"in '{key}.json': {error}";
                            return false;
                        }
                    }
                    else if (p.NameEquals(options.ImageIdField) && p.Value.ValueKind is JsonValueKind.String or JsonValueKind.Number)
                    {
                        imageId = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : p.Value.GetRawText();
                    }
                    else
                    {
                        extra[p.Name] = p.Value.Clone();
                    }
                }
            }
        }
        foreach (string ext in options.TextExtensions)
        {
            if (!members.TryGetValue(ext.ToLowerInvariant(), out var text)) continue;
            try
            {
                captions = [new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(text).TrimStart('\uFEFF')];
            }
            catch (DecoderFallbackException e)
            {
                (problem, inner) = ($"'{key}.{ext}' is not UTF-8 text", e);
                return false;
            }
            break;
        }
        return true;
    }

    /// <summary>The start of the message for a sample without a caption: what was looked for (the caller closes the parenthesis).</summary>
    internal static string NoCaption(WebDatasetOptions options) =>
        $"no caption (looked for {string.Join(", ", options.TextExtensions.Select(e => "." + e))} or the '{options.CaptionField}' field of .json";

    private static string Members(PendingSample s) =>
        s.Seen.Count == 0 ? "nothing" : string.Join(", ", s.Seen.Order(StringComparer.Ordinal).Select(e => "." + e));
}
