using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Captioning;

/// <summary>One image to caption and the id its result is written under.</summary>
/// <param name="Image">The image file.</param>
/// <param name="ImageId">The id as text (an integer in decimal).</param>
/// <param name="Location">The record it came from, for messages.</param>
public sealed record CaptionEvalImage(ImageSource Image, string ImageId, string Location)
{
    /// <summary>
    /// The id as BLIP writes it into a result file: a JSON number when it is an integer (COCO's and NoCaps' ids,
    /// <c>img_id.item()</c>), else a string (e.g. the synthetic world's <c>test_000000</c>).
    /// </summary>
    public JsonNode JsonId => long.TryParse(ImageId, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long id)
        && id.ToString(CultureInfo.InvariantCulture) == ImageId
            ? JsonValue.Create(id)
            : JsonValue.Create(ImageId);
}

/// <summary>
/// The images of a caption evaluation split. Reads a Karpathy evaluation file (<c>coco_karpathy_test.json</c>: one
/// record per image with its captions) or a NoCaps file (<c>nocaps_val.json</c>, <c>nocaps_test.json</c>: records of
/// <c>{"image", "img_id"}</c> without captions); captions are not needed (the scorer reads the COCO-format ground
/// truth). The id of each image is, in order: the record's <c>image_id</c>; its <c>img_id</c> (BLIP's
/// <c>nocaps_eval</c>); the number BLIP's <c>coco_karpathy_caption_eval</c> reads from the file name
/// (<see cref="CocoKarpathy.TryParseImageId"/>). A second record of the same id is dropped, as BLIP's
/// <c>save_result(remove_duplicate='image_id')</c> keeps the first result of an id.
/// </summary>
public static class CaptionEvalImages
{
    /// <summary>BLIP's NoCaps id field.</summary>
    public const string NoCapsIdField = "img_id";

    /// <summary>Reads the images of an evaluation file.</summary>
    /// <param name="annotationPath">The evaluation file (a JSON list or JSON lines).</param>
    /// <param name="imageRoot">The folder image paths are relative to (null: the file's folder).</param>
    /// <param name="duplicates">How many records repeated an id and were dropped.</param>
    /// <exception cref="DataFormatException">The file or a record is malformed (the message names the file and the record), or a record has no id.</exception>
    public static IReadOnlyList<CaptionEvalImage> Load(string annotationPath, string? imageRoot, out int duplicates)
    {
        ArgumentNullException.ThrowIfNull(annotationPath);
        var options = new AnnotationOptions { Strict = true };
        var log = new DataIssueLog(strict: true);
        string root = imageRoot ?? AnnotationReader.DefaultRoot(annotationPath);
        var images = new List<CaptionEvalImage>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        duplicates = 0;
        foreach (var r in AnnotationReader.ReadRecords(annotationPath, options, log, captionRequired: false))
        {
            string id = r.ImageId ?? NoCapsId(annotationPath, r)
                ?? (CocoKarpathy.TryParseImageId(r.Image, out long parsed) ? parsed.ToString(CultureInfo.InvariantCulture)
                    : throw new DataFormatException(new DataIssue(annotationPath, r.Location,
                        $"no 'image_id' or '{NoCapsIdField}', and the file name '{r.Image}' ends in no number to use as the image id (BLIP reads COCO's ids from names like COCO_val2014_000000391895.jpg)")));
            if (!seen.Add(id))
            {
                duplicates++;
                continue;
            }
            images.Add(new CaptionEvalImage(ImageSource.FromFile(AnnotationReader.ResolveImage(r.Image, root)), id, r.Location));
        }
        if (images.Count == 0) throw new DataFormatException(new DataIssue(annotationPath, "file", "lists no image"));
        return images;
    }

    private static string? NoCapsId(string path, AnnotationReader.Record record)
    {
        if (!record.Extra.TryGetValue(NoCapsIdField, out var value)) return null;
        return value.ValueKind switch
        {
            JsonValueKind.Number => value.GetRawText(),
            JsonValueKind.String when !string.IsNullOrEmpty(value.GetString()) => value.GetString(),
            _ => throw new DataFormatException(new DataIssue(path, record.Location, $"field '{NoCapsIdField}' must be a number or a string, got {AnnotationReader.Describe(value)}")),
        };
    }
}
