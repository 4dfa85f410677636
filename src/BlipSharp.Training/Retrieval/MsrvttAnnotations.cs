using System.Text.Json;
using BlipSharp.Training.Data;

namespace BlipSharp.Training.Retrieval;

/// <summary>
/// Videos and texts of a video-text retrieval test set, with BLIP's ground-truth maps (<c>txt2video</c>,
/// <c>video2txt</c>). Texts are already cleaned (<c>pre_caption</c>).
/// </summary>
/// <param name="Source">The annotation file.</param>
/// <param name="Videos">The videos, in order of first appearance.</param>
/// <param name="Texts">The cleaned captions, in file order.</param>
/// <param name="TextToVideo">Text j's video index.</param>
/// <param name="VideoToTexts">Video i's text indices.</param>
public sealed record VideoRetrievalDataset(string Source, IReadOnlyList<VideoSource> Videos, IReadOnlyList<string> Texts,
    IReadOnlyList<int> TextToVideo, IReadOnlyList<IReadOnlyList<int>> VideoToTexts);

/// <summary>
/// Reads BLIP's MSRVTT retrieval test annotations (<c>msrvtt_test.jsonl</c>, as salesforce/BLIP's
/// <c>data/video_dataset.py</c> <c>VideoDataset</c> reads them): one JSON object per line with a string
/// <c>clip_name</c> and a <c>caption</c> (a string, or a list of strings for several captions); other fields are
/// ignored, blank lines skipped (a JSON list of such objects is read too). Each caption becomes
/// <c>pre_caption(caption, 40)</c>.
/// <para>
/// Videos. BLIP decodes <c>video_root/clip_name + '.mp4'</c>; this reader takes frames already extracted from it:
/// the folder <c>video_root/clip_name/</c> (a <see cref="VideoSourceKind.FrameFolder"/>), or the frame-list file
/// <c>video_root/clip_name.txt</c> or <c>video_root/clip_name.frames</c> (a <see cref="VideoSourceKind.FrameList"/>).
/// Exactly one of the three must exist and hold at least one frame.
/// </para>
/// <para>
/// Several records with the same <c>clip_name</c> are one video with several texts. BLIP's MSRVTT test file has one
/// record per clip (1,000 clips), where this is BLIP's <c>txt2video = video2txt = range(n)</c>.
/// </para>
/// </summary>
public static class MsrvttAnnotations
{
    /// <summary>The <c>max_words</c> BLIP's <c>VideoDataset</c> passes to <c>pre_caption</c>.</summary>
    public const int MaxWords = 40;

    /// <summary>The frame-list file extensions tried after the folder, in order.</summary>
    public static IReadOnlyList<string> FrameListExtensions { get; } = [".txt", ".frames"];

    /// <summary>Reads the annotation file and resolves every video.</summary>
    /// <param name="annotationPath">The <c>.jsonl</c> file.</param>
    /// <param name="videoRoot">The folder <c>clip_name</c>s are resolved in; the annotation file's folder when null.</param>
    /// <param name="maxWords">Words kept per caption (BLIP: 40).</param>
    /// <exception cref="DataFormatException">The file is missing or not JSON lines, it has no record, or a record lacks
    /// a field, has a field of the wrong type, or names a video that is missing or has no frame; the message names the
    /// file, the line and the field.</exception>
    public static VideoRetrievalDataset Load(string annotationPath, string? videoRoot = null, int maxWords = MaxWords)
    {
        ArgumentNullException.ThrowIfNull(annotationPath);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxWords, 1);
        string root = Path.GetFullPath(videoRoot ?? AnnotationReader.DefaultRoot(annotationPath));
        var videos = new List<VideoSource>();
        var videoIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var videoTexts = new List<List<int>>();
        var texts = new List<string>();
        var textToVideo = new List<int>();
        AnnotationReader.ForEachElement(annotationPath, new DataIssueLog(strict: true), (record, location) =>
        {
            DataFormatException Error(string reason, Exception? inner = null) => new(new DataIssue(annotationPath, location, reason), inner);
            if (record.ValueKind != JsonValueKind.Object) throw Error($"expected a JSON object, got {record.ValueKind}");
            if (!record.TryGetProperty("clip_name", out var clip)) throw Error("field 'clip_name' is missing");
            if (clip.ValueKind != JsonValueKind.String || clip.GetString() is not { Length: > 0 } clipName)
                throw Error($"field 'clip_name' must be a non-empty string, got {clip.ValueKind} {clip.GetRawText()}");
            if (!record.TryGetProperty("caption", out var caption)) throw Error("field 'caption' is missing");
            var captions = AnnotationReader.ParseCaptions(caption, "caption", out string? error) ?? throw Error(error!);

            if (!videoIndex.TryGetValue(clipName, out int video))
            {
                VideoSource source;
                try
                {
                    source = Resolve(root, clipName);
                    source.FramePaths();                                                // at least one frame, every listed frame present
                }
                catch (Exception e) when (e is IOException or InvalidDataException)
                {
                    throw Error($"field 'clip_name' '{clipName}': {e.Message}", e);
                }
                video = videos.Count;
                videoIndex.Add(clipName, video);
                videos.Add(source);
                videoTexts.Add([]);
            }
            foreach (string c in captions)
            {
                videoTexts[video].Add(texts.Count);
                texts.Add(TextCleaning.PreCaption(c, maxWords));
                textToVideo.Add(video);
            }
        });
        if (texts.Count == 0) throw new DataFormatException(new DataIssue(annotationPath, "file", "holds no record"));
        return new VideoRetrievalDataset(annotationPath, videos, texts, textToVideo, videoTexts);
    }

    /// <summary>
    /// The frame source of <paramref name="clipName"/> under <paramref name="videoRoot"/>: the folder
    /// <c>clip_name/</c>, or the list file <c>clip_name.txt</c> or <c>clip_name.frames</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">None exists, or more than one does.</exception>
    public static VideoSource Resolve(string videoRoot, string clipName)
    {
        ArgumentNullException.ThrowIfNull(videoRoot);
        ArgumentNullException.ThrowIfNull(clipName);
        string folder = Path.Combine(videoRoot, clipName);
        var found = new List<VideoSource>();
        if (Directory.Exists(folder)) found.Add(VideoSource.FromFolder(folder, clipName));
        foreach (string ext in FrameListExtensions)
            if (File.Exists(folder + ext)) found.Add(VideoSource.FromFrameList(folder + ext, clipName));
        if (found.Count == 1) return found[0];
        if (found.Count > 1)
            throw new FileNotFoundException($"the video is ambiguous: {string.Join(" and ", found.Select(f => f.Path))} all exist; keep one.");
        string mp4 = File.Exists(folder + ".mp4") ? $" ({folder}.mp4 exists, but video files are not decoded: extract its frames into {folder}{Path.DirectorySeparatorChar})" : "";
        throw new FileNotFoundException(
            $"no frames for the video: none of {folder}{Path.DirectorySeparatorChar}, {string.Join(", ", FrameListExtensions.Select(e => folder + e))} exists{mp4}.");
    }
}
