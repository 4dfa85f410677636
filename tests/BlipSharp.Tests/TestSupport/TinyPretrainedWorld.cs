using Xunit;

namespace BlipSharp.Tests.TestSupport;

/// <summary>
/// The synthetic world (seed 1, 32 px, noise 0.2) with its ViT stage and a model pretrained on it by the tiny recipes,
/// all through the real CLI, built once for the tests of <see cref="TinyPretrainedWorldCollection"/>: the pretraining
/// learning test asserts what the pretraining learned, and the fine-tuning learning tests start from it (their
/// "pretrained-only" baseline). About 5 minutes on one thread.
/// </summary>
public sealed class TinyPretrainedWorld : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("blipsharp-tiny-world-").FullName;

    public TinyPretrainedWorld()
    {
        World = Path.Combine(_root, "world");
        Vit = Path.Combine(_root, "vit");
        Pretrain = Path.Combine(_root, "pretrain");
        Blip("synth", "--out", World, "--size", "32", "--noise", "0.2", "--seed", "1");
        Blip("pretrain", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "vit-tiny.json"), "--out", Vit, "--threads", "1",
            "--set", $"data.train_files=[\"{Path.Combine(World, "classify.json")}\"]");
        Blip("pretrain", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json"), "--out", Pretrain, "--threads", "1",
            "--set", $"data.train_files=[\"{Path.Combine(World, "pretrain.json")}\"]",
            "--set", $"model.tokenizer={Tokenizer}", "--set", $"model.vision_init={Vit}",
            "--set", "output.checkpoint_every=0", "--set", "output.keep_checkpoints=1");
    }

    /// <summary>The synthetic world folder (<c>blip synth</c>'s output: images, annotation files, the tokenizer).</summary>
    public string World { get; }

    /// <summary>The world's tokenizer folder.</summary>
    public string Tokenizer => Path.Combine(World, "tokenizer");

    /// <summary>The ViT stage's run folder (<c>configs/vit-tiny.json</c>).</summary>
    public string Vit { get; }

    /// <summary>The pretraining run folder (<c>configs/pretrain-tiny.json</c>); its newest checkpoint is the pretrained model.</summary>
    public string Pretrain { get; }

    /// <summary>A fresh folder under the fixture's root for one test's runs.</summary>
    /// <param name="name">The folder's name.</param>
    public string NewFolder(string name)
    {
        string dir = Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Runs <c>blip ARGS</c> and returns its standard output; fails with the error output when the exit code is not 0.</summary>
    public static string Blip(params string[] args)
    {
        var (code, stdout, stderr) = CliRunner.Run(args);
        if (code != 0) throw new InvalidOperationException($"blip {string.Join(" ", args)} exited with {code}: {stderr}");
        return stdout;
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}

/// <summary>The tests that share one <see cref="TinyPretrainedWorld"/> (they run one after another).</summary>
[CollectionDefinition(Name)]
public sealed class TinyPretrainedWorldCollection : ICollectionFixture<TinyPretrainedWorld>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "tiny pretrained world";
}
