namespace BlipSharp.Checkpoints.Hub;

/// <summary>Why a Hub download failed.</summary>
public enum HubErrorKind
{
    /// <summary>The server could not be reached, timed out, answered 5xx, or a download kept breaking off.</summary>
    Network,

    /// <summary>401/403: the repository is gated or private and no token, or a token without access, was sent.</summary>
    Unauthorized,

    /// <summary>The repository does not exist (or is private and no token was sent).</summary>
    RepositoryNotFound,

    /// <summary>The branch, tag or commit does not exist in the repository.</summary>
    RevisionNotFound,

    /// <summary>A required file is not in the repository.</summary>
    EntryNotFound,

    /// <summary>Offline (or the Hub unreachable) and the cache has no complete copy of the files.</summary>
    NotCached,

    /// <summary>A downloaded file has the wrong size or sha256; it was not put in the cache.</summary>
    IntegrityCheckFailed,

    /// <summary>The server's answer lacks a header the cache needs, or has one that is not safe to use as a path.</summary>
    InvalidResponse,
}

/// <summary>A Hugging Face Hub download or cache look-up failed; the message says what was asked, where, and how to fix it.</summary>
public sealed class HubException : IOException
{
    /// <summary>Creates the exception.</summary>
    public HubException(HubErrorKind kind, string message, string? url = null, int? statusCode = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        Url = url;
        StatusCode = statusCode;
    }

    /// <summary>Why it failed.</summary>
    public HubErrorKind Kind { get; }

    /// <summary>The URL of the failed request, if there was one.</summary>
    public string? Url { get; }

    /// <summary>The HTTP status of the failed request, if the server answered.</summary>
    public int? StatusCode { get; }
}
