using System.Globalization;

namespace BlipSharp.Training.Data;

/// <summary>For retrieval evaluation: every caption of every image, flattened, with the maps between them (BLIP's <c>coco_karpathy_retrieval_eval</c>).</summary>
/// <param name="Texts">All captions, cleaned with <see cref="TextCleaning.PreCaption"/>, image by image.</param>
/// <param name="TextToImage">For each text, the index of its image (its entry in the dataset).</param>
/// <param name="ImageToTexts">For each image, the indices of its texts.</param>
public sealed record RetrievalIndex(IReadOnlyList<string> Texts, IReadOnlyList<int> TextToImage, IReadOnlyList<IReadOnlyList<int>> ImageToTexts);

/// <summary>
/// The COCO Karpathy split files as BLIP reads them (<c>data/coco_karpathy_dataset.py</c>):
/// <c>coco_karpathy_train.json</c> is a list of <c>{"image", "caption": str, "image_id"}</c>, one record per caption;
/// <c>coco_karpathy_val.json</c> and <c>_test.json</c> are lists of <c>{"image", "caption": [str, ...]}</c>, one per image.
/// Image paths are relative to the image root (BLIP's <c>image_root</c>).
/// </summary>
public static class CocoKarpathy
{
    /// <summary>
    /// Reads a training file. <see cref="ImageTextEntry.ImageIndex"/> numbers the distinct <c>image_id</c>s in
    /// order of first appearance, as BLIP's <c>img_ids</c>; a record without an <c>image_id</c> or with a caption
    /// that is not a string is malformed.
    /// </summary>
    /// <param name="annotationPath">The <c>coco_karpathy_train.json</c> file.</param>
    /// <param name="imageRoot">The folder image paths are relative to; the annotation file's folder when null.</param>
    /// <param name="options">Strictness and issue callback (its <see cref="AnnotationOptions.ImageRoot"/> is overridden by <paramref name="imageRoot"/> when given).</param>
    public static ImageTextDataset LoadTrain(string annotationPath, string? imageRoot = null, AnnotationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(annotationPath);
        options ??= new AnnotationOptions();
        var log = new DataIssueLog(options.Strict, options.OnIssue);
        string root = imageRoot ?? options.ImageRoot ?? AnnotationReader.DefaultRoot(annotationPath);
        var indexer = new ImageIndexer();
        var entries = new List<ImageTextEntry>();
        foreach (var r in AnnotationReader.ReadRecords(annotationPath, options, log, captionRequired: true))
        {
            if (r.ImageId == null)
            {
                log.Report(new DataIssue(annotationPath, r.Location, $"missing field '{options.ImageIdField}' (a training record needs its image id)"));
                continue;
            }
            if (r.Captions!.Count != 1)
            {
                log.Report(new DataIssue(annotationPath, r.Location, $"field '{options.CaptionField}' must be one string in a training file, got a list of {r.Captions.Count}"));
                continue;
            }
            entries.Add(new ImageTextEntry(ImageSource.FromFile(AnnotationReader.ResolveImage(r.Image, root)), r.Captions, r.ImageId,
                indexer.IndexOf(r.ImageId), r.Extra, annotationPath, r.Location));
        }
        return new ImageTextDataset(annotationPath, entries, log);
    }

    /// <summary>
    /// Reads a validation or test file: one entry per image with all its captions. <see cref="ImageTextEntry.ImageIndex"/>
    /// is the record's position; <see cref="ImageTextEntry.ImageId"/> is the record's <c>image_id</c> if it has one,
    /// else the number BLIP derives from the file name (<see cref="TryParseImageId"/>), else null.
    /// </summary>
    /// <param name="annotationPath">The <c>coco_karpathy_val.json</c> or <c>_test.json</c> file.</param>
    /// <param name="imageRoot">The folder image paths are relative to; the annotation file's folder when null.</param>
    /// <param name="options">Strictness and issue callback.</param>
    public static ImageTextDataset LoadEval(string annotationPath, string? imageRoot = null, AnnotationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(annotationPath);
        options ??= new AnnotationOptions();
        var log = new DataIssueLog(options.Strict, options.OnIssue);
        string root = imageRoot ?? options.ImageRoot ?? AnnotationReader.DefaultRoot(annotationPath);
        var entries = new List<ImageTextEntry>();
        foreach (var r in AnnotationReader.ReadRecords(annotationPath, options, log, captionRequired: true))
        {
            string? id = r.ImageId ?? (TryParseImageId(r.Image, out long parsed) ? parsed.ToString(CultureInfo.InvariantCulture) : null);
            entries.Add(new ImageTextEntry(ImageSource.FromFile(AnnotationReader.ResolveImage(r.Image, root)), r.Captions!, id,
                entries.Count, r.Extra, annotationPath, r.Location));
        }
        return new ImageTextDataset(annotationPath, entries, log);
    }

    /// <summary>
    /// BLIP's <c>int(ann['image'].split('/')[-1].strip('.jpg').split('_')[-1])</c>:
    /// <c>"val2014/COCO_val2014_000000391895.jpg"</c> gives 391895. Note that <c>strip('.jpg')</c> removes any of the
    /// characters '.', 'j', 'p', 'g' from both ends, not the suffix, so a <c>.png</c> name does not parse.
    /// </summary>
    /// <param name="imagePath">The record's <c>image</c> field.</param>
    /// <param name="imageId">The id, when the last '_'-separated part is an integer as Python's <c>int()</c> reads it.</param>
    public static bool TryParseImageId(string imagePath, out long imageId)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        string name = imagePath[(imagePath.LastIndexOf('/') + 1)..].Trim('.', 'j', 'p', 'g');
        string last = name[(name.LastIndexOf('_') + 1)..].Trim();
        return long.TryParse(last, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out imageId);
    }

    /// <summary>
    /// Flattens the captions of an evaluation dataset for retrieval, cleaning each with
    /// <c>pre_caption(caption, max_words)</c>, as BLIP's <c>coco_karpathy_retrieval_eval</c> does.
    /// </summary>
    /// <param name="dataset">A dataset from <see cref="LoadEval"/> (one entry per image).</param>
    /// <param name="maxWords">BLIP uses 30.</param>
    public static RetrievalIndex BuildRetrievalIndex(ImageTextDataset dataset, int maxWords = TextCleaning.DatasetMaxWords)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        var texts = new List<string>();
        var textToImage = new List<int>();
        var imageToTexts = new List<IReadOnlyList<int>>(dataset.Count);
        for (int image = 0; image < dataset.Count; image++)
        {
            var ids = new List<int>();
            foreach (string caption in dataset[image].Captions)
            {
                ids.Add(texts.Count);
                texts.Add(TextCleaning.PreCaption(caption, maxWords));
                textToImage.Add(image);
            }
            imageToTexts.Add(ids);
        }
        return new RetrievalIndex(texts, textToImage, imageToTexts);
    }
}
