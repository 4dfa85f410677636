using BlipSharp.Processing;
using BlipSharp.Training.Data;
using static TorchSharp.torch;

namespace BlipSharp.Training.Retrieval;

/// <summary>How a <see cref="VideoSource"/> stores its frames.</summary>
public enum VideoSourceKind
{
    /// <summary>A folder of frame images, in ordinal order of their file names.</summary>
    FrameFolder,

    /// <summary>A text file listing one frame image path per line.</summary>
    FrameList,
}

/// <summary>
/// A video given as already-extracted frames (video files are not decoded). Either a <b>frame folder</b>: every file
/// directly in the folder whose extension is one of <see cref="FrameExtensions"/> (case-insensitive), sorted by file
/// name with ordinal comparison (so name frames with zero-padded numbers: <c>000.png</c>, <c>001.png</c>, ...); or a
/// <b>frame list</b>: a UTF-8 text file with one image path per line, relative to the list file's folder (absolute
/// paths are kept), where blank lines and lines starting with <c>#</c> (after trimming) are ignored.
/// </summary>
public sealed class VideoSource
{
    /// <summary>File extensions a frame folder's images are recognised by.</summary>
    public static IReadOnlyList<string> FrameExtensions { get; } = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];

    private VideoSource(string name, string path, VideoSourceKind kind)
    {
        Name = name;
        Path = path;
        Kind = kind;
    }

    /// <summary>The video's name (MSRVTT's <c>clip_name</c>, or the folder / list file name).</summary>
    public string Name { get; }

    /// <summary>The full path of the folder or list file.</summary>
    public string Path { get; }

    /// <summary>Folder or list file.</summary>
    public VideoSourceKind Kind { get; }

    /// <summary>A folder of frame images.</summary>
    /// <param name="folder">The folder.</param>
    /// <param name="name">The video's name; the folder's name when null.</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public static VideoSource FromFolder(string folder, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string full = System.IO.Path.GetFullPath(folder);
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"{full}: the video's frame folder does not exist.");
        return new VideoSource(name ?? System.IO.Path.GetFileName(full.TrimEnd(System.IO.Path.DirectorySeparatorChar)), full, VideoSourceKind.FrameFolder);
    }

    /// <summary>A frame-list file.</summary>
    /// <param name="listFile">The list file.</param>
    /// <param name="name">The video's name; the file name without extension when null.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static VideoSource FromFrameList(string listFile, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(listFile);
        string full = System.IO.Path.GetFullPath(listFile);
        if (!File.Exists(full)) throw new FileNotFoundException($"{full}: the video's frame-list file does not exist.", full);
        return new VideoSource(name ?? System.IO.Path.GetFileNameWithoutExtension(full), full, VideoSourceKind.FrameList);
    }

    /// <summary>A folder (<see cref="FromFolder"/>) or else a frame-list file (<see cref="FromFrameList"/>).</summary>
    /// <param name="path">The folder or list file.</param>
    /// <exception cref="FileNotFoundException">Neither exists.</exception>
    public static VideoSource Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) return FromFolder(path);
        if (File.Exists(path)) return FromFrameList(path);
        throw new FileNotFoundException($"{System.IO.Path.GetFullPath(path)}: no frame folder or frame-list file there.", path);
    }

    /// <summary>Every frame's full path, in order (read from disk on each call).</summary>
    /// <exception cref="InvalidDataException">The video has no frames, or a listed frame does not exist (naming the list file and line).</exception>
    public IReadOnlyList<string> FramePaths()
    {
        var frames = new List<string>();
        if (Kind == VideoSourceKind.FrameFolder)
        {
            frames.AddRange(Directory.EnumerateFiles(Path)
                .Where(f => FrameExtensions.Contains(System.IO.Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal));
            if (frames.Count == 0)
                throw new InvalidDataException($"{Path}: the frame folder holds no image ({string.Join(", ", FrameExtensions)}).");
            return frames;
        }
        string root = System.IO.Path.GetDirectoryName(Path)!;
        int lineNumber = 0;
        foreach (string raw in File.ReadLines(Path))
        {
            lineNumber++;
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            string frame = System.IO.Path.GetFullPath(line, root);
            if (!File.Exists(frame)) throw new InvalidDataException($"{Path}, line {lineNumber}: frame '{line}' does not exist ({frame}).");
            frames.Add(frame);
        }
        if (frames.Count == 0) throw new InvalidDataException($"{Path}: the frame list names no frame.");
        return frames;
    }

    /// <summary>The frames BLIP's uniform sampling picks (<see cref="VideoFrameSampling.Uniform"/>), in order.</summary>
    /// <param name="numFrames">BLIP's <c>num_frm</c> (MSRVTT test: 8).</param>
    public IReadOnlyList<string> SampleFramePaths(int numFrames)
    {
        var all = FramePaths();
        return VideoFrameSampling.Uniform(all.Count, numFrames).Select(i => all[i]).ToList();
    }

    /// <summary>
    /// The sampled frames decoded and transformed: a new float32 CPU tensor (F, 3, S, S), F =
    /// <see cref="VideoFrameSampling.Uniform"/>(frame count, <paramref name="numFrames"/>).Length.
    /// </summary>
    /// <param name="numFrames">BLIP's <c>num_frm</c>.</param>
    /// <param name="transform">The frame transform (BLIP: <see cref="BlipEvalTransform"/> at the model's image size).</param>
    /// <param name="decoder">Image decoding options; the defaults when null.</param>
    public Tensor LoadFrames(int numFrames, IImageTransform transform, ImageDecoderOptions? decoder = null)
    {
        ArgumentNullException.ThrowIfNull(transform);
        var paths = SampleFramePaths(numFrames);
        int s = transform.OutputSize, plane = 3 * s * s;
        var values = new float[paths.Count * plane];
        for (int f = 0; f < paths.Count; f++)
            transform.Apply(ImageDecoder.Decode(paths[f], decoder), new Random(0), values.AsSpan(f * plane, plane));
        return tensor(values, [paths.Count, 3, s, s]);                                  // (F, 3, S, S)
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Path})";
}

/// <summary>Frame sampling of salesforce/BLIP's <c>VideoDataset._load_video_from_path_decord</c>.</summary>
public static class VideoFrameSampling
{
    /// <summary>
    /// BLIP's <c>'uniform'</c> strategy, <c>np.arange(0, vlen, vlen / num_frm, dtype=int)</c>, reproduced with
    /// numpy's own arithmetic, which is not <c>np.arange(0, vlen, vlen / num_frm).astype(int)</c>:
    /// the length is <c>ceil(vlen / (vlen / num_frm))</c> in double precision, the first two values are
    /// <c>0</c> and <c>int(vlen / num_frm)</c>, and numpy fills the rest with that integer step, so index
    /// <c>i</c> is <c>i * floor(vlen / num_frm)</c>. Consequences: for vlen 10 and 4 frames BLIP reads frames
    /// 0, 2, 4, 6 (not 0, 2, 5, 7); when the video has fewer frames than <c>num_frm</c> the step is 0 and
    /// <b>every sampled frame is frame 0</b> (vlen 3, 8 frames: eight copies of frame 0, not 0,0,0,1,1,1,2,2);
    /// and for some pairs the rounding of <c>vlen / (vlen / num_frm)</c> gives <c>num_frm + 1</c> frames
    /// (vlen 17, 7 frames: 8 frames 0, 2, ..., 14; never for 8 frames and vlen up to 5,000).
    /// </summary>
    /// <param name="frameCount">The video's frame count <c>vlen</c>, at least 1.</param>
    /// <param name="numFrames">BLIP's <c>num_frm</c>, at least 1.</param>
    /// <returns>The 0-based frame indices.</returns>
    public static int[] Uniform(int frameCount, int numFrames)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(frameCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(numFrames, 1);
        double step = (double)frameCount / numFrames;                                   // vlen / num_frm
        int length = (int)Math.Ceiling(frameCount / step);                              // numpy: ceil((stop - start) / step)
        int delta = (int)step;                                                          // int(start + step) - int(start)
        var indices = new int[length];
        for (int i = 0; i < length; i++) indices[i] = i * delta;
        return indices;
    }
}
