namespace BlipSharp.Checkpoints.Hub;

/// <summary>
/// One repository's folder in the huggingface_hub cache, laid out as <c>hf_hub_download</c> lays it out:
/// <code>
/// models--org--name/
///   blobs/&lt;etag&gt;                         file contents (git sha1 or, for LFS files, sha256)
///   refs/&lt;revision&gt;                      the commit a branch or tag pointed to
///   snapshots/&lt;commit&gt;/&lt;file&gt;            relative symlinks to ../../blobs/&lt;etag&gt;
///   .no_exist/&lt;commit&gt;/&lt;file&gt;            empty: the file is not in the repository at that commit
/// .locks/models--org--name/&lt;etag&gt;.lock   held while a blob downloads
/// </code>
/// Every path is checked to stay inside the repository folder.
/// </summary>
internal sealed class HubCache
{
    public HubCache(string cacheDirectory, string repoId)
    {
        RepoId = repoId;
        CacheDirectory = Path.GetFullPath(cacheDirectory);
        RepoFolder = Path.Combine(CacheDirectory, HubNames.RepoFolderName(repoId));
        LocksFolder = Path.Combine(CacheDirectory, ".locks", HubNames.RepoFolderName(repoId));
    }

    public string RepoId { get; }
    public string CacheDirectory { get; }
    public string RepoFolder { get; }
    public string LocksFolder { get; }

    public string RefPath(string revision) => Inside(RepoFolder, Path.Combine(RepoFolder, "refs", revision));

    public string SnapshotFolder(string commit) => Inside(RepoFolder, Path.Combine(RepoFolder, "snapshots", commit));

    public string PointerPath(string commit, string fileName) => Inside(SnapshotFolder(commit), Path.Combine(SnapshotFolder(commit), fileName));

    public string NoExistPath(string commit, string fileName) =>
        Inside(RepoFolder, Path.Combine(RepoFolder, ".no_exist", commit, fileName));

    public string BlobPath(string etag) => Inside(RepoFolder, Path.Combine(RepoFolder, "blobs", etag));

    public string LockPath(string etag) => Inside(LocksFolder, Path.Combine(LocksFolder, etag + ".lock"));

    /// <summary>The commit a revision names: itself when it is a commit hash, else what <c>refs/&lt;revision&gt;</c> holds.</summary>
    public string? CommitFor(string revision)
    {
        if (HubNames.IsCommitHash(revision)) return revision;
        string path = RefPath(revision);
        if (!File.Exists(path)) return null;
        string commit = File.ReadAllText(path).Trim();
        return HubNames.IsCommitHash(commit) ? commit : null;
    }

    /// <summary>The cached file (following its symlink), or null.</summary>
    public string? CachedFile(string commit, string fileName)
    {
        string pointer = PointerPath(commit, fileName);
        return File.Exists(pointer) ? pointer : null;
    }

    /// <summary>Whether the cache recorded that the file is not in the repository at that commit.</summary>
    public bool KnownMissing(string commit, string fileName) => File.Exists(NoExistPath(commit, fileName));

    /// <summary>huggingface_hub's <c>_cache_commit_hash_for_specific_revision</c>: refs/&lt;revision&gt; := commit, unless revision is the commit.</summary>
    public void WriteRef(string revision, string commit)
    {
        if (revision == commit) return;
        string path = RefPath(revision);
        if (File.Exists(path) && File.ReadAllText(path) == commit) return;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        File.WriteAllText(tmp, commit);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Records that <paramref name="fileName"/> is not in the repository at <paramref name="commit"/>.</summary>
    public void MarkMissing(string commit, string fileName)
    {
        string path = NoExistPath(commit, fileName);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (File.Open(path, FileMode.OpenOrCreate, FileAccess.Write)) { }
    }

    /// <summary>
    /// huggingface_hub's <c>_create_symlink</c>: <c>snapshots/&lt;commit&gt;/&lt;file&gt;</c> becomes a relative symlink to the
    /// blob (so the cache folder can move), or a copy where symlinks cannot be made.
    /// </summary>
    public void LinkPointer(string commit, string fileName, string etag)
    {
        string blob = BlobPath(etag);
        string pointer = PointerPath(commit, fileName);
        string folder = Path.GetDirectoryName(pointer)!;
        Directory.CreateDirectory(folder);
        string relative = Path.GetRelativePath(folder, blob);
        // Made under a temporary name and renamed over the pointer, so a reader never finds it missing.
        string tmp = pointer + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            try
            {
                File.CreateSymbolicLink(tmp, relative);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
            {
                File.Copy(blob, tmp);
            }
            File.Move(tmp, pointer, overwrite: true);
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    /// <summary>
    /// Takes the per-blob lock huggingface_hub takes (<c>.locks/models--org--name/&lt;etag&gt;.lock</c>), an exclusive
    /// handle (<see cref="FileShare.None"/>, an advisory <c>flock</c> on Unix) that the system drops if the process dies.
    /// </summary>
    public FileStream AcquireLock(string etag, TimeSpan maxWait)
    {
        string path = LockPath(etag);
        Directory.CreateDirectory(LocksFolder);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException e) when (File.Exists(path))
            {
                if (waited.Elapsed > maxWait)
                    throw new HubException(HubErrorKind.Network,
                        $"another download of '{RepoId}' held {path} for more than {maxWait.TotalMinutes:0} minutes; if no download is running, delete that file.", inner: e);
                Thread.Sleep(50);
            }
        }
    }

    private string Inside(string root, string path)
    {
        string full = Path.GetFullPath(path);
        string prefix = Path.GetFullPath(root).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (!full.StartsWith(prefix, StringComparison.Ordinal) && full != prefix.TrimEnd(Path.DirectorySeparatorChar))
            throw new ArgumentException($"'{path}' would lie outside the cache folder of '{RepoId}' ({root}); refusing to use it.");
        return full;
    }
}
