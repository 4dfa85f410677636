using System.Text;

namespace BlipSharp.Checkpoints.Hub;

/// <summary>
/// Where and how <see cref="HubModel"/> downloads from the Hugging Face Hub. Every setting left null is read
/// from the environment exactly as Python's <c>huggingface_hub</c> reads it, so both share one cache.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The Hub's address; null reads <c>HF_ENDPOINT</c>, else <see cref="HubModel.DefaultEndpoint"/>.</summary>
    public string? Endpoint { get; init; }

    /// <summary>
    /// The cache folder (holding <c>models--org--name</c> folders); null reads <c>HF_HUB_CACHE</c>, else
    /// <c>HF_HOME/hub</c>, else <c>$XDG_CACHE_HOME/huggingface/hub</c>, else <c>~/.cache/huggingface/hub</c>.
    /// </summary>
    public string? CacheDirectory { get; init; }

    /// <summary>
    /// Access token sent as <c>Authorization: Bearer</c> to the Hub (never to another host a download is
    /// redirected to). Null reads <c>HF_TOKEN</c>, else the file <c>HF_TOKEN_PATH</c> or <c>HF_HOME/token</c>
    /// (where <c>huggingface-cli login</c> writes it); an empty string sends no token.
    /// </summary>
    public string? Token { get; init; }

    /// <summary>
    /// True uses only the cache and makes no request; null reads <c>HF_HUB_OFFLINE</c> (or
    /// <c>TRANSFORMERS_OFFLINE</c>): <c>1</c>, <c>true</c>, <c>yes</c> or <c>on</c> mean offline.
    /// </summary>
    public bool? Offline { get; init; }

    /// <summary>Branch, tag or 40-character commit hash to download (default <c>main</c>).</summary>
    public string Revision { get; init; } = "main";

    /// <summary>How long to wait for the server to answer or to send more bytes (default 10 s, as huggingface_hub).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Receives the bytes done of each file being downloaded; the library itself never prints.</summary>
    public IProgress<HubDownloadProgress>? Progress { get; init; }

    // The token must never reach a log line through the record's generated ToString.
    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Endpoint = {Endpoint}, CacheDirectory = {CacheDirectory}, Token = {(Token is null ? "" : "***")}, ");
        builder.Append($"Offline = {Offline}, Revision = {Revision}, Timeout = {Timeout}, Progress = {Progress}");
        return true;
    }
}

/// <summary>Progress of one file's download.</summary>
/// <param name="RepoId">The repository the file belongs to.</param>
/// <param name="FileName">The file's path in the repository, e.g. <c>model.safetensors</c>.</param>
/// <param name="BytesDownloaded">Bytes in the local copy so far (a resumed download starts above 0).</param>
/// <param name="TotalBytes">The file's size.</param>
public sealed record HubDownloadProgress(string RepoId, string FileName, long BytesDownloaded, long TotalBytes);
