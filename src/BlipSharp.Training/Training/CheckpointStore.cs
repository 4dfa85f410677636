using System.Globalization;
using System.Text.RegularExpressions;

namespace BlipSharp.Training.Training;

/// <summary>
/// The checkpoint folders of a run: <c>checkpoints/step-00000100/</c>, ... and a <c>latest</c> file naming the newest.
/// A checkpoint is written into a temporary folder, its files flushed to disk, and the folder renamed into place
/// (a rename within one file system is atomic); only then does <c>latest</c> move to it, itself by writing a
/// temporary file and renaming it. A crash at any point leaves the previous checkpoint and <c>latest</c> intact;
/// the next run deletes the leftover temporary folder.
/// </summary>
public sealed partial class CheckpointStore
{
    /// <summary>The file naming the newest checkpoint folder.</summary>
    public const string LatestFile = "latest";

    /// <summary>The file written last into every checkpoint: a folder without it is incomplete and ignored.</summary>
    public const string StateFile = "trainer_state.json";

    private const string TempPrefix = ".tmp-";

    /// <summary>Opens (without creating) the checkpoint folder <paramref name="directory"/>.</summary>
    /// <param name="directory">Usually <c>RUN/checkpoints</c>.</param>
    public CheckpointStore(string directory) => Directory = Path.GetFullPath(directory);

    /// <summary>The folder holding the checkpoints.</summary>
    public string Directory { get; }

    /// <summary>The folder name of the checkpoint after <paramref name="step"/> optimizer steps.</summary>
    /// <param name="step">Steps completed.</param>
    public static string NameOf(long step) => "step-" + step.ToString("D8", CultureInfo.InvariantCulture);

    /// <summary>
    /// Writes a checkpoint atomically: <paramref name="write"/> fills a temporary folder (it must write
    /// <see cref="StateFile"/> last), which is then renamed to <paramref name="name"/> and made the latest. Older
    /// checkpoints beyond <paramref name="keep"/> are deleted afterwards.
    /// </summary>
    /// <param name="name">The checkpoint's folder name, e.g. <see cref="NameOf"/>.</param>
    /// <param name="write">Writes the files into the folder it is given.</param>
    /// <param name="keep">How many checkpoints to keep (at least 1).</param>
    /// <returns>The checkpoint's folder.</returns>
    public string Save(string name, Action<string> write, int keep)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        System.IO.Directory.CreateDirectory(Directory);
        string final = Path.Combine(Directory, name);
        if (IsComplete(final))
        {
            SetLatest(name);
            return final;
        }
        if (System.IO.Directory.Exists(final)) System.IO.Directory.Delete(final, recursive: true); // an incomplete leftover
        string temp = Path.Combine(Directory, TempPrefix + name + "-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(temp);
        try
        {
            write(temp);
            if (!File.Exists(Path.Combine(temp, StateFile)))
                throw new InvalidOperationException($"a checkpoint must contain {StateFile}");
            foreach (string file in System.IO.Directory.EnumerateFiles(temp)) FlushToDisk(file);
            System.IO.Directory.Move(temp, final);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        SetLatest(name);
        Prune(keep);
        return final;
    }

    /// <summary>The newest complete checkpoint: the one <c>latest</c> names, else the highest-numbered complete folder; null if none.</summary>
    public string? Latest()
    {
        string pointer = Path.Combine(Directory, LatestFile);
        if (File.Exists(pointer))
        {
            string name = File.ReadAllText(pointer).Trim();
            string dir = Path.Combine(Directory, name);
            if (name.Length > 0 && !name.Contains('/') && IsComplete(dir)) return dir;
        }
        return List().LastOrDefault();
    }

    /// <summary>Complete checkpoint folders, oldest (lowest step) first.</summary>
    public IReadOnlyList<string> List()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        return System.IO.Directory.EnumerateDirectories(Directory)
            .Select(d => (Dir: d, Match: StepName().Match(Path.GetFileName(d))))
            .Where(x => x.Match.Success && IsComplete(x.Dir))
            .OrderBy(x => long.Parse(x.Match.Groups[1].Value, CultureInfo.InvariantCulture))
            .Select(x => x.Dir)
            .ToList();
    }

    /// <summary>Deletes temporary folders left by an interrupted write.</summary>
    /// <returns>How many were deleted.</returns>
    public int DeleteLeftovers()
    {
        if (!System.IO.Directory.Exists(Directory)) return 0;
        int n = 0;
        foreach (string d in System.IO.Directory.EnumerateDirectories(Directory, TempPrefix + "*"))
        {
            TryDelete(d);
            n++;
        }
        foreach (string f in System.IO.Directory.EnumerateFiles(Directory, LatestFile + TempPrefix + "*"))
            File.Delete(f);
        return n;
    }

    /// <summary>Whether <paramref name="dir"/> is a finished checkpoint (its state file exists).</summary>
    /// <param name="dir">A folder.</param>
    public static bool IsComplete(string dir) => File.Exists(Path.Combine(dir, StateFile));

    private void SetLatest(string name)
    {
        string pointer = Path.Combine(Directory, LatestFile);
        string temp = pointer + TempPrefix + Guid.NewGuid().ToString("N")[..8];
        using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
        {
            fs.Write(System.Text.Encoding.UTF8.GetBytes(name + "\n"));
            fs.Flush(flushToDisk: true);
        }
        File.Move(temp, pointer, overwrite: true);
    }

    private void Prune(int keep)
    {
        var all = List();
        string? latest = Latest();
        foreach (string old in all.Take(Math.Max(0, all.Count - keep)))
        {
            if (old == latest) continue;
            File.Delete(Path.Combine(old, StateFile)); // first: a half-deleted folder must not look complete
            TryDelete(old);
        }
    }

    private static void FlushToDisk(string file)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        fs.Flush(flushToDisk: true);
    }

    private static void TryDelete(string dir)
    {
        try
        {
            if (System.IO.Directory.Exists(dir)) System.IO.Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    [GeneratedRegex(@"^step-(\d+)$")]
    private static partial Regex StepName();
}
