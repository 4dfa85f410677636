using System.Text;
using System.Text.Json;

namespace BlipSharp.Training.Data;

/// <summary>Shared reading of BLIP-style annotation records from a JSON list or JSON lines.</summary>
internal static class AnnotationReader
{
    private static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 64 };

    /// <summary>A parsed record: the fields BLIP reads plus everything else.</summary>
    internal sealed record Record(string Image, IReadOnlyList<string>? Captions, string? ImageId, Dictionary<string, JsonElement> Extra, string Location);

    /// <summary>Reads every record of a JSON list (<c>[...]</c>) or a JSON-lines file, skipping malformed ones into <paramref name="log"/>.</summary>
    internal static List<Record> ReadRecords(string path, AnnotationOptions options, DataIssueLog log, bool captionRequired)
    {
        var records = new List<Record>();
        ForEachElement(path, log, (element, location) => Add(records, element, path, location, options, log, captionRequired));
        return records;
    }

    /// <summary>
    /// Calls <paramref name="visit"/> for every element of a JSON list (<c>[...]</c>, location <c>"record N"</c>) or
    /// every line of a JSON-lines file (location <c>"line N"</c>); invalid JSON lines go to <paramref name="log"/>, and
    /// a file that is missing, unreadable, not JSON or not a list throws <see cref="DataFormatException"/>.
    /// </summary>
    internal static void ForEachElement(string path, DataIssueLog log, Action<JsonElement, string> visit)
    {
        if (!File.Exists(path))
            throw new DataFormatException(new DataIssue(path, "file", Directory.Exists(path) ? "is a directory, not an annotation file" : "does not exist"));
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(new DataIssue(path, "file", $"cannot be read: {e.Message}"), e);
        }
        if (IsJsonLines(path, bytes))
        {
            int lineNumber = 0;
            foreach (var line in SplitLines(bytes))
            {
                lineNumber++;
                if (line.Span.Trim(" \t\r\n"u8).IsEmpty) continue;
                string location = $"line {lineNumber}";
                JsonDocument doc;
                try
                {
                    doc = JsonDocument.Parse(line, JsonOptions);
                }
                catch (JsonException e)
                {
                    log.Report(new DataIssue(path, location, $"invalid JSON: {e.Message}"), e);
                    continue;
                }
                using (doc) visit(doc.RootElement, location);
            }
            return;
        }

        JsonDocument list;
        try
        {
            list = JsonDocument.Parse(bytes.AsMemory(StartAfterBom(bytes)), JsonOptions);
        }
        catch (JsonException e)
        {
            throw new DataFormatException(new DataIssue(path, e.LineNumber is long l ? $"line {l + 1}" : "file", $"not valid JSON: {e.Message}"), e);
        }
        using (list)
        {
            if (list.RootElement.ValueKind != JsonValueKind.Array)
                throw new DataFormatException(new DataIssue(path, "file", $"expected a JSON list of records (or one JSON object per line), got a {Kind(list.RootElement)}"));
            int index = 0;
            foreach (var element in list.RootElement.EnumerateArray())
            {
                visit(element, $"record {index}");
                index++;
            }
        }
    }

    private static void Add(List<Record> records, JsonElement element, string path, string location, AnnotationOptions options, DataIssueLog log, bool captionRequired)
    {
        if (TryParse(element, options, captionRequired, out var record, out string? error, location))
            records.Add(record!);
        else
            log.Report(new DataIssue(path, location, error!));
    }

    internal static bool TryParse(JsonElement element, AnnotationOptions options, bool captionRequired, out Record? record, out string? error, string location)
    {
        record = null;
        if (element.ValueKind != JsonValueKind.Object)
        {
            error = $"expected a JSON object, got a {Kind(element)}";
            return false;
        }
        string? image = null;
        IReadOnlyList<string>? captions = null;
        string? imageId = null;
        var extra = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            var v = property.Value;
            if (property.NameEquals(options.ImageField))
            {
                if (v.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(v.GetString()))
                {
                    error = $"field '{options.ImageField}' must be a non-empty string, got {Describe(v)}";
                    return false;
                }
                image = v.GetString();
            }
            else if (property.NameEquals(options.CaptionField))
            {
                captions = ParseCaptions(v, options.CaptionField, out error);
                if (captions == null) return false;
            }
            else if (property.NameEquals(options.ImageIdField))
            {
                switch (v.ValueKind)
                {
                    case JsonValueKind.String:
                        imageId = v.GetString();
                        break;
                    case JsonValueKind.Number:
                        imageId = v.GetRawText();
                        break;
                    default:
                        error = $"field '{options.ImageIdField}' must be a string or a number, got {Describe(v)}";
                        return false;
                }
            }
            else
            {
                extra[property.Name] = v.Clone();
            }
        }
        if (image == null)
        {
            error = $"missing field '{options.ImageField}'";
            return false;
        }
        if (captions == null && captionRequired)
        {
            error = $"missing field '{options.CaptionField}'";
            return false;
        }
        error = null;
        record = new Record(image, captions, imageId, extra, location);
        return true;
    }

    internal static IReadOnlyList<string>? ParseCaptions(JsonElement v, string field, out string? error)
    {
        error = null;
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind == JsonValueKind.Array)
        {
            var list = new List<string>(v.GetArrayLength());
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                {
                    error = $"field '{field}' must be a string or a list of strings, but item {list.Count} is {Describe(item)}";
                    return null;
                }
                list.Add(item.GetString()!);
            }
            if (list.Count == 0)
            {
                error = $"field '{field}' is an empty list";
                return null;
            }
            return list;
        }
        error = $"field '{field}' must be a string or a list of strings, got {Describe(v)}";
        return null;
    }

    internal static string ResolveImage(string image, string root) => Path.IsPathRooted(image) ? image : Path.Combine(root, image);

    internal static string DefaultRoot(string annotationPath) => Path.GetDirectoryName(Path.GetFullPath(annotationPath)) ?? ".";

    /// <summary>Whether <paramref name="path"/> holds JSON lines rather than a JSON list (by extension, else by its first character), reading only its start.</summary>
    internal static bool IsJsonLinesFile(string path)
    {
        var head = new byte[4096];
        int n;
        using (var stream = File.OpenRead(path)) n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        return IsJsonLines(path, head.AsSpan(0, n).ToArray());
    }

    private static bool IsJsonLines(string path, byte[] bytes)
    {
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".jsonl" or ".ndjson") return true;
        // A .json file holding objects one per line rather than a list.
        var span = bytes.AsSpan(StartAfterBom(bytes)).TrimStart(" \t\r\n"u8);
        return !span.IsEmpty && span[0] == (byte)'{';
    }

    private static int StartAfterBom(byte[] bytes) => bytes.AsSpan().StartsWith(Encoding.UTF8.Preamble) ? 3 : 0;

    private static IEnumerable<ReadOnlyMemory<byte>> SplitLines(byte[] bytes)
    {
        int start = StartAfterBom(bytes);
        while (start <= bytes.Length)
        {
            int nl = Array.IndexOf(bytes, (byte)'\n', start);
            int end = nl < 0 ? bytes.Length : nl;
            yield return bytes.AsMemory(start, end - start);
            if (nl < 0) yield break;
            start = nl + 1;
        }
    }

    internal static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "list",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => v.ValueKind.ToString(),
    };

    internal static string Describe(JsonElement v)
    {
        string raw = v.GetRawText();
        if (raw.Length > 40) raw = raw[..40] + "...";
        return $"a {Kind(v)} ({raw})";
    }
}

/// <summary>Numbers distinct image keys densely in order of first appearance, as BLIP's <c>img_ids</c> dict.</summary>
internal sealed class ImageIndexer
{
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);

    public int IndexOf(string key)
    {
        if (!_ids.TryGetValue(key, out int index))
        {
            index = _ids.Count;
            _ids[key] = index;
        }
        return index;
    }
}
