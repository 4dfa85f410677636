namespace BlipSharp.Training.Data;

/// <summary>
/// BLIP's annotation files: a JSON list of records <c>{"image": path, "caption": str or [str], ...}</c>, or the
/// same records one JSON object per line (<c>.jsonl</c>). Extra fields (<c>image_id</c>, <c>noisy</c>, ...) are kept
/// in <see cref="ImageTextEntry.Extra"/>. Malformed records are skipped and listed in
/// <see cref="ImageTextDataset.Issues"/> with the file and record index (JSON list) or line number (JSON lines);
/// <see cref="AnnotationOptions.Strict"/> makes the first one throw.
/// </summary>
public static class BlipAnnotations
{
    /// <summary>Reads one annotation file.</summary>
    /// <param name="path">A <c>.json</c> list or a <c>.jsonl</c> file.</param>
    /// <param name="options">Image root, strictness and field names; defaults when null.</param>
    public static ImageTextDataset Load(string path, AnnotationOptions? options = null) => Load([path], options);

    /// <summary>Reads several annotation files into one dataset, in order (as BLIP's <c>pretrain_dataset</c> concatenates its <c>train_file</c> list).</summary>
    /// <param name="paths">The files.</param>
    /// <param name="options">Image root, strictness and field names; defaults when null.</param>
    public static ImageTextDataset Load(IEnumerable<string> paths, AnnotationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        options ??= new AnnotationOptions();
        var files = paths.ToList();
        if (files.Count == 0) throw new ArgumentException("no annotation files given", nameof(paths));
        var log = new DataIssueLog(options.Strict, options.OnIssue);
        var indexer = new ImageIndexer();
        var entries = new List<ImageTextEntry>();
        foreach (string path in files)
        {
            string root = options.ImageRoot ?? AnnotationReader.DefaultRoot(path);
            foreach (var r in AnnotationReader.ReadRecords(path, options, log, captionRequired: true))
            {
                string image = AnnotationReader.ResolveImage(r.Image, root);
                int imageIndex = indexer.IndexOf(r.ImageId != null ? "id:" + r.ImageId : "path:" + image);
                entries.Add(new ImageTextEntry(ImageSource.FromFile(image), r.Captions!, r.ImageId, imageIndex, r.Extra, path, r.Location));
            }
        }
        return new ImageTextDataset(string.Join(", ", files), entries, log);
    }
}
