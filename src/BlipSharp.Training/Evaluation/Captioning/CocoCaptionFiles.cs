using System.Text.Json;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Evaluation.Captioning;

/// <summary>One record of a COCO caption results file.</summary>
/// <param name="ImageId">The image id as text (an integer id is written in decimal, so 5 and "5" are the same image).</param>
/// <param name="Caption">The generated caption.</param>
public sealed record CaptionResult(string ImageId, string Caption);

/// <summary>A COCO-format caption annotation file: the images in file order and each image's reference captions.</summary>
/// <param name="Path">The file read.</param>
/// <param name="ImageIds">Image ids in the order of the file's <c>images</c> list.</param>
/// <param name="Captions">Reference captions per image id, in annotation order.</param>
public sealed record CaptionAnnotations(string Path, IReadOnlyList<string> ImageIds, IReadOnlyDictionary<string, IReadOnlyList<string>> Captions);

/// <summary>
/// Reads the two files of a COCO caption evaluation: BLIP's results file (<c>[{"image_id", "caption"}, ...]</c>) and a
/// COCO caption annotation file (<c>{"images": [{"id"}], "annotations": [{"image_id", "caption"}]}</c>, as
/// coco_karpathy_test_gt.json, the nocaps and Flickr30K ground truth files). Bad input is a
/// <see cref="DataFormatException"/> naming the file, the record and the field.
/// </summary>
public static class CocoCaptionFiles
{
    /// <summary>Reads a results file.</summary>
    public static IReadOnlyList<CaptionResult> ReadResults(string path)
    {
        using var doc = Parse(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
            throw Error(path, "file", $"expected a JSON list of {{\"image_id\", \"caption\"}} records, got {Kind(doc.RootElement)}");
        var results = new List<CaptionResult>();
        int index = 0;
        foreach (var record in doc.RootElement.EnumerateArray())
        {
            string location = $"record {index}";
            if (record.ValueKind != JsonValueKind.Object) throw Error(path, location, $"expected a JSON object, got {Kind(record)}");
            results.Add(new CaptionResult(ImageId(path, location, record, "image_id"), Text(path, location, record, "caption")));
            index++;
        }
        return results;
    }

    /// <summary>Reads a COCO caption annotation file.</summary>
    public static CaptionAnnotations ReadAnnotations(string path)
    {
        using var doc = Parse(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw Error(path, "file", $"expected a COCO caption object with 'images' and 'annotations', got {Kind(root)}");
        var images = List(path, root, "images");
        var annotations = List(path, root, "annotations");
        var ids = new List<string>();
        var captions = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        int index = 0;
        foreach (var image in images.EnumerateArray())
        {
            string location = $"images[{index}]";
            if (image.ValueKind != JsonValueKind.Object) throw Error(path, location, $"expected a JSON object, got {Kind(image)}");
            string id = ImageId(path, location, image, "id");
            if (captions.ContainsKey(id)) throw Error(path, location, $"image id {id} is listed twice");
            ids.Add(id);
            captions[id] = [];
            index++;
        }
        index = 0;
        foreach (var annotation in annotations.EnumerateArray())
        {
            string location = $"annotations[{index}]";
            if (annotation.ValueKind != JsonValueKind.Object) throw Error(path, location, $"expected a JSON object, got {Kind(annotation)}");
            string id = ImageId(path, location, annotation, "image_id");
            string caption = Text(path, location, annotation, "caption");
            if (!captions.TryGetValue(id, out var list)) throw Error(path, location, $"field 'image_id': image {id} is not in the file's 'images' list");
            list.Add(caption);
            index++;
        }
        return new CaptionAnnotations(path, ids, captions.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)p.Value, StringComparer.Ordinal));
    }

    /// <summary>
    /// Pairs results with annotations as COCOEvalCap does: exactly the results' images are scored, in the annotation
    /// file's image order. A result for an image the annotations lack, a second result for the same image, or a
    /// scored image without reference captions is an error.
    /// </summary>
    public static IReadOnlyList<CaptionEvaluationItem> Pair(string resultsPath, IReadOnlyList<CaptionResult> results, CaptionAnnotations annotations)
    {
        var byId = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < results.Count; i++)
        {
            var r = results[i];
            if (!annotations.Captions.ContainsKey(r.ImageId))
                throw Error(resultsPath, $"record {i}", $"field 'image_id': image {r.ImageId} is not in the annotation file {annotations.Path}");
            if (!byId.TryAdd(r.ImageId, r.Caption))
                throw Error(resultsPath, $"record {i}", $"field 'image_id': image {r.ImageId} has a second result (COCO scores one caption per image)");
        }
        if (results.Count == 0) throw Error(resultsPath, "file", "holds no results");
        var items = new List<CaptionEvaluationItem>(byId.Count);
        foreach (string id in annotations.ImageIds)
        {
            if (!byId.TryGetValue(id, out string? caption)) continue;
            var refs = annotations.Captions[id];
            if (refs.Count == 0) throw Error(annotations.Path, $"image {id}", "has no annotations (reference captions), but the results score it");
            items.Add(new CaptionEvaluationItem(id, caption, refs));
        }
        return items;
    }

    /// <summary>Reads both files and pairs them (<see cref="Pair"/>).</summary>
    public static IReadOnlyList<CaptionEvaluationItem> Read(string resultsPath, string annotationsPath) =>
        Pair(resultsPath, ReadResults(resultsPath), ReadAnnotations(annotationsPath));

    private static JsonDocument Parse(string path)
    {
        if (!File.Exists(path))
            throw Error(path, "file", Directory.Exists(path) ? "is a directory, not a JSON file" : "does not exist");
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new DataFormatException(new DataIssue(path, e.LineNumber is long l ? $"line {l + 1}" : "file", $"not valid JSON: {e.Message}"), e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(new DataIssue(path, "file", $"cannot be read: {e.Message}"), e);
        }
    }

    private static JsonElement List(string path, JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var list)) throw Error(path, "file", $"missing field '{field}'");
        if (list.ValueKind != JsonValueKind.Array) throw Error(path, "file", $"field '{field}' must be a list, got {Kind(list)}");
        return list;
    }

    private static string ImageId(string path, string location, JsonElement record, string field)
    {
        if (!record.TryGetProperty(field, out var v)) throw Error(path, location, $"missing field '{field}'");
        return v.ValueKind switch
        {
            JsonValueKind.Number when v.TryGetInt64(out long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture),
            JsonValueKind.String when !string.IsNullOrEmpty(v.GetString()) => v.GetString()!,
            _ => throw Error(path, location, $"field '{field}' must be an integer or a non-empty string, got {Describe(v)}"),
        };
    }

    private static string Text(string path, string location, JsonElement record, string field)
    {
        if (!record.TryGetProperty(field, out var v)) throw Error(path, location, $"missing field '{field}'");
        if (v.ValueKind != JsonValueKind.String) throw Error(path, location, $"field '{field}' must be a string, got {Describe(v)}");
        return v.GetString()!;
    }

    private static DataFormatException Error(string path, string location, string reason) => new(new DataIssue(path, location, reason));

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static string Describe(JsonElement e) => e.ValueKind is JsonValueKind.Object or JsonValueKind.Array ? Kind(e) : $"{Kind(e)} ({e.GetRawText()})";
}
