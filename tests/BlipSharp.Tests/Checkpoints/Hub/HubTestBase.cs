using BlipSharp.Checkpoints.Hub;
using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Checkpoints.Hub;

/// <summary>A temporary folder (the cache lives in it, never in ~/.cache) and the fake Hub servers of one test.</summary>
public abstract class HubTestBase : IDisposable
{
    /// <summary>A made-up repo id: the fake Hub serves a fixture folder under it.</summary>
    protected const string RepoId = "test-org/blip-tiny";

    protected readonly string Tmp = Directory.CreateTempSubdirectory("blipsharp-hub-").FullName;
    private readonly List<FakeHubServer> _servers = [];

    protected string CacheDir => Path.Combine(Tmp, "cache");

    protected string RepoFolder => Path.Combine(CacheDir, "models--test-org--blip-tiny");

    /// <summary>The captioning fixture folder (found by architecture, as the other checkpoint tests find it).</summary>
    protected static string CaptioningFolder { get; } = Fixtures.HfModelDirs().First(d =>
    {
        using var cases = new FixtureCases(d);
        return FixtureModels.Architecture(cases) == nameof(BlipForConditionalGeneration);
    });

    public void Dispose()
    {
        foreach (var server in _servers) server.Dispose();
        Directory.Delete(Tmp, recursive: true);
        GC.SuppressFinalize(this);
    }

    protected FakeHubServer Serve(string? folder = null, string repoId = RepoId)
    {
        var server = new FakeHubServer(repoId, folder ?? CaptioningFolder);
        _servers.Add(server);
        return server;
    }

    /// <summary>Options that ignore the machine's HF_* variables: this test's cache, no token, online.</summary>
    protected HubOptions Options(FakeHubServer? server) => new()
    {
        Endpoint = server?.Endpoint ?? "http://127.0.0.1:9",
        CacheDirectory = CacheDir,
        Token = "",
        Offline = false,
    };

    protected string Snapshot(FakeHubServer server) => Path.Combine(RepoFolder, "snapshots", server.Commit);

    /// <summary>Captioning logits of <paramref name="model"/> for a fixed random image and token ids.</summary>
    protected static Tensor CaptionLogits(BlipForConditionalGeneration model)
    {
        using var _ = no_grad();
        var generator = new TorchSharp.torch.Generator(7);
        int size = model.Config.VisionConfig.ImageSize;
        var pixels = randn([1, 3, size, size], generator: generator);
        var ids = randint(0, 1000, [1, 6], generator: generator);
        using var output = model.Forward(pixels, ids);
        return output.Logits.detach().clone();
    }

    /// <summary>Every file and folder under the temporary folder that is not inside the cache.</summary>
    protected List<string> EntriesOutsideCache() =>
        Directory.GetFileSystemEntries(Tmp, "*", SearchOption.AllDirectories)
            .Where(p => p != CacheDir && !p.StartsWith(CacheDir + Path.DirectorySeparatorChar, StringComparison.Ordinal)).ToList();
}
