using System.Text.Json;

namespace BlipSharp.Checkpoints.Hub;

/// <summary>
/// Resolves a <see cref="HubFileSet"/> of one repository into a snapshot folder, as <c>hf_hub_download</c> resolves
/// one file: HEAD for the commit and etag, download into <c>blobs/</c> under a lock, link <c>snapshots/</c>.
/// The first answer pins the commit; later files are looked up at that commit, so a snapshot never mixes
/// commits, and files already in it need no request (as transformers' <c>cached_file</c> with its commit hash).
/// When the Hub cannot be asked (offline, no network, 5xx, 401/403/404 on the repository) the cache answers.
/// </summary>
internal sealed class HubRepository
{
    private static readonly TimeSpan LockWait = TimeSpan.FromHours(1);

    private readonly HubSettings _settings;
    private readonly HubCache _cache;
    private readonly HubHttp _http;
    private readonly string _repoId;
    private string? _commit;

    public HubRepository(HubSettings settings, string repoId)
    {
        _settings = settings;
        _repoId = repoId;
        _cache = new HubCache(settings.CacheDirectory, repoId);
        _http = new HubHttp(settings, repoId);
    }

    /// <summary>The snapshot folder holding every required file (and the optional ones the repository has).</summary>
    public string Resolve(HubFileSet files)
    {
        if (_settings.Offline) return FromCache(files, cause: null);
        try
        {
            foreach (string file in files.Required) Fetch(file, required: true);
            foreach (string file in files.Optional) Fetch(file, required: false);
            if (files.IncludeWeights) FetchWeights();
        }
        catch (HeadFailedException e)
        {
            return FromCache(files, e.Error);
        }
        return _cache.SnapshotFolder(_commit!);
    }

    private string? Fetch(string fileName, bool required)
    {
        if ((_commit ?? (HubNames.IsCommitHash(_settings.Revision) ? _settings.Revision : null)) is { } known)
        {
            if (_cache.CachedFile(known, fileName) is { } cached)
            {
                _commit = known;
                return cached;
            }
            if (!required && _cache.KnownMissing(known, fileName))
            {
                _commit = known;
                return null;
            }
        }

        string revision = _commit ?? _settings.Revision;
        HubFileMetadata? meta;
        string? missingAt;
        try
        {
            meta = _http.Head(revision, fileName, out missingAt);
        }
        catch (HubException e) when (e.Kind is HubErrorKind.Network or HubErrorKind.Unauthorized or HubErrorKind.RepositoryNotFound or HubErrorKind.InvalidResponse)
        {
            throw new HeadFailedException(e);
        }

        if (meta is null)
        {
            if (HubNames.IsCommitHash(missingAt))
            {
                _cache.MarkMissing(missingAt!, fileName);
                _cache.WriteRef(revision, missingAt!);
                _commit ??= missingAt;
            }
            if (required)
                throw new HubException(HubErrorKind.EntryNotFound,
                    $"'{_repoId}' has no {fileName} at revision '{revision}' ({_http.FileUrl(revision, fileName)} answered 404).", _http.FileUrl(revision, fileName).ToString(), 404);
            return null;
        }

        _cache.WriteRef(revision, meta.Commit);
        _commit ??= meta.Commit;
        if (_cache.CachedFile(meta.Commit, fileName) is { } pointer) return pointer;

        string blob = _cache.BlobPath(meta.Etag);
        if (!File.Exists(blob))
        {
            using var held = _cache.AcquireLock(meta.Etag, LockWait);
            if (!File.Exists(blob))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
                string incomplete = blob + ".incomplete";
                _http.Download(meta, fileName, incomplete);
                File.Move(incomplete, blob, overwrite: true);
            }
            _cache.LinkPointer(meta.Commit, fileName, meta.Etag);
        }
        else
        {
            _cache.LinkPointer(meta.Commit, fileName, meta.Etag);
        }
        return _cache.PointerPath(meta.Commit, fileName);
    }

    private void FetchWeights()
    {
        foreach (string name in HubFileSet.WeightFiles)
        {
            if (Fetch(name, required: false) is not { } path) continue;
            if (name.EndsWith(".index.json", StringComparison.Ordinal))
            {
                foreach (string shard in ShardsOf(path)) Fetch(shard, required: true);
            }
            return;
        }
        throw new HubException(HubErrorKind.EntryNotFound,
            $"'{_repoId}' has no weights at revision '{_settings.Revision}' (commit {_commit}): none of {string.Join(", ", HubFileSet.WeightFiles)}.");
    }

    /// <summary>The shard files a <c>model.safetensors.index.json</c> names; each must be a plain path inside the repository.</summary>
    private List<string> ShardsOf(string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new HubException(HubErrorKind.InvalidResponse, $"{indexPath} of '{_repoId}' has no weight_map.");
            var shards = map.EnumerateObject().Select(p => p.Value.GetString() ?? "").Distinct(StringComparer.Ordinal).ToList();
            foreach (string shard in shards)
            {
                if (HubNames.PathError(shard) is { } error)
                    throw new HubException(HubErrorKind.InvalidResponse, $"{indexPath} of '{_repoId}' names shard '{shard}', which is not a file inside the repository: {error}.");
            }
            return shards;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new HubException(HubErrorKind.InvalidResponse, $"{indexPath} of '{_repoId}' is not a valid safetensors index: {e.Message}", inner: e);
        }
    }

    /// <summary>huggingface_hub's fallback when it cannot (or may not) ask the Hub: <c>refs/&lt;revision&gt;</c> -> <c>snapshots/&lt;commit&gt;</c>.</summary>
    private string FromCache(HubFileSet files, HubException? cause)
    {
        string? commit = _cache.CommitFor(_settings.Revision);
        var missing = new List<string>();
        if (commit is not null)
        {
            missing.AddRange(files.Required.Where(f => _cache.CachedFile(commit, f) is null));
            if (files.IncludeWeights && MissingWeights(commit) is { } weights) missing.Add(weights);
            if (missing.Count == 0) return _cache.SnapshotFolder(commit);
        }
        else
        {
            missing.AddRange(files.Required);
            if (files.IncludeWeights) missing.Add(WeightsDescription);
        }
        if (cause is { Kind: HubErrorKind.Unauthorized or HubErrorKind.RepositoryNotFound }) throw cause;

        string why = cause is null
            ? "offline mode is on (HubOptions.Offline, or HF_HUB_OFFLINE=1)"
            : $"the Hub could not be asked ({cause.Message})";
        string looked = commit is null
            ? $"Looked for {_cache.RefPath(_settings.Revision)}, which does not exist (no download of revision '{_settings.Revision}' was cached)."
            : HubNames.IsCommitHash(_settings.Revision)
                ? $"Looked in {_cache.SnapshotFolder(commit)}."
                : $"Looked in {_cache.SnapshotFolder(commit)} (refs/{_settings.Revision} -> {commit}).";
        string revisionArgument = _settings.Revision == "main" ? "" : $" --revision {_settings.Revision}";
        string fix = cause is null
            ? "run once online (without HF_HUB_OFFLINE / HubOptions.Offline)"
            : "run again with a working connection";
        throw new HubException(HubErrorKind.NotCached,
            $"{why}, and the Hugging Face cache has no complete copy of '{_repoId}' at revision '{_settings.Revision}': missing {string.Join(", ", missing)}. " +
            $"{looked} To fix: {fix}; or fill that cache with `HF_HUB_CACHE={_settings.CacheDirectory} huggingface-cli download {_repoId}{revisionArgument}`; " +
            "or pass the path of a local folder that holds the files.",
            cause?.Url, cause?.StatusCode, cause);
    }

    private const string WeightsDescription = "model.safetensors (or model.safetensors.index.json with its shards, or pytorch_model.bin)";

    private string? MissingWeights(string commit)
    {
        foreach (string name in HubFileSet.WeightFiles)
        {
            if (_cache.CachedFile(commit, name) is not { } path) continue;
            if (!name.EndsWith(".index.json", StringComparison.Ordinal)) return null;
            var absent = ShardsOf(path).Where(s => _cache.CachedFile(commit, s) is null).ToList();
            return absent.Count == 0 ? null : string.Join(", ", absent);
        }
        return WeightsDescription;
    }

    /// <summary>A HEAD that failed in a way that lets the cache answer instead (as huggingface_hub's <c>head_call_error</c>).</summary>
    private sealed class HeadFailedException(HubException error) : Exception(error.Message, error)
    {
        public HubException Error { get; } = error;
    }
}
