using System.Collections;
using System.Text.Json;

namespace BlipSharp.Training.Data;

/// <summary>
/// One image with its text(s), as read from an annotation file or a shard. Captions are raw (not yet cleaned
/// with <see cref="TextCleaning.PreCaption"/>); the loader cleans them.
/// </summary>
/// <param name="Image">Where the encoded image is.</param>
/// <param name="Captions">At least one caption.</param>
/// <param name="ImageId">The record's image id as written (a JSON number keeps its digits), or null.</param>
/// <param name="ImageIndex">A dense 0-based index per distinct image id (or image, without ids), in order of first appearance, as BLIP's <c>img_ids</c>.</param>
/// <param name="Extra">Every other field of the record, for example the synthetic world's <c>noisy</c> and <c>noise_kind</c>.</param>
/// <param name="Source">The annotation file or shard.</param>
/// <param name="Location">Where in <paramref name="Source"/>: <c>"record 3"</c>, <c>"line 4"</c>, <c>"sample 'key'"</c>.</param>
public sealed record ImageTextEntry(
    ImageSource Image,
    IReadOnlyList<string> Captions,
    string? ImageId,
    int ImageIndex,
    IReadOnlyDictionary<string, JsonElement> Extra,
    string Source,
    string Location);

/// <summary>
/// A list of image-text entries read from annotation files or shards, with the records that were skipped while
/// reading. Images are decoded only when asked for. Build one with <see cref="BlipAnnotations"/>,
/// <see cref="CocoKarpathy"/> or <see cref="WebDataset"/>.
/// </summary>
public sealed class ImageTextDataset : IReadOnlyList<ImageTextEntry>
{
    private readonly ImageTextEntry[] _entries;

    /// <summary>Creates a dataset from entries already built.</summary>
    /// <param name="name">A name for messages (the file or files it came from).</param>
    /// <param name="entries">The entries, in order.</param>
    /// <param name="issues">The records skipped while reading; a new empty log when null.</param>
    public ImageTextDataset(string name, IEnumerable<ImageTextEntry> entries, DataIssueLog? issues = null)
    {
        ArgumentNullException.ThrowIfNull(entries);
        Name = name ?? "";
        _entries = entries.ToArray();
        Issues = issues ?? new DataIssueLog();
        ImageCount = _entries.Length == 0 ? 0 : _entries.Max(e => e.ImageIndex) + 1;
    }

    /// <summary>The file or files it came from.</summary>
    public string Name { get; }

    /// <summary>The records skipped while reading (malformed JSON, missing or mistyped fields, incomplete samples).</summary>
    public DataIssueLog Issues { get; }

    /// <summary>How many records were skipped while reading.</summary>
    public long SkippedCount => Issues.Count;

    /// <summary>Number of distinct images (one more than the largest <see cref="ImageTextEntry.ImageIndex"/>).</summary>
    public int ImageCount { get; }

    /// <inheritdoc />
    public int Count => _entries.Length;

    /// <inheritdoc />
    public ImageTextEntry this[int index] => _entries[index];

    /// <inheritdoc />
    public IEnumerator<ImageTextEntry> GetEnumerator() => ((IEnumerable<ImageTextEntry>)_entries).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
