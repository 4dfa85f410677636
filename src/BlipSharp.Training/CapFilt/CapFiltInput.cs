using System.Text;
using System.Text.Json;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.CapFilt;

/// <summary>
/// One record of CapFilt's web data, numbered in input order: an image with its web text(s), or a record that could
/// not be read (<see cref="Problem"/> says why). Every input record gets an ordinal, malformed ones too, so that the
/// output accounts for each exactly once.
/// </summary>
/// <param name="Ordinal">0-based position among all records of all inputs, in order.</param>
/// <param name="Source">The annotation file or shard.</param>
/// <param name="Location"><c>"record 12"</c>, <c>"line 7"</c> or <c>"sample 'key' (#3)"</c>.</param>
/// <param name="Image">The image (null for a malformed record).</param>
/// <param name="ImagePath">An annotation record's image file (full path); null for a shard sample.</param>
/// <param name="ImageExtension">A shard sample's image member extension (<c>"jpg"</c>); null otherwise.</param>
/// <param name="WebTexts">The record's text(s), as written.</param>
/// <param name="ImageId">The record's image id, or null.</param>
/// <param name="Extra">Every other field of the record (the synthetic world's <c>noisy</c>, <c>noise_kind</c>, ...).</param>
/// <param name="Problem">Why the record cannot be used, or null.</param>
public sealed record CapFiltRecord(long Ordinal, string Source, string Location, ImageSource? Image, string? ImagePath, string? ImageExtension,
    IReadOnlyList<string> WebTexts, string? ImageId, IReadOnlyDictionary<string, JsonElement> Extra, string? Problem);

/// <summary>
/// Streams CapFilt's inputs: BLIP annotation files (a JSON list, or JSON lines read line by line) and WebDataset
/// <c>.tar</c> shards (read sample by sample, the image bytes kept in memory for that sample only). A malformed record
/// becomes a record with a <see cref="CapFiltRecord.Problem"/>; a damaged shard gives one such record for the rest of
/// the shard, and the next input goes on.
/// </summary>
public static class CapFiltInput
{
    private static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 64 };

    /// <summary>Whether a path is a WebDataset shard (<c>.tar</c>).</summary>
    public static bool IsShard(string path) => path.EndsWith(".tar", StringComparison.OrdinalIgnoreCase);

    /// <summary>Every record of <paramref name="inputs"/>, in order, numbered from 0.</summary>
    /// <param name="inputs">Annotation files and shards; all of one kind.</param>
    /// <param name="imageRoot">The folder annotation image paths are relative to (null: each file's folder).</param>
    /// <param name="options">Field names of annotation records.</param>
    /// <param name="shardOptions">Member extensions and field names of shard samples.</param>
    /// <exception cref="DataFormatException">An input is missing, unreadable, or not JSON at all.</exception>
    public static IEnumerable<CapFiltRecord> Read(IReadOnlyList<string> inputs, string? imageRoot = null, AnnotationOptions? options = null, WebDatasetOptions? shardOptions = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        options ??= new AnnotationOptions();
        shardOptions ??= new WebDatasetOptions();
        long ordinal = 0;
        foreach (string input in inputs)
        {
            var records = IsShard(input) ? ReadShard(input, shardOptions) : ReadAnnotations(input, imageRoot, options);
            foreach (var make in records)
                yield return make(ordinal++);
        }
    }

    private static IEnumerable<Func<long, CapFiltRecord>> ReadAnnotations(string path, string? imageRoot, AnnotationOptions options)
    {
        if (!File.Exists(path))
            throw new DataFormatException(new DataIssue(path, "file", Directory.Exists(path) ? "is a directory, not an annotation file or a .tar shard" : "does not exist"));
        string root = imageRoot ?? AnnotationReader.DefaultRoot(path);
        if (AnnotationReader.IsJsonLinesFile(path))
        {
            using var reader = new StreamReader(path, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);
            int lineNumber = 0;
            while (reader.ReadLine() is { } line)
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                string location = $"line {lineNumber}";
                JsonDocument? doc = null;
                string? reason = null;
                try
                {
                    doc = JsonDocument.Parse(line, JsonOptions);
                }
                catch (JsonException e)
                {
                    reason = $"invalid JSON: {e.Message}";
                }
                if (doc is null)
                {
                    yield return o => Malformed(o, path, location, reason!);
                    continue;
                }
                using (doc) yield return FromElement(doc.RootElement, path, location, root, options);
            }
            yield break;
        }
        var elements = new List<(JsonElement Element, string Location)>();
        AnnotationReader.ForEachElement(path, new DataIssueLog(), (element, location) => elements.Add((element.Clone(), location)));
        foreach (var (element, location) in elements) yield return FromElement(element, path, location, root, options);
    }

    private static Func<long, CapFiltRecord> FromElement(JsonElement element, string path, string location, string root, AnnotationOptions options)
    {
        if (!AnnotationReader.TryParse(element, options, captionRequired: true, out var record, out string? error, location))
            return o => Malformed(o, path, location, error!);
        string image = Path.GetFullPath(AnnotationReader.ResolveImage(record!.Image, root));
        var r = record;
        return o => new CapFiltRecord(o, path, location, ImageSource.FromFile(image), image, null, r.Captions!, r.ImageId, r.Extra, null);
    }

    private static CapFiltRecord Malformed(long ordinal, string source, string location, string reason) =>
        new(ordinal, source, location, null, null, null, [], null, new Dictionary<string, JsonElement>(), reason);

    private static IEnumerable<Func<long, CapFiltRecord>> ReadShard(string shard, WebDatasetOptions options)
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
        using (stream)
        {
            using var samples = WebDataset.ReadSamples(stream, shard).GetEnumerator();
            while (true)
            {
                WebDatasetSample sample;
                string? damage = null;
                try
                {
                    if (!samples.MoveNext()) break;
                    sample = samples.Current;
                }
                catch (DataFormatException e)
                {
                    damage = $"{e.Issue.Location}: {e.Issue.Reason}; the rest of the shard cannot be read";
                    sample = null!;
                }
                if (damage != null)
                {
                    yield return o => Malformed(o, shard, "end of shard", damage);
                    yield break;
                }
                yield return FromSample(sample, shard, options);
            }
        }
    }

    private static Func<long, CapFiltRecord> FromSample(WebDatasetSample s, string shard, WebDatasetOptions options)
    {
        string location = $"sample '{s.Key}' (#{s.Index})";
        string? ext = options.ImageExtensions.Select(e => e.ToLowerInvariant()).FirstOrDefault(s.Fields.ContainsKey);
        if (ext == null)
        {
            string reason = $"no image member (looked for {string.Join(", ", options.ImageExtensions.Select(e => "." + e))}; has {string.Join(", ", s.Fields.Keys.Order(StringComparer.Ordinal).Select(k => "." + k))})";
            return o => Malformed(o, shard, location, reason);
        }
        if (!WebDataset.TryReadText(s.Key, s.Fields, options, out var captions, out string? imageId, out var extra, out string? problem, out _))
            return o => Malformed(o, shard, location, problem!);
        if (captions == null)
        {
            string reason = WebDataset.NoCaption(options) + ")";
            return o => Malformed(o, shard, location, reason);
        }
        var image = ImageSource.FromMemory($"{shard}:{s.Key}.{ext}", s.Fields[ext]);
        var texts = captions;
        string id = imageId ?? s.Key;
        return o => new CapFiltRecord(o, shard, location, image, null, ext, texts, id, extra, null);
    }
}
