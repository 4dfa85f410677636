using System.Text.Json;
using BlipSharp.Cli;
using BlipSharp.Tests.Checkpoints.Hub;
using BlipSharp.Tests.Pipelines;
using BlipSharp.Tests.TestSupport;
using Xunit;

namespace BlipSharp.Tests.Cli;

/// <summary><c>blip caption --model org/name</c> against the fake Hub: downloads once, then works offline from the cache.</summary>
public sealed class CliHubTests : HubTestBase
{
    [Fact]
    public async Task CaptionWithAHubIdDownloadsOnceAndThenRunsOffline()
    {
        using var server = Serve();
        using var cases = new FixtureCases(CaptioningFolder);
        string image = PipelineFixtures.ImageFiles(cases)[0];
        var saved = new[] { "HF_ENDPOINT", "HF_HUB_CACHE", "HF_HOME", "HF_TOKEN", "HF_HUB_OFFLINE" }.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable("HF_ENDPOINT", server.Endpoint);
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", CacheDir);
            Environment.SetEnvironmentVariable("HF_HOME", Path.Combine(Tmp, "hf-home"));
            Environment.SetEnvironmentVariable("HF_TOKEN", null);
            Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", null);

            async Task<string> Caption(params string[] extra)
            {
                var output = new StringWriter();
                var error = new StringWriter();
                int code = await BlipCli.RunAsync(["caption", "--model", RepoId, image, "--beams", "1", "--json", .. extra], output, error);
                Assert.True(code == BlipCli.Success, error.ToString());
                return JsonDocument.Parse(output.ToString()).RootElement.GetProperty("caption").GetString()!;
            }

            string online = await Caption();
            Assert.NotEmpty(server.Gets);
            Assert.True(Directory.Exists(Snapshot(server)), "the snapshot is in the HF_HUB_CACHE folder");
            server.ClearLog();
            string offline = await Caption("--offline");
            Assert.Empty(server.Requests);
            Assert.Equal(online, offline);

            // The same captioner from the folder gives the same caption.
            var local = new StringWriter();
            await BlipCli.RunAsync(["caption", "--model", CaptioningFolder, image, "--beams", "1", "--json"], local, new StringWriter());
            Assert.Equal(online, JsonDocument.Parse(local.ToString()).RootElement.GetProperty("caption").GetString());

            // Offline with an empty cache: a clear error naming the repo, exit code 2.
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", Path.Combine(Tmp, "empty-cache"));
            var err = new StringWriter();
            int missing = await BlipCli.RunAsync(["caption", "--model", RepoId, image, "--offline"], new StringWriter(), err);
            Assert.Equal(BlipCli.UsageError, missing);
            Assert.Contains(RepoId, err.ToString());
        }
        finally
        {
            foreach (var (name, value) in saved) Environment.SetEnvironmentVariable(name, value);
        }
    }
}
