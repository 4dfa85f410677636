using System.Security.Cryptography;
using System.Text;
using BlipSharp.Checkpoints;
using BlipSharp.Checkpoints.Hub;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using Xunit;

namespace BlipSharp.Tests.Checkpoints.Hub;

/// <summary>A cache filled by Python is reused; names that could leave the cache are refused; settings come from the environment.</summary>
public sealed class HubCacheSafetyTests : HubTestBase
{
    /// <summary>
    /// Lays out the cache as huggingface_hub 0.2x writes it: blobs named by etag, refs/main holding the commit
    /// (no newline), snapshots/&lt;commit&gt;/&lt;file&gt; relative symlinks into ../../blobs.
    /// </summary>
    private string WritePythonCache(string commit, IEnumerable<string> files)
    {
        Directory.CreateDirectory(Path.Combine(RepoFolder, "blobs"));
        Directory.CreateDirectory(Path.Combine(RepoFolder, "refs"));
        string snapshot = Path.Combine(RepoFolder, "snapshots", commit);
        Directory.CreateDirectory(snapshot);
        File.WriteAllText(Path.Combine(RepoFolder, "refs", "main"), commit);
        foreach (string name in files)
        {
            byte[] content = File.ReadAllBytes(Path.Combine(CaptioningFolder, name));
            string etag = name.EndsWith(".safetensors", StringComparison.Ordinal) ? FakeHubServer.Sha256(content) : FakeHubServer.GitBlobSha1(content);
            File.WriteAllBytes(Path.Combine(RepoFolder, "blobs", etag), content);
            File.CreateSymbolicLink(Path.Combine(snapshot, name), $"../../blobs/{etag}");
        }
        return snapshot;
    }

    [Fact]
    public void CacheLaidOutByPythonIsReusedOfflineWithZeroRequests()
    {
        var server = Serve();
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        string snapshot = WritePythonCache(commit, ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"]);
        var offline = Options(server) with { Offline = true };

        Assert.Equal(snapshot, HubModel.Resolve(RepoId, offline));
        using var fromCache = BlipForConditionalGeneration.FromPretrained(RepoId, new BlipLoadOptions { Hub = offline });
        using var fromFolder = BlipForConditionalGeneration.FromPretrained(CaptioningFolder);
        using var expected = CaptionLogits(fromFolder);
        using var actual = CaptionLogits(fromCache);
        Assert.True(expected.allclose(actual, 0, 0));
        var processor = BlipProcessor.FromPretrained(RepoId, offline);
        Assert.Equal(BlipTokenizer.FromPretrained(CaptioningFolder).Encode("two dogs"), processor.Tokenizer.Encode("two dogs"));
        Assert.Empty(server.Requests);

        // Pinned to that commit, online, everything the model needs is there: still no request.
        var pinned = Options(server) with { Revision = commit };
        Assert.Equal(snapshot, HubModel.Resolve(RepoId, HubFileSet.Of("config.json", "model.safetensors"), pinned));
        Assert.Empty(server.Requests);
    }

    [Fact]
    public void PythonCacheWithoutTheWeightsNamesThemOffline()
    {
        const string commit = "89abcdef0123456789abcdef0123456789abcdef";
        string snapshot = WritePythonCache(commit, ["config.json"]);
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Model, Options(null) with { Offline = true }));
        Assert.Equal(HubErrorKind.NotCached, e.Kind);
        Assert.Contains("missing model.safetensors (or model.safetensors.index.json with its shards, or pytorch_model.bin)", e.Message);
        Assert.Contains($"Looked in {snapshot} (refs/main -> {commit})", e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("../etc")]
    [InlineData("org/../name")]
    [InlineData("org/..")]
    [InlineData("/etc/passwd")]
    [InlineData("org/name/extra")]
    [InlineData("org\\name")]
    [InlineData("org--x/name")]
    [InlineData(".hidden/name")]
    [InlineData("org/name.git")]
    [InlineData("org/na me")]
    [InlineData("org/name-")]
    public void RepoIdsThatAreNotHubIdsAreRejectedBeforeAnyRequest(string repoId)
    {
        var server = Serve();
        var e = Assert.Throws<ArgumentException>(() => HubModel.DownloadFile(repoId, "config.json", Options(server)));
        Assert.Contains("repo id", e.Message);
        Assert.Empty(server.Requests);
        Assert.False(Directory.Exists(CacheDir));
    }

    [Fact]
    public void ResolveTellsAMissingFolderFromABadRepoId()
    {
        string missing = Path.Combine(Tmp, "no-such-model");
        var folder = Assert.Throws<DirectoryNotFoundException>(() => HubModel.Resolve(missing, Options(null)));
        Assert.Contains(missing, folder.Message);
        Assert.Throws<DirectoryNotFoundException>(() => HubModel.Resolve("../no-such-model", Options(null)));
        var id = Assert.Throws<ArgumentException>(() => HubModel.Resolve("org/na me", Options(null)));
        Assert.Contains("neither an existing folder nor a Hugging Face repo id", id.Message);
        Assert.Equal(CaptioningFolder, HubModel.Resolve(CaptioningFolder, Options(null)));
    }

    [Theory]
    [InlineData("../config.json")]
    [InlineData("/etc/passwd")]
    [InlineData("sub\\config.json")]
    [InlineData("sub/../../config.json")]
    [InlineData("sub//config.json")]
    [InlineData("./config.json")]
    [InlineData("sub/")]
    public void FileNamesThatCouldLeaveTheRepositoryAreRejected(string fileName)
    {
        var server = Serve();
        Assert.Throws<ArgumentException>(() => HubModel.DownloadFile(RepoId, fileName, Options(server)));
        Assert.Throws<ArgumentException>(() => HubModel.Resolve(RepoId, new HubFileSet { Required = ["config.json"], Optional = [fileName] }, Options(server)));
        Assert.Empty(server.Requests);
    }

    [Theory]
    [InlineData("X-Repo-Commit", "../../../../escaped")]
    [InlineData("ETag", "W/\"../../../escaped\"")]
    [InlineData("X-Repo-Commit", "not-a-commit")]
    public void HostileHeadersCannotPlaceFilesOutsideTheCache(string header, string value)
    {
        var server = Serve();
        server.EditHeadHeaders = (_, headers) => headers[header] = value;
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Of("config.json"), Options(server)));
        var cause = Assert.IsType<HubException>(e.InnerException);
        Assert.Equal(HubErrorKind.InvalidResponse, cause.Kind);
        Assert.Contains(value.Trim('W', '/', '"'), cause.Message);
        Assert.Empty(server.Gets);
        Assert.Empty(EntriesOutsideCache());
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "blobs")));
    }

    [Fact]
    public void ShardIndexNamingAFileOutsideTheRepositoryIsRefused()
    {
        string repo = Path.Combine(Tmp, "evil");
        Directory.CreateDirectory(repo);
        File.Copy(Path.Combine(CaptioningFolder, "config.json"), Path.Combine(repo, "config.json"));
        File.WriteAllText(Path.Combine(repo, "model.safetensors.index.json"), """{"weight_map": {"a": "../../../evil.safetensors"}}""");
        var server = Serve(repo);
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Model, Options(server)));
        Assert.Equal(HubErrorKind.InvalidResponse, e.Kind);
        Assert.Contains("'../../../evil.safetensors'", e.Message);
        Assert.DoesNotContain(server.Requests, r => r.Target.Contains("evil", StringComparison.Ordinal));
        Assert.DoesNotContain(EntriesOutsideCache(), p => !p.StartsWith(repo, StringComparison.Ordinal));
    }

    [Fact]
    public void SettingsComeFromTheEnvironmentLikeHuggingfaceHub()
    {
        string home = Path.Combine(Tmp, "hf-home");
        Directory.CreateDirectory(home);
        File.WriteAllText(Path.Combine(home, "token"), "hf_from_file\n");
        HubSettings With(Dictionary<string, string> env, HubOptions? options = null) => HubSettings.From(options, k => env.GetValueOrDefault(k));

        var xdg = With(new() { ["XDG_CACHE_HOME"] = Path.Combine(Tmp, "xdg") });
        Assert.Equal(Path.Combine(Tmp, "xdg", "huggingface", "hub"), xdg.CacheDirectory);
        Assert.Equal(HubModel.DefaultEndpoint, xdg.Endpoint);
        Assert.False(xdg.Offline);
        Assert.Equal("main", xdg.Revision);

        var fromHome = With(new() { ["HF_HOME"] = home, ["XDG_CACHE_HOME"] = Path.Combine(Tmp, "xdg"), ["HF_ENDPOINT"] = "http://mirror.example/" });
        Assert.Equal(Path.Combine(home, "hub"), fromHome.CacheDirectory);
        Assert.Equal(("hf_from_file", Path.Combine(home, "token")), (fromHome.Token, fromHome.TokenSource));
        Assert.Equal("http://mirror.example", fromHome.Endpoint);

        var explicitCache = With(new() { ["HF_HOME"] = home, ["HF_HUB_CACHE"] = Path.Combine(Tmp, "c"), ["HF_TOKEN"] = "hf_env", ["HF_HUB_OFFLINE"] = "1" });
        Assert.Equal((Path.Combine(Tmp, "c"), "hf_env", "HF_TOKEN", true), (explicitCache.CacheDirectory, explicitCache.Token, explicitCache.TokenSource, explicitCache.Offline));

        var overridden = With(new() { ["HF_HOME"] = home, ["HF_TOKEN"] = "hf_env", ["HF_HUB_OFFLINE"] = "1" },
            new HubOptions { Token = "", Offline = false, CacheDirectory = Path.Combine(Tmp, "o"), Endpoint = "http://127.0.0.1:1" });
        Assert.Equal((null, false, Path.Combine(Tmp, "o"), "http://127.0.0.1:1"), (overridden.Token, overridden.Offline, overridden.CacheDirectory, overridden.Endpoint));

        foreach (var (value, offline) in new[] { ("true", true), ("YES", true), ("on", true), ("0", false), ("false", false), ("", false) })
            Assert.Equal(offline, With(new() { ["HF_HUB_OFFLINE"] = value }).Offline);
        Assert.True(With(new() { ["TRANSFORMERS_OFFLINE"] = "1" }).Offline);
        Assert.Throws<ArgumentException>(() => With(new(), new HubOptions { Revision = "../main" }));
        Assert.Throws<ArgumentException>(() => With(new(), new HubOptions { Endpoint = "ftp://x" }));
    }

    [Fact]
    public void OptionsNeverPrintTheToken()
    {
        string text = new HubOptions { Token = "hf_very_secret", Revision = "v1" }.ToString();
        Assert.DoesNotContain("hf_very_secret", text);
        Assert.Contains("Token = ***", text);
        Assert.Contains("Revision = v1", text);
    }

    [Theory]
    [InlineData("W/\"abc123\"", "abc123")]
    [InlineData("\"abc123\"", "abc123")]
    [InlineData("abc123", "abc123")]
    public void EtagsAreNormalizedAsHuggingfaceHubDoes(string header, string expected) =>
        Assert.Equal(expected, HubNames.NormalizeEtag(header));

    [Fact]
    public void GitBlobSha1MatchesGit()
    {
        // `printf 'hello\n' | git hash-object --stdin`
        Assert.Equal("ce013625030ba8dba906f756967f9e9ca394464a", FakeHubServer.GitBlobSha1(Encoding.ASCII.GetBytes("hello\n")));
        Assert.Equal("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes("hello\n"))));
    }
}
