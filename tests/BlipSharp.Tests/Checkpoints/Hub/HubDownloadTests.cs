using System.Security.Cryptography;
using BlipSharp.Checkpoints;
using BlipSharp.Checkpoints.Hub;
using BlipSharp.Modeling;
using BlipSharp.Processing;
using Xunit;

namespace BlipSharp.Tests.Checkpoints.Hub;

public sealed class HubDownloadTests : HubTestBase
{
    private static readonly string[] BlipFiles =
    [
        "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "preprocessor_config.json", "generation_config.json",
    ];

    [Fact]
    public void RepoIdLoadsTheSameModelAsTheFolder()
    {
        var server = Serve();
        using var fromHub = BlipForConditionalGeneration.FromPretrained(RepoId, new BlipLoadOptions { Hub = Options(server) });
        using var fromFolder = BlipForConditionalGeneration.FromPretrained(CaptioningFolder);

        using var expected = CaptionLogits(fromFolder);
        using var actual = CaptionLogits(fromHub);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.abs().max().item<float>() > 0.1f);
        Assert.True(expected.allclose(actual, 0, 0), "logits of the downloaded model differ from the folder's");
        foreach (string name in new[] { "config.json", "model.safetensors", "generation_config.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(CaptioningFolder, name)), File.ReadAllBytes(Path.Combine(Snapshot(server), name)));
    }

    [Fact]
    public void CacheLayoutIsHuggingfaceHubs()
    {
        var server = Serve();
        server.Hidden.Add("added_tokens.json");
        string dir = HubModel.Resolve(RepoId, Options(server));

        Assert.Equal(Snapshot(server), dir);
        Assert.Equal(server.Commit, File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));
        var present = BlipFiles.Where(f => f != "added_tokens.json").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(present, Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (string name in present)
        {
            var file = server.Files[name];
            string pointer = Path.Combine(dir, name);
            Assert.Equal($"../../blobs/{file.Etag}", new FileInfo(pointer).LinkTarget);
            Assert.Equal(File.ReadAllBytes(Path.Combine(CaptioningFolder, name)), File.ReadAllBytes(pointer));
        }
        // LFS files are named by their sha256, the others by their git blob sha1.
        Assert.Equal(FakeHubServer.Sha256(File.ReadAllBytes(Path.Combine(CaptioningFolder, "model.safetensors"))), server.Files["model.safetensors"].Etag);
        Assert.Equal(FakeHubServer.GitBlobSha1(File.ReadAllBytes(Path.Combine(CaptioningFolder, "vocab.txt"))), server.Files["vocab.txt"].Etag);
        Assert.Equal(present.Select(f => server.Files[f].Etag).Order(StringComparer.Ordinal),
            Directory.GetFiles(Path.Combine(RepoFolder, "blobs")).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        string noExist = Path.Combine(RepoFolder, ".no_exist", server.Commit, "added_tokens.json");
        Assert.True(File.Exists(noExist));
        Assert.Equal(0, new FileInfo(noExist).Length);
        Assert.Equal(["blobs", "refs", "snapshots", ".no_exist"], Directory.GetDirectories(RepoFolder).Select(Path.GetFileName).OrderBy(n => n == ".no_exist").ThenBy(n => n, StringComparer.Ordinal));
        Assert.True(File.Exists(Path.Combine(CacheDir, ".locks", "models--test-org--blip-tiny", server.Files["model.safetensors"].Etag + ".lock")));
        // model.safetensors exists, so the other weight formats were never asked for.
        Assert.DoesNotContain(server.Requests, r => r.File is "pytorch_model.bin" or "model.safetensors.index.json");
        Assert.Empty(EntriesOutsideCache());
    }

    [Fact]
    public void SecondCallOnlyChecksTheCommitAndOfflineMakesNoRequest()
    {
        var server = Serve();
        server.Hidden.Add("added_tokens.json");
        string first = HubModel.Resolve(RepoId, Options(server));
        Assert.Equal(7, server.Gets.Count);

        server.ClearLog();
        string second = HubModel.Resolve(RepoId, Options(server));
        Assert.Equal(first, second);
        Assert.Empty(server.Gets);
        var head = Assert.Single(server.Requests);
        Assert.Equal(("HEAD", $"/{RepoId}/resolve/main/config.json"), (head.Method, head.Target));

        server.ClearLog();
        string offline = HubModel.Resolve(RepoId, Options(server) with { Offline = true });
        Assert.Equal(first, offline);
        using var model = BlipForConditionalGeneration.FromPretrained(RepoId, new BlipLoadOptions { Hub = Options(server) with { Offline = true } });
        Assert.Empty(server.Requests);
    }

    [Fact]
    public void OfflineWithoutCacheSaysWhatIsMissingWhereItLookedAndHowToFix()
    {
        var server = Serve();
        var e = Assert.Throws<HubException>(() =>
            BlipForConditionalGeneration.FromPretrained(RepoId, new BlipLoadOptions { Hub = Options(server) with { Offline = true } }));
        Assert.Equal(HubErrorKind.NotCached, e.Kind);
        Assert.Contains($"'{RepoId}'", e.Message);
        Assert.Contains("missing config.json, model.safetensors", e.Message);
        Assert.Contains($"Looked for {Path.Combine(RepoFolder, "refs", "main")}, which does not exist", e.Message);
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
        Assert.Contains($"huggingface-cli download {RepoId}", e.Message);
        Assert.Contains("local folder", e.Message);
        Assert.Empty(server.Requests);
        Assert.False(Directory.Exists(RepoFolder));
    }

    [Fact]
    public void UnreachableHubFallsBackToTheCacheAndOtherwiseNamesTheUrl()
    {
        var server = Serve();
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Model, Options(null)));
        Assert.Equal(HubErrorKind.NotCached, e.Kind);
        Assert.Contains($"http://127.0.0.1:9/{RepoId}/resolve/main/config.json", e.Message);
        var network = Assert.IsType<HubException>(e.InnerException);
        Assert.Equal(HubErrorKind.Network, network.Kind);
        Assert.Equal($"http://127.0.0.1:9/{RepoId}/resolve/main/config.json", network.Url);

        string online = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server));
        server.Dispose();
        Assert.Equal(online, HubModel.Resolve(RepoId, HubFileSet.Model, Options(server)));
    }

    [Fact]
    public void InterruptedDownloadResumesWithRangeAndHashesRight()
    {
        var server = Serve();
        var file = server.Files["model.safetensors"];
        server.CutAfter("model.safetensors", 3_000_000);
        string dir = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server));

        var cdn = server.Gets.Where(r => r.OnCdn).ToList();
        Assert.Equal(2, cdn.Count);
        Assert.Null(cdn[0].Header("Range"));
        Assert.Equal("bytes=3000000-", cdn[1].Header("Range"));
        Assert.Equal(file.Etag, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, "model.safetensors")))));
        Assert.False(File.Exists(Path.Combine(RepoFolder, "blobs", file.Etag + ".incomplete")));
    }

    [Fact]
    public void PartialFileOfAKilledDownloadIsResumed()
    {
        var server = Serve();
        var file = server.Files["model.safetensors"];
        Directory.CreateDirectory(Path.Combine(RepoFolder, "blobs"));
        File.WriteAllBytes(Path.Combine(RepoFolder, "blobs", file.Etag + ".incomplete"), file.Content[..5_000_000]);

        string dir = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server));

        var cdn = Assert.Single(server.Gets, r => r.OnCdn);
        Assert.Equal("bytes=5000000-", cdn.Header("Range"));
        long small = server.Files["config.json"].Content.Length + server.Files["generation_config.json"].Content.Length;
        Assert.Equal(small + file.Content.Length - 5_000_000, server.BodyBytesSent);
        Assert.Equal(file.Etag, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, "model.safetensors")))));
    }

    [Fact]
    public void DownloadThatKeepsBreakingKeepsThePartialFileForTheNextCall()
    {
        var server = Serve();
        var file = server.Files["model.safetensors"];
        server.CutAfter("model.safetensors", 1_000_000, times: 5);
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Model, Options(server)));
        Assert.Equal(HubErrorKind.Network, e.Kind);
        Assert.Contains($"http://{server.CdnAuthority}/cdn/{file.Etag}", e.Message);
        Assert.Contains("the next call resumes", e.Message);
        string incomplete = Path.Combine(RepoFolder, "blobs", file.Etag + ".incomplete");
        Assert.Equal(5_000_000, new FileInfo(incomplete).Length);
        Assert.False(File.Exists(Path.Combine(Snapshot(server), "model.safetensors")));

        server.ClearLog();
        string dir = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server));
        Assert.Equal("bytes=5000000-", Assert.Single(server.Gets, r => r.OnCdn).Header("Range"));
        Assert.Equal(file.Content, File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
    }

    [Fact]
    public void StalledDownloadTimesOutAndResumes()
    {
        var server = Serve();
        var file = server.Files["model.safetensors"];
        server.StallAfter("model.safetensors", 2_000_000, TimeSpan.FromSeconds(5));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        string dir = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server) with { Timeout = TimeSpan.FromMilliseconds(500) });
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(4), $"took {watch.Elapsed}: the stall was not cut short");
        var cdn = server.Gets.Where(r => r.OnCdn).ToList();
        Assert.Equal(2, cdn.Count);
        Assert.Equal("bytes=2000000-", cdn[1].Header("Range"));
        Assert.Equal(file.Content, File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
    }

    [Fact]
    public void RenamedRepositoryIsFollowedThroughARelativeRedirect()
    {
        var server = Serve();
        server.RenamedFrom = "old-org/blip-tiny";
        string dir = HubModel.Resolve("old-org/blip-tiny", HubFileSet.Model, Options(server));
        Assert.Equal(Path.Combine(CacheDir, "models--old-org--blip-tiny", "snapshots", server.Commit), dir);
        Assert.Equal(server.Files["config.json"].Content, File.ReadAllBytes(Path.Combine(dir, "config.json")));
        Assert.Contains(server.Heads, r => r.Target == "/old-org/blip-tiny/resolve/main/config.json");
        Assert.Contains(server.Heads, r => r.Target == $"/{RepoId}/resolve/main/config.json");
    }

    [Fact]
    public void Sha256MismatchIsDetectedAndNothingIsCached()
    {
        var server = Serve();
        var file = server.Files["model.safetensors"];
        server.Corrupt.Add("model.safetensors");
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Model, Options(server)));
        Assert.Equal(HubErrorKind.IntegrityCheckFailed, e.Kind);
        Assert.Contains($"expected {file.Etag}", e.Message);
        Assert.Contains("sha256", e.Message);
        Assert.False(File.Exists(Path.Combine(RepoFolder, "blobs", file.Etag)));
        Assert.False(File.Exists(Path.Combine(RepoFolder, "blobs", file.Etag + ".incomplete")));
        Assert.False(File.Exists(Path.Combine(Snapshot(server), "model.safetensors")));

        server.Corrupt.Clear();
        string dir = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server));
        Assert.Equal(file.Content, File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
    }

    [Fact]
    public void TokenGoesToTheHubButNotToTheCdn()
    {
        var server = Serve();
        server.RequiredToken = "hf_secret";
        var e = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, HubFileSet.Model, Options(server)));
        Assert.Equal(HubErrorKind.Unauthorized, e.Kind);
        Assert.Equal(401, e.StatusCode);
        Assert.Contains("gated", e.Message);
        Assert.Contains("HF_TOKEN", e.Message);

        server.ClearLog();
        HubModel.Resolve(RepoId, HubFileSet.Model, Options(server) with { Token = "hf_secret" });
        var hub = server.Requests.Where(r => !r.OnCdn).ToList();
        var cdn = server.Requests.Where(r => r.OnCdn).ToList();
        Assert.Equal(5, hub.Count); // HEAD config.json, generation_config.json, model.safetensors; GET of the first two
        Assert.All(hub, r => Assert.Equal("Bearer hf_secret", r.Header("Authorization")));
        Assert.Single(cdn);
        Assert.All(cdn, r => Assert.Null(r.Header("Authorization")));
    }

    [Fact]
    public void ShardedWeightsAreFetchedWhenThereIsNoModelSafetensors()
    {
        string repo = Path.Combine(Tmp, "sharded");
        Directory.CreateDirectory(repo);
        foreach (string name in new[] { "config.json", "generation_config.json" })
            File.Copy(Path.Combine(CaptioningFolder, name), Path.Combine(repo, name));
        var weights = SafeTensors.Load(Path.Combine(CaptioningFolder, "model.safetensors"));
        var keys = weights.Keys.Order(StringComparer.Ordinal).ToList();
        var map = new Dictionary<string, string>();
        for (int shard = 0; shard < 2; shard++)
        {
            string name = $"model-0000{shard + 1}-of-00002.safetensors";
            var part = keys.Where((_, i) => i % 2 == shard).ToList();
            SafeTensors.Save(Path.Combine(repo, name), part.Select(k => new KeyValuePair<string, TorchSharp.torch.Tensor>(k, weights[k])));
            foreach (string k in part) map[k] = name;
        }
        foreach (var t in weights.Values) t.Dispose();
        File.WriteAllText(Path.Combine(repo, "model.safetensors.index.json"),
            System.Text.Json.JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));
        var server = Serve(repo);

        using var fromHub = BlipForConditionalGeneration.FromPretrained(RepoId, new BlipLoadOptions { Hub = Options(server) });
        using var fromFolder = BlipForConditionalGeneration.FromPretrained(CaptioningFolder);
        using var expected = CaptionLogits(fromFolder);
        using var actual = CaptionLogits(fromHub);
        Assert.True(expected.allclose(actual, 0, 0));
        Assert.True(File.Exists(Path.Combine(RepoFolder, ".no_exist", server.Commit, "model.safetensors")));
        Assert.Equal(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
            server.Gets.Where(r => r.OnCdn).Select(r => r.File).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(server.Requests, r => r.File == "pytorch_model.bin");
    }

    [Fact]
    public void ExplicitFileListFetchesOnlyThoseFiles()
    {
        var server = Serve();
        string dir = HubModel.Resolve(RepoId, HubFileSet.Of("config.json", "vocab.txt"), Options(server));
        Assert.Equal(["config.json", "vocab.txt"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(["config.json", "vocab.txt"], server.Gets.Select(r => r.File).Order(StringComparer.Ordinal));

        string path = HubModel.DownloadFile(RepoId, "preprocessor_config.json", Options(server));
        Assert.Equal(Path.Combine(dir, "preprocessor_config.json"), path);
        Assert.Equal(File.ReadAllBytes(Path.Combine(CaptioningFolder, "preprocessor_config.json")), File.ReadAllBytes(path));
    }

    [Fact]
    public void MissingRepoFileAndRevisionAreNamed()
    {
        var server = Serve();
        var repo = Assert.Throws<HubException>(() => HubModel.Resolve("other-org/nothing", Options(server)));
        Assert.Equal(HubErrorKind.RepositoryNotFound, repo.Kind);
        Assert.Equal(404, repo.StatusCode);
        Assert.Contains("'other-org/nothing' not found", repo.Message);
        Assert.Contains("HF_TOKEN", repo.Message);

        var file = Assert.Throws<HubException>(() => HubModel.DownloadFile(RepoId, "nope.json", Options(server)));
        Assert.Equal(HubErrorKind.EntryNotFound, file.Kind);
        Assert.Equal($"{server.Endpoint}/{RepoId}/resolve/main/nope.json", file.Url);
        Assert.True(File.Exists(Path.Combine(RepoFolder, ".no_exist", server.Commit, "nope.json")));

        var revision = Assert.Throws<HubException>(() => HubModel.Resolve(RepoId, Options(server) with { Revision = "v9" }));
        Assert.Equal(HubErrorKind.RevisionNotFound, revision.Kind);
        Assert.Contains("'v9'", revision.Message);
    }

    [Fact]
    public void CommitHashRevisionNeedsNoRefAndNoRequestOnceCached()
    {
        var server = Serve();
        var options = Options(server) with { Revision = server.Commit };
        string dir = HubModel.Resolve(RepoId, HubFileSet.Model, options);
        Assert.Equal(Snapshot(server), dir);
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "refs")));
        Assert.All(server.Requests.Where(r => !r.OnCdn), r => Assert.Contains($"/resolve/{server.Commit}/", r.Target));

        server.ClearLog();
        Assert.Equal(dir, HubModel.Resolve(RepoId, HubFileSet.Model, options));
        Assert.Empty(server.Requests);
    }

    [Fact]
    public void ConcurrentDownloadsFetchEachBlobOnce()
    {
        var server = Serve();
        var results = new string[2];
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() => results[i] = HubModel.Resolve(RepoId, HubFileSet.Model, Options(server)))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Equal(Snapshot(server), results[0]);
        Assert.Equal(results[0], results[1]);
        foreach (string name in new[] { "config.json", "generation_config.json", "model.safetensors" })
            Assert.Single(server.Gets, r => r.File == name);
        Assert.Equal(server.Files["model.safetensors"].Content, File.ReadAllBytes(Path.Combine(results[0], "model.safetensors")));
    }

    [Fact]
    public void ProgressReportsBytesOfEachFile()
    {
        var server = Serve();
        var reports = new List<HubDownloadProgress>();
        HubModel.Resolve(RepoId, HubFileSet.Model, Options(server) with { Progress = new SyncProgress(reports.Add) });
        var weights = reports.Where(r => r.FileName == "model.safetensors").ToList();
        long size = server.Files["model.safetensors"].Content.Length;
        Assert.Equal(0, weights[0].BytesDownloaded);
        Assert.Equal(size, weights[^1].BytesDownloaded);
        Assert.All(weights, r => Assert.Equal((RepoId, size), (r.RepoId, r.TotalBytes)));
        Assert.True(weights.Count >= 8, $"only {weights.Count} reports for an {size}-byte file");
        Assert.Equal(weights.Select(r => r.BytesDownloaded).Order(), weights.Select(r => r.BytesDownloaded));
        Assert.Equal(["config.json", "generation_config.json", "model.safetensors"], reports.Select(r => r.FileName).Distinct());
    }

    [Fact]
    public void ProcessorTokenizerAndImageProcessorAcceptARepoId()
    {
        var server = Serve();
        var tokenizer = BlipTokenizer.FromPretrained(RepoId, Options(server));
        Assert.Equal(["added_tokens.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"], server.Gets.Select(r => r.File).Order(StringComparer.Ordinal));
        var local = BlipTokenizer.FromPretrained(CaptioningFolder);
        const string text = "A picture of two cats, sleeping on a red couch!";
        Assert.Equal(local.Encode(text), tokenizer.Encode(text));

        var processor = BlipProcessor.FromPretrained(RepoId, Options(server));
        var localImages = BlipImageProcessor.FromPretrained(CaptioningFolder);
        Assert.Equal(local.Encode(text), processor.Tokenizer.Encode(text));
        Assert.Equal((localImages.Options.Width, localImages.Options.Height), (processor.ImageProcessor.Options.Width, processor.ImageProcessor.Options.Height));
        Assert.Equal(localImages.Options.ImageMean, processor.ImageProcessor.Options.ImageMean);
        var images = BlipImageProcessor.FromPretrained(RepoId, hub: Options(server) with { Offline = true });
        Assert.Equal(localImages.Options.ImageStd, images.Options.ImageStd);
    }

    [Fact]
    public void ReadmeHubExampleRuns()
    {
        var server = Serve();
        var lines = new List<string>();
        const string id = RepoId;

        // --- as in README.md (the endpoint and cache are this test's) ---
        var hub = Options(server) with { Progress = new SyncProgress(p => lines.Add($"\r{p.FileName} {p.BytesDownloaded}/{p.TotalBytes}")) };
        var processor = BlipProcessor.FromPretrained(id, hub);
        using var model = BlipForConditionalGeneration.FromPretrained(id, new BlipLoadOptions { Hub = hub });
        string folder = HubModel.Resolve(id, hub);
        // --- end ---

        Assert.Equal(Snapshot(server), folder);
        Assert.Equal(processor.Tokenizer.VocabSize, model.Config.TextConfig.VocabSize);
        long size = server.Files["model.safetensors"].Content.Length;
        Assert.Contains($"\rmodel.safetensors {size}/{size}", lines);
    }

    private sealed class SyncProgress(Action<HubDownloadProgress> report) : IProgress<HubDownloadProgress>
    {
        public void Report(HubDownloadProgress value) => report(value);
    }
}
