namespace BlipSharp.Training.Data;

/// <summary>How <see cref="BlipAnnotations"/> and <see cref="CocoKarpathy"/> read annotation files.</summary>
public sealed record AnnotationOptions
{
    /// <summary>
    /// The folder relative image paths are resolved against (BLIP's <c>image_root</c>; absolute paths are kept, as
    /// <c>os.path.join</c> does). Null: the folder of the annotation file.
    /// </summary>
    public string? ImageRoot { get; init; }

    /// <summary>Throw <see cref="DataFormatException"/> on the first malformed record instead of skipping it.</summary>
    public bool Strict { get; init; }

    /// <summary>Called for every skipped record (for example to log it). The dataset's <see cref="ImageTextDataset.Issues"/> keeps them too.</summary>
    public Action<DataIssue>? OnIssue { get; init; }

    /// <summary>The field holding the image path.</summary>
    public string ImageField { get; init; } = "image";

    /// <summary>The field holding the caption: a string or a list of strings.</summary>
    public string CaptionField { get; init; } = "caption";

    /// <summary>The optional field holding the image id (a string or a number).</summary>
    public string ImageIdField { get; init; } = "image_id";
}
