using System.Text.Json;

namespace BlipSharp.Training.Data;

/// <summary>One NLVR2 statement: two images, a sentence about them, and whether it is true.</summary>
/// <param name="Left">The first image (<c>images[0]</c>).</param>
/// <param name="Right">The second image (<c>images[1]</c>).</param>
/// <param name="Sentence">The statement as written in the file (BLIP cleans it with <c>pre_caption(sentence, 40)</c> when training).</param>
/// <param name="Label">True when the statement holds (<c>"label": "True"</c>).</param>
/// <param name="Source">The annotation file.</param>
/// <param name="Location">Where in <paramref name="Source"/> (<c>"record 12"</c>, <c>"line 7"</c>).</param>
public sealed record NlvrItem(ImageSource Left, ImageSource Right, string Sentence, bool Label, string Source, string Location);

/// <summary>
/// NLVR2 annotation files as BLIP reads them (<c>data/nlvr_dataset.py</c>): a JSON list (or JSON lines) of
/// <c>{"images": [left, right], "sentence": str, "label": "True"|"False"}</c>, image paths relative to the image root.
/// </summary>
public static class NlvrAnnotations
{
    /// <summary>
    /// Reads every statement. A record with a missing field, a field of the wrong type, not exactly two images or a
    /// label other than <c>"True"</c>/<c>"False"</c> is an issue naming the file, the record and the field: thrown in
    /// strict mode, else skipped and reported to <see cref="AnnotationOptions.OnIssue"/>.
    /// </summary>
    /// <param name="annotationPath">The annotation file.</param>
    /// <param name="imageRoot">The folder image paths are relative to; the annotation file's folder when null.</param>
    /// <param name="options">Strictness and issue callback.</param>
    public static IReadOnlyList<NlvrItem> Load(string annotationPath, string? imageRoot = null, AnnotationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(annotationPath);
        options ??= new AnnotationOptions();
        var log = new DataIssueLog(options.Strict, options.OnIssue);
        string root = imageRoot ?? options.ImageRoot ?? AnnotationReader.DefaultRoot(annotationPath);
        var items = new List<NlvrItem>();
        AnnotationReader.ForEachElement(annotationPath, log, (element, location) =>
        {
            if (TryParse(element, root, annotationPath, location, out var item, out string? error)) items.Add(item!);
            else log.Report(new DataIssue(annotationPath, location, error!));
        });
        return items;
    }

    private static bool TryParse(JsonElement element, string root, string path, string location, out NlvrItem? item, out string? error)
    {
        item = null;
        if (element.ValueKind != JsonValueKind.Object)
        {
            error = $"expected an object, got {AnnotationReader.Describe(element)}";
            return false;
        }
        if (!element.TryGetProperty("images", out var images))
        {
            error = "missing field 'images'";
            return false;
        }
        if (images.ValueKind != JsonValueKind.Array || images.GetArrayLength() != 2 || images.EnumerateArray().Any(i => i.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(i.GetString())))
        {
            error = $"field 'images' must be a list of two image paths, got {AnnotationReader.Describe(images)}";
            return false;
        }
        if (!element.TryGetProperty("sentence", out var sentence))
        {
            error = "missing field 'sentence'";
            return false;
        }
        if (sentence.ValueKind != JsonValueKind.String)
        {
            error = $"field 'sentence' must be a string, got {AnnotationReader.Describe(sentence)}";
            return false;
        }
        if (!element.TryGetProperty("label", out var label))
        {
            error = "missing field 'label'";
            return false;
        }
        if (label.ValueKind != JsonValueKind.String || label.GetString() is not ("True" or "False"))
        {
            error = $"field 'label' must be \"True\" or \"False\", got {AnnotationReader.Describe(label)}";
            return false;
        }
        string left = images[0].GetString()!, right = images[1].GetString()!;
        item = new NlvrItem(ImageSource.FromFile(AnnotationReader.ResolveImage(left, root)), ImageSource.FromFile(AnnotationReader.ResolveImage(right, root)),
            sentence.GetString()!, label.GetString() == "True", path, location);
        error = null;
        return true;
    }
}
