using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;

namespace BlipSharp.Checkpoints.Hub;

/// <summary>What a HEAD on <c>/resolve/</c> tells (huggingface_hub's <c>HfFileMetadata</c>).</summary>
internal sealed record HubFileMetadata(string Commit, string Etag, long Size, Uri Location);

/// <summary>
/// The HTTP side of huggingface_hub's <c>file_download.py</c>: <c>get_hf_file_metadata</c> (HEAD without following
/// redirects except relative ones), <c>http_get</c> (GET that resumes with <c>Range</c>), and
/// <c>hf_raise_for_status</c> (errors by <c>X-Error-Code</c>). The token goes only to the Hub's own host.
/// </summary>
internal sealed class HubHttp
{
    private const int MaxRedirects = 10;
    private const int MaxAttempts = 5;
    private const int BufferSize = 1 << 16;
    private const long ProgressStep = 1 << 20;

    private static readonly HttpClient Client = new(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
    })
    { Timeout = System.Threading.Timeout.InfiniteTimeSpan };

    private static readonly string UserAgent =
        $"BlipSharp/{typeof(HubHttp).Assembly.GetName().Version?.ToString(3) ?? "0"}; dotnet/{Environment.Version}";

    private readonly HubSettings _settings;
    private readonly string _repoId;

    public HubHttp(HubSettings settings, string repoId)
    {
        _settings = settings;
        _repoId = repoId;
    }

    /// <summary>huggingface_hub's <c>hf_hub_url</c>: <c>{endpoint}/{repo_id}/resolve/{quote(revision, safe="")}/{quote(filename)}</c>.</summary>
    public Uri FileUrl(string revision, string fileName) =>
        new($"{_settings.Endpoint}/{_repoId}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', fileName.Split('/').Select(Uri.EscapeDataString))}");

    /// <summary>HEAD the file; null when the repository has no such file (404 <c>EntryNotFound</c>), with the commit the server named.</summary>
    public HubFileMetadata? Head(string revision, string fileName, out string? missingAtCommit)
    {
        missingAtCommit = null;
        Uri url = FileUrl(revision, fileName);
        for (int hop = 0; ; hop++)
        {
            using var response = Send(HttpMethod.Head, url, sendToken: true, rangeFrom: null);
            int status = (int)response.StatusCode;
            string? location = Header(response, "Location");
            // Follow relative redirects only (a renamed repository); an absolute one points at the file's storage.
            if (status is >= 300 and < 400 && location is not null && IsRelative(location) && hop < MaxRedirects)
            {
                url = new Uri(url, location);
                continue;
            }
            string? commit = Header(response, "X-Repo-Commit");
            if (status >= 400)
            {
                var error = ErrorFor(response, url, fileName);
                if (error.Kind == HubErrorKind.EntryNotFound)
                {
                    missingAtCommit = commit;
                    return null;
                }
                throw error;
            }
            if (status is >= 300 and < 400 && location is null)
                throw new HubException(HubErrorKind.InvalidResponse, $"HEAD {url} answered {status} without a Location header.", url.ToString(), status);

            string? etag = HubNames.NormalizeEtag(Header(response, "X-Linked-Etag") ?? Header(response, "ETag"));
            string? sizeText = Header(response, "X-Linked-Size") ?? response.Content.Headers.ContentLength?.ToString();
            if (commit is null)
                throw new HubException(HubErrorKind.InvalidResponse,
                    $"HEAD {url} has no X-Repo-Commit header: the endpoint does not look like a Hugging Face Hub (check HF_ENDPOINT, proxy and firewall settings).", url.ToString(), status);
            if (!HubNames.IsCommitHash(commit))
                throw new HubException(HubErrorKind.InvalidResponse, $"HEAD {url}: X-Repo-Commit '{commit}' is not a 40-character commit hash.", url.ToString(), status);
            if (etag is null)
                throw new HubException(HubErrorKind.InvalidResponse, $"HEAD {url} has no ETag: the file's version cannot be identified.", url.ToString(), status);
            if (!HubNames.IsSafeEtag(etag))
                throw new HubException(HubErrorKind.InvalidResponse, $"HEAD {url}: ETag '{etag}' cannot name a cache file.", url.ToString(), status);
            if (!long.TryParse(sizeText, out long size) || size < 0)
                throw new HubException(HubErrorKind.InvalidResponse, $"HEAD {url} gives no file size (X-Linked-Size or Content-Length).", url.ToString(), status);
            Uri download = location is null ? url : new Uri(url, location);
            return new HubFileMetadata(commit, etag, size, download);
        }
    }

    /// <summary>
    /// huggingface_hub's <c>_download_to_tmp_and_move</c> + <c>http_get</c>: appends to <paramref name="incompletePath"/>,
    /// resuming with <c>Range: bytes=N-</c> from what it already holds (also after a break within this call, up to
    /// five attempts), then checks the size and, for an LFS file (sha256 etag), the sha256. A file that fails the
    /// check is deleted; the caller renames a good one into place.
    /// </summary>
    public void Download(HubFileMetadata file, string fileName, string incompletePath)
    {
        Exception? last = null;
        for (int attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            long have = File.Exists(incompletePath) ? new FileInfo(incompletePath).Length : 0;
            if (have > file.Size)
            {
                File.Delete(incompletePath);
                have = 0;
            }
            if (have == file.Size) break;
            try
            {
                GetInto(file, fileName, incompletePath, have);
                if (new FileInfo(incompletePath).Length >= file.Size) break;
                last = new IOException($"the connection closed after {new FileInfo(incompletePath).Length} of {file.Size} bytes");
            }
            catch (Exception e) when (e is HubException { Kind: HubErrorKind.Network }
                || (e is IOException or HttpRequestException or OperationCanceledException or ObjectDisposedException && e is not HubException))
            {
                last = e;
            }
            if (attempt < MaxAttempts) Thread.Sleep(100 * attempt);
        }

        long length = File.Exists(incompletePath) ? new FileInfo(incompletePath).Length : 0;
        if (length < file.Size)
            throw new HubException(HubErrorKind.Network,
                $"downloading {fileName} of '{_repoId}' from {file.Location} failed after {MaxAttempts} attempts ({length} of {file.Size} bytes kept in {incompletePath}; the next call resumes from there): {last?.Message}",
                file.Location.ToString(), inner: last);
        if (length > file.Size)
        {
            File.Delete(incompletePath);
            throw new HubException(HubErrorKind.IntegrityCheckFailed,
                $"{fileName} of '{_repoId}' from {file.Location} has {length} bytes, the Hub announced {file.Size}; it was not cached.", file.Location.ToString());
        }
        if (HubNames.IsSha256(file.Etag))
        {
            string actual;
            using (var stream = File.OpenRead(incompletePath)) actual = Convert.ToHexStringLower(SHA256.HashData(stream));
            if (actual != file.Etag)
            {
                File.Delete(incompletePath);
                throw new HubException(HubErrorKind.IntegrityCheckFailed,
                    $"{fileName} of '{_repoId}' from {file.Location} has sha256 {actual}, expected {file.Etag}; the corrupt download was deleted, not cached.",
                    file.Location.ToString());
            }
        }
    }

    private void GetInto(HubFileMetadata file, string fileName, string incompletePath, long have)
    {
        Uri url = file.Location;
        bool sendToken = SameAuthority(url, new Uri(_settings.Endpoint));
        for (int hop = 0; ; hop++)
        {
            var response = Send(HttpMethod.Get, url, sendToken, have > 0 ? have : null);
            try
            {
                int status = (int)response.StatusCode;
                if (status is >= 300 and < 400 && Header(response, "Location") is { } location && hop < MaxRedirects)
                {
                    var next = new Uri(url, location);
                    // requests' rebuild_auth: the token never follows a redirect to another host.
                    sendToken &= SameAuthority(url, next);
                    url = next;
                    continue;
                }
                if (status == 416 && have > 0)
                {
                    File.Delete(incompletePath); // the partial file does not fit the server's copy: start over
                    throw new IOException($"GET {url} with Range: bytes={have}- answered 416");
                }
                if (status >= 400) throw ErrorFor(response, url, fileName);
                if (status != 200 && status != 206)
                    throw new HubException(HubErrorKind.InvalidResponse, $"GET {url} answered {status}.", url.ToString(), status);

                FileMode mode = FileMode.Append;
                if (have > 0 && (status == 200 || response.Content.Headers.ContentRange?.From != have))
                {
                    mode = FileMode.Create; // the server ignored the Range: take the whole file
                    have = 0;
                }
                Copy(response, url, fileName, incompletePath, mode, have, file.Size);
                return;
            }
            finally
            {
                response.Dispose();
            }
        }
    }

    private void Copy(HttpResponseMessage response, Uri url, string fileName, string incompletePath, FileMode mode, long have, long total)
    {
        using var watchdog = new CancellationTokenSource();
        using var abort = watchdog.Token.Register(response.Dispose);
        using var body = response.Content.ReadAsStream();
        using var output = new FileStream(incompletePath, mode, FileAccess.Write, FileShare.None, BufferSize);
        var buffer = new byte[BufferSize];
        long reported = have;
        _settings.Progress?.Report(new HubDownloadProgress(_repoId, fileName, have, total));
        while (true)
        {
            watchdog.CancelAfter(_settings.Timeout);
            int n;
            try
            {
                n = body.Read(buffer, 0, buffer.Length);
            }
            catch (Exception e) when (watchdog.IsCancellationRequested)
            {
                output.Flush();
                throw new IOException($"GET {url}: no data for {_settings.Timeout.TotalSeconds:0.#} s", e);
            }
            if (n == 0) break;
            output.Write(buffer, 0, n);
            have += n;
            if (have - reported >= ProgressStep || have == total)
            {
                output.Flush();
                _settings.Progress?.Report(new HubDownloadProgress(_repoId, fileName, have, total));
                reported = have;
            }
        }
        if (reported != have) _settings.Progress?.Report(new HubDownloadProgress(_repoId, fileName, have, total));
    }

    private HttpResponseMessage Send(HttpMethod method, Uri url, bool sendToken, long? rangeFrom)
    {
        using var request = new HttpRequestMessage(method, url);
        request.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
        request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("identity"));
        if (sendToken && _settings.Token is { } token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (rangeFrom is { } from) request.Headers.Range = new RangeHeaderValue(from, null);
        using var timeout = new CancellationTokenSource(_settings.Timeout);
        try
        {
            return Client.Send(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            string why = e is OperationCanceledException ? $"no answer within {_settings.Timeout.TotalSeconds:0.#} s" : e.Message;
            throw new HubException(HubErrorKind.Network, $"{method} {url} failed: {why}. Check your connection, or set HF_HUB_OFFLINE=1 to use only the cache.", url.ToString(), inner: e);
        }
    }

    /// <summary>huggingface_hub's <c>hf_raise_for_status</c>, with messages that say what to do.</summary>
    private HubException ErrorFor(HttpResponseMessage response, Uri url, string fileName)
    {
        int status = (int)response.StatusCode;
        string? code = Header(response, "X-Error-Code");
        string? serverMessage = Header(response, "X-Error-Message");
        string detail = serverMessage is null ? "" : $" The Hub says: {serverMessage}";
        string tokenNote = _settings.Token is null
            ? "No token was sent: set HF_TOKEN (or HubOptions.Token, or run `huggingface-cli login`) to a token with access."
            : $"A token was sent (from {_settings.TokenSource}); check that it has access to the repository.";
        string u = url.ToString();
        return code switch
        {
            "EntryNotFound" => new(HubErrorKind.EntryNotFound, $"'{_repoId}' has no file {fileName} ({u}: HTTP {status}).{detail}", u, status),
            "RevisionNotFound" => new(HubErrorKind.RevisionNotFound, $"'{_repoId}' has no revision '{_settings.Revision}' ({u}: HTTP {status}).{detail}", u, status),
            "GatedRepo" => new(HubErrorKind.Unauthorized,
                $"'{_repoId}' is gated ({u}: HTTP {status}): accept its conditions at {_settings.Endpoint}/{_repoId}. {tokenNote}{detail}", u, status),
            "RepoNotFound" => new(HubErrorKind.RepositoryNotFound,
                $"repository '{_repoId}' not found at {_settings.Endpoint} ({u}: HTTP {status}); nor is there a local folder '{Path.GetFullPath(_repoId)}'. If the repository is private or gated: {tokenNote}{detail}", u, status),
            _ when status is 401 or 403 => new(HubErrorKind.Unauthorized,
                $"access to '{_repoId}' was refused ({u}: HTTP {status}); it may be private or gated. {tokenNote}{detail}", u, status),
            _ when status == 404 => new(HubErrorKind.EntryNotFound, $"'{_repoId}' has no file {fileName} ({u}: HTTP 404).{detail}", u, status),
            _ => new(HubErrorKind.Network, $"{u} answered HTTP {status}.{detail}", u, status),
        };
    }

    /// <summary>
    /// A Location without scheme and host (<c>/org/name/resolve/...</c>), as urllib's empty <c>netloc</c>. Not
    /// <see cref="Uri.TryCreate(string, UriKind, out Uri)"/>: on Unix it reads "/path" as an absolute file URI.
    /// </summary>
    private static bool IsRelative(string location) =>
        !location.StartsWith("//", StringComparison.Ordinal) && !location.Contains("://", StringComparison.Ordinal);

    private static bool SameAuthority(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase) && string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values) ? values.FirstOrDefault() : null;
}
