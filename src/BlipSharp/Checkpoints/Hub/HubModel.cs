namespace BlipSharp.Checkpoints.Hub;

/// <summary>
/// Finds model files the way <c>from_pretrained</c> does: an existing local folder is used as it is; otherwise the
/// string is a Hugging Face repo id (<c>Salesforce/blip-image-captioning-base</c>) whose files are downloaded into,
/// or read from, the cache Python's <c>huggingface_hub</c> uses (same folder, same layout, same environment
/// variables), so a cache filled by either serves both.
/// </summary>
public static class HubModel
{
    /// <summary>The Hub used when neither <see cref="HubOptions.Endpoint"/> nor <c>HF_ENDPOINT</c> names another.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>
    /// The folder holding a BLIP model's files (<see cref="HubFileSet.All"/>): <paramref name="pathOrRepoId"/> itself
    /// when it is an existing folder, else the cache snapshot of that repository, downloaded as needed.
    /// </summary>
    /// <param name="pathOrRepoId">A local folder, or a repo id (<c>name</c> or <c>org/name</c>).</param>
    /// <param name="options">Endpoint, cache, token, revision, offline mode, progress; null reads the environment.</param>
    /// <exception cref="ArgumentException">Neither an existing folder nor a valid repo id (e.g. contains <c>..</c>).</exception>
    /// <exception cref="DirectoryNotFoundException">A path (absolute, or starting with <c>.</c>) that does not exist.</exception>
    /// <exception cref="HubException">The download failed, or offline and not cached; the message says how to fix it.</exception>
    public static string Resolve(string pathOrRepoId, HubOptions? options = null) => Resolve(pathOrRepoId, HubFileSet.All, options);

    /// <summary>As <see cref="Resolve(string, HubOptions?)"/>, fetching only <paramref name="files"/>.</summary>
    /// <param name="pathOrRepoId">A local folder, or a repo id (<c>name</c> or <c>org/name</c>).</param>
    /// <param name="files">Which files the folder must hold, e.g. <see cref="HubFileSet.Model"/> or <see cref="HubFileSet.Of"/>.</param>
    /// <param name="options">Endpoint, cache, token, revision, offline mode, progress; null reads the environment.</param>
    public static string Resolve(string pathOrRepoId, HubFileSet files, HubOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(pathOrRepoId);
        ArgumentNullException.ThrowIfNull(files);
        if (Directory.Exists(pathOrRepoId)) return pathOrRepoId;
        if (HubNames.RepoIdError(pathOrRepoId) is { } error)
        {
            if (HubNames.LooksLikePath(pathOrRepoId))
                throw new DirectoryNotFoundException($"model folder not found: {Path.GetFullPath(pathOrRepoId)} (nor is '{pathOrRepoId}' a Hugging Face repo id: {error}).");
            throw new ArgumentException(
                $"'{pathOrRepoId}' is neither an existing folder nor a Hugging Face repo id ('name' or 'org/name'): {error}.", nameof(pathOrRepoId));
        }
        return Download(pathOrRepoId, files, options);
    }

    /// <summary>
    /// huggingface_hub's <c>hf_hub_download</c>: the cached path (<c>snapshots/&lt;commit&gt;/&lt;file&gt;</c>) of one file
    /// of a repository, downloaded if needed.
    /// </summary>
    /// <param name="repoId">A repo id (<c>name</c> or <c>org/name</c>).</param>
    /// <param name="fileName">The file's path in the repository, with '/' between folders.</param>
    /// <param name="options">Endpoint, cache, token, revision, offline mode, progress; null reads the environment.</param>
    /// <exception cref="HubException">With <see cref="HubErrorKind.EntryNotFound"/> when the repository has no such file.</exception>
    public static string DownloadFile(string repoId, string fileName, HubOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(repoId);
        ArgumentNullException.ThrowIfNull(fileName);
        HubNames.CheckRepoId(repoId, nameof(repoId));
        HubNames.CheckFileName(fileName, nameof(fileName));
        return Path.Combine(Download(repoId, HubFileSet.Of(fileName), options), fileName);
    }

    /// <summary>The cache folder <paramref name="options"/> and the environment select (the one huggingface_hub uses).</summary>
    public static string CacheDirectory(HubOptions? options = null) => HubSettings.From(options).CacheDirectory;

    /// <summary>
    /// The loaders' entry: an existing folder, or a string shaped like a path (absolute, starting with <c>.</c> or
    /// <c>~</c>), is returned unchanged so that the loader reports a missing folder in its usual way; a repo id is
    /// resolved through the Hub.
    /// </summary>
    internal static string ResolveForLoading(string pathOrRepoId, HubFileSet files, HubOptions? options)
    {
        ArgumentNullException.ThrowIfNull(pathOrRepoId);
        if (Directory.Exists(pathOrRepoId) || (HubNames.RepoIdError(pathOrRepoId) is not null && HubNames.LooksLikePath(pathOrRepoId)))
            return pathOrRepoId;
        return Resolve(pathOrRepoId, files, options);
    }

    private static string Download(string repoId, HubFileSet files, HubOptions? options)
    {
        if (files.Required.Count == 0 && files.Optional.Count == 0 && !files.IncludeWeights)
            throw new ArgumentException("the file set names no file", nameof(files));
        foreach (string file in files.Required.Concat(files.Optional)) HubNames.CheckFileName(file, nameof(files));
        return new HubRepository(HubSettings.From(options), repoId).Resolve(files);
    }
}
