namespace BlipSharp.Checkpoints.Hub;

/// <summary>
/// Checks the names that become URLs and cache paths: repo ids (huggingface_hub's <c>validate_repo_id</c>),
/// file names, revisions, commit hashes and etags. Anything that could leave the cache folder is refused.
/// </summary>
internal static class HubNames
{
    private const int MaxNameLength = 96;

    /// <summary>Why <paramref name="repoId"/> is not a Hub repo id (<c>name</c> or <c>org/name</c>), or null when it is one.</summary>
    public static string? RepoIdError(string? repoId)
    {
        if (string.IsNullOrEmpty(repoId)) return "it is empty";
        string[] parts = repoId.Split('/');
        if (parts.Length > 2) return "a repo id has at most one '/' ('name' or 'org/name')";
        foreach (string part in parts)
        {
            if (part.Length == 0) return "a part before or after '/' is empty";
            char bad = part.FirstOrDefault(c => !IsNameChar(c));
            if (bad != default) return $"'{bad}' is not allowed: use letters, digits, '-', '_' and '.'";
            if (!IsWordChar(part[0]) || !IsWordChar(part[^1])) return $"'{part}' must start and end with a letter, digit or '_'";
        }
        if (parts[^1].Length > MaxNameLength) return $"the name is longer than {MaxNameLength} characters";
        if (repoId.Contains("--", StringComparison.Ordinal) || repoId.Contains("..", StringComparison.Ordinal)) return "'--' and '..' are not allowed";
        if (repoId.EndsWith(".git", StringComparison.Ordinal)) return "it must not end with '.git'";
        return null;
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="repoId"/> is a valid repo id.</summary>
    public static void CheckRepoId(string repoId, string paramName)
    {
        if (RepoIdError(repoId) is { } error)
            throw new ArgumentException($"'{repoId}' is not a Hugging Face repo id ('name' or 'org/name'): {error}.", paramName);
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="fileName"/> is a relative path inside a repository.</summary>
    public static void CheckFileName(string fileName, string paramName)
    {
        if (PathError(fileName) is { } error)
            throw new ArgumentException($"'{fileName}' is not a file name inside a repository: {error}.", paramName);
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="revision"/> can name a ref file.</summary>
    public static void CheckRevision(string revision, string paramName)
    {
        if (PathError(revision) is { } error)
            throw new ArgumentException($"'{revision}' is not a revision (branch, tag or commit hash): {error}.", paramName);
    }

    /// <summary>Why <paramref name="path"/> is not a safe relative '/'-separated path, or null.</summary>
    public static string? PathError(string? path)
    {
        if (string.IsNullOrEmpty(path)) return "it is empty";
        if (path.Contains('\\')) return "backslashes are not allowed";
        if (path.Any(char.IsControl)) return "control characters are not allowed";
        if (path.StartsWith('/') || Path.IsPathRooted(path)) return "absolute paths are not allowed";
        foreach (string segment in path.Split('/'))
        {
            if (segment.Length == 0) return "empty path segments ('//' or a trailing '/') are not allowed";
            if (segment is "." or "..") return "'.' and '..' segments are not allowed";
        }
        return null;
    }

    /// <summary>A full 40-character lowercase hex commit hash.</summary>
    public static bool IsCommitHash(string? value) => value is { Length: 40 } && value.All(IsLowerHex);

    /// <summary>A 64-character sha256 (the etag of files stored with Git LFS).</summary>
    public static bool IsSha256(string? value) => value is { Length: 64 } && value.All(IsLowerHex);

    /// <summary>
    /// huggingface_hub's <c>_normalize_etag</c> (plus the weak prefix): <c>W/"abc"</c> and <c>"abc"</c> give <c>abc</c>.
    /// </summary>
    public static string? NormalizeEtag(string? etag)
    {
        if (etag is null) return null;
        string value = etag.Trim();
        if (value.StartsWith("W/", StringComparison.Ordinal)) value = value[2..];
        return value.Trim('"');
    }

    /// <summary>Whether an etag can be a blob's file name: letters, digits, '-', '_' and '.', not starting with '.'.</summary>
    public static bool IsSafeEtag(string? etag) =>
        etag is { Length: > 0 and <= 255 } && etag[0] != '.' && etag.All(c => IsNameChar(c)) && !etag.Contains("..", StringComparison.Ordinal);

    /// <summary>huggingface_hub's <c>repo_folder_name</c> for a model: <c>models--org--name</c>.</summary>
    public static string RepoFolderName(string repoId) => "models--" + repoId.Replace("/", "--", StringComparison.Ordinal);

    /// <summary>Whether <paramref name="value"/> is shaped like a filesystem path rather than a repo id.</summary>
    public static bool LooksLikePath(string value) =>
        Path.IsPathRooted(value) || value.StartsWith('.') || value.StartsWith('~') || value.Contains('\\') || value.Count(c => c == '/') > 1;

    private static bool IsLowerHex(char c) => c is >= '0' and <= '9' or >= 'a' and <= 'f';

    private static bool IsWordChar(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';

    private static bool IsNameChar(char c) => IsWordChar(c) || c is '-' or '.';
}
