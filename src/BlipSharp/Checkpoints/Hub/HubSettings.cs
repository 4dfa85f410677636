namespace BlipSharp.Checkpoints.Hub;

/// <summary><see cref="HubOptions"/> with every null filled from the environment as huggingface_hub's <c>constants.py</c> does.</summary>
internal sealed record HubSettings(
    string Endpoint,
    string CacheDirectory,
    string? Token,
    string? TokenSource,
    bool Offline,
    string Revision,
    TimeSpan Timeout,
    IProgress<HubDownloadProgress>? Progress)
{
    public static HubSettings From(HubOptions? options) => From(options, Environment.GetEnvironmentVariable);

    /// <summary>Resolves with <paramref name="env"/> as the environment (tests pass a dictionary).</summary>
    public static HubSettings From(HubOptions? options, Func<string, string?> env)
    {
        options ??= new HubOptions();
        string endpoint = (options.Endpoint ?? NonEmpty(env("HF_ENDPOINT")) ?? HubModel.DefaultEndpoint).TrimEnd('/');
        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"the Hub endpoint must be an http(s) URL, got '{endpoint}'", nameof(options));

        string hfHome = ExpandHome(NonEmpty(env("HF_HOME"))
            ?? Path.Combine(NonEmpty(env("XDG_CACHE_HOME")) ?? Path.Combine("~", ".cache"), "huggingface"));
        string cache = ExpandHome(options.CacheDirectory
            ?? NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(hfHome, "hub"));

        string? token = options.Token, source = "HubOptions.Token";
        if (token is null && NonEmpty(env("HF_TOKEN")) is { } fromEnv) (token, source) = (fromEnv, "HF_TOKEN");
        if (token is null && NonEmpty(env("HUGGING_FACE_HUB_TOKEN")) is { } legacy) (token, source) = (legacy, "HUGGING_FACE_HUB_TOKEN");
        if (token is null)
        {
            string tokenPath = ExpandHome(NonEmpty(env("HF_TOKEN_PATH")) ?? Path.Combine(hfHome, "token"));
            if (File.Exists(tokenPath) && NonEmpty(File.ReadAllText(tokenPath).Trim()) is { } fromFile) (token, source) = (fromFile, tokenPath);
        }
        if (string.IsNullOrEmpty(token)) (token, source) = (null, null);

        bool offline = options.Offline ?? (IsTrue(env("HF_HUB_OFFLINE")) || IsTrue(env("TRANSFORMERS_OFFLINE")));
        HubNames.CheckRevision(options.Revision, nameof(options));
        if (options.Timeout <= TimeSpan.Zero) throw new ArgumentException("the Hub timeout must be positive", nameof(options));
        return new HubSettings(endpoint, Path.GetFullPath(cache), token, source, offline, options.Revision, options.Timeout, options.Progress);
    }

    /// <summary>huggingface_hub's <c>_is_true</c>.</summary>
    internal static bool IsTrue(string? value) => value?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static string ExpandHome(string path)
    {
        if (path == "~" || path.StartsWith("~/", StringComparison.Ordinal))
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), path.Length > 2 ? path[2..] : "");
        return path;
    }
}
