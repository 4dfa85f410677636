using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using BlipSharp.Cli;
using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>
/// <c>blip synth</c> and <c>blip pretrain</c> through the command line, in-process and as child processes that are
/// stopped with SIGTERM and killed with SIGKILL mid-run, then resumed: the metrics must equal an uninterrupted run's.
/// </summary>
public sealed class TrainerCliTests(TrainerWorld world) : IClassFixture<TrainerWorld>
{
    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    private const int SigTerm = 15;

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = BlipCli.RunAsync(args, output, error).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Writes the test recipe to a file (the tests' contrastive task on the shared world).</summary>
    private string RecipeFile(string dir, params string[] overrides)
    {
        string path = Path.Combine(dir, "recipe.json");
        File.WriteAllText(path, TrainingConfigLoader.ToJsonText(world.Recipe(Path.Combine(dir, "unused"), overrides)));
        return path;
    }

    private static List<string> MetricValues(string runDir) =>
        MetricsLog.Read(Path.Combine(runDir, "metrics.jsonl"))
            .Select(l => string.Join(",", l.EnumerateObject().Where(p => p.Name is not ("images_per_s" or "elapsed_s" or "peak_rss_mib")).Select(p => $"{p.Name}={p.Value.GetRawText()}")))
            .ToList();

    [Fact]
    public void SynthWritesTheWorldAndSummarisesIt()
    {
        string dir = Directory.CreateTempSubdirectory("blipsharp-synth-").FullName;
        try
        {
            string[] args = ["synth", "--out", Path.Combine(dir, "a"), "--seed", "2", "--size", "32", "--pretrain-images", "20", "--noise", "0.5",
                "--human-images", "4", "--val-images", "2", "--test-images", "2", "--vqa-images", "5"];
            var (code, output, error) = Run(args);
            Assert.True(code == 0, error);
            Assert.Contains($"synthetic world in {Path.Combine(dir, "a")} (seed 2, 32 px)", output);
            Assert.Contains("pretrain: 20 images, ", output);
            Assert.Contains("human: 4 images; val: 2; test: 2", output);
            Assert.Contains("files: pretrain.json, human_train.json", output);
            Assert.True(File.Exists(Path.Combine(dir, "a", "images", "pretrain", "000019.png")));

            args[2] = Path.Combine(dir, "b");
            (code, output, _) = Run([.. args, "--json"]);
            Assert.Equal(0, code);
            using var doc = JsonDocument.Parse(output);
            var root = doc.RootElement;
            Assert.Equal(20, root.GetProperty("images").GetProperty("pretrain").GetInt32());
            int noisy = root.GetProperty("pretrain_noisy").GetInt32();
            Assert.InRange(noisy, 1, 19);
            Assert.Equal(noisy, root.GetProperty("noise").EnumerateObject().Sum(p => p.Value.GetInt32()));
            Assert.True(root.GetProperty("vqa_questions").GetProperty("train").GetInt32() > 0);
            // The same seed writes the same bytes.
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "a", "pretrain.json")), File.ReadAllBytes(Path.Combine(dir, "b", "pretrain.json")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("--size 8", "--size must be at least 16 pixels, got 8.")]
    [InlineData("--noise 1.5", "--noise must be within 0..1, got 1.5.")]
    [InlineData("--vqa-images -1", "--vqa-images cannot be negative, got -1.")]
    public void SynthRejectsBadValuesInOneLine(string flags, string message)
    {
        var (code, _, error) = Run(["synth", "--out", Path.Combine(Path.GetTempPath(), "never-written"), .. flags.Split(' ')]);
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Equal($"blip: {message}", error.Trim());
        Assert.Equal(BlipCli.UsageError, Run("synth").Code); // --out is required
    }

    [Fact]
    public void PretrainRunsARecipeAndResumesFromTheRunFolder()
    {
        string dir = world.NewRunDir();
        string run = Path.Combine(dir, "run");
        string recipe = RecipeFile(dir);
        var (code, output, error) = Run("pretrain", "--config", recipe, "--out", run, "--set", "train.max_steps=6", "--set", "output.checkpoint_every=3");
        Assert.True(code == 0, error);
        Assert.StartsWith("trained step 6/6, last loss ", output);
        Assert.Contains(Path.Combine(run, "checkpoints", "step-00000006"), output);
        Assert.Contains("blip: test-contrastive: 48 samples, 12 batches of 4 per epoch, 12 steps per epoch, 6 steps, float32", error);
        Assert.Contains("blip: checkpoint ", error);
        var saved = TrainingConfigLoader.Load(Path.Combine(run, "config.json"));
        Assert.Equal((6L, 3, run), (saved.Train.MaxSteps!.Value, saved.Output.CheckpointEvery, saved.Output.Dir)); // the resolved recipe, overrides applied
        Assert.Equal(6, MetricValues(run).Count);

        // --resume without --config reads the run's config.json; --set raises the budget.
        (code, output, error) = Run("pretrain", "--resume", "--out", run, "--set", "train.max_steps=8", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        Assert.True(doc.RootElement.GetProperty("completed").GetBoolean());
        Assert.Equal(8, doc.RootElement.GetProperty("step").GetInt64());
        Assert.EndsWith("step-00000006", doc.RootElement.GetProperty("resumed_from").GetString());
        Assert.Contains("resuming from ", error);
        Assert.Equal(8, MetricValues(run).Count);

        // A changed recipe is pointed out on resume.
        (code, _, error) = Run("pretrain", "--config", recipe, "--resume", "--out", run, "--set", "train.max_steps=9");
        Assert.Equal(0, code);
        Assert.Contains("the recipe differs from the run's", error);
        Assert.Contains("train.max_steps: 8 -> 9", error);
        Directory.Delete(dir, recursive: true);
    }

    [Fact]
    public void PretrainErrorsAreOneLineAndNameTheProblem()
    {
        string dir = world.NewRunDir();
        string recipe = RecipeFile(dir);
        var (code, _, error) = Run("pretrain", "--config", recipe, "--set", "train.lrr=1e-4");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.StartsWith("blip: train.lrr is not a known key", error);
        Assert.Contains("did you mean 'train.lr'?", error);
        Assert.Single(error.Trim().Split('\n'));

        (code, _, error) = Run("pretrain", "--config", recipe, "--set", "task=pretrain", "--out", Path.Combine(dir, "p"));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("blip: model.hidden is not a known key of the pretrain task", error); // the test recipe's model section is not BLIP's

        (code, _, error) = Run("pretrain", "--config", recipe, "--set", "task=nope");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("blip: task 'nope' is not a known task (available: classify, pretrain, test-contrastive)", error);

        (code, _, error) = Run("pretrain", "--config", recipe, "--set", "data.train_files=[\"missing.json\"]");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("annotation file not found: missing.json", error);

        (code, _, error) = Run("pretrain", "--config", Path.Combine(dir, "nope.json"));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("training config not found", error);

        (code, _, error) = Run("pretrain", "--resume");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("--config is required", error);

        string run = Path.Combine(dir, "run");
        Assert.Equal(0, Run("pretrain", "--config", recipe, "--out", run, "--set", "train.max_steps=1").Code);
        (code, _, error) = Run("pretrain", "--config", recipe, "--out", run, "--set", "train.max_steps=1");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("already holds checkpoints; resume the run (--resume) or choose another output folder", error);
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Starts <c>dotnet BlipSharp.Tests.dll blip ARGS</c> (the test host: the blip command with the test task).</summary>
    private static Process StartChild(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(typeof(TestHost).Assembly.Location);
        info.ArgumentList.Add("blip");
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
        return Process.Start(info)!;
    }

    /// <summary>Waits until the run folder's <c>latest</c> names a checkpoint of at least <paramref name="step"/>.</summary>
    private static void WaitForCheckpoint(Process child, string run, int step, Task<string> stderr)
    {
        string latest = Path.Combine(run, "checkpoints", CheckpointStore.LatestFile);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (File.Exists(latest))
            {
                string name;
                try
                {
                    name = File.ReadAllText(latest).Trim();
                }
                catch (IOException)
                {
                    continue;
                }
                if (name.StartsWith("step-", StringComparison.Ordinal) && int.Parse(name[5..]) >= step) return;
            }
            if (child.WaitForExit(0)) Assert.Fail($"the child exited early ({child.ExitCode}): {stderr.GetAwaiter().GetResult()}");
            Thread.Sleep(5);
        }
        Assert.Fail("no checkpoint after 60 s");
    }

    [Fact]
    public async Task AProcessStoppedBySigtermThenKilledBySigkillResumesToTheUninterruptedLosses()
    {
        string dir = world.NewRunDir();
        string recipe = RecipeFile(dir, "train.epochs=30", "output.checkpoint_every=5", "output.keep_checkpoints=3");
        string[] common = ["--threads", "2"];

        // The reference: 40 uninterrupted steps, in this process.
        string reference = Path.Combine(dir, "reference");
        var (code, _, error) = Run(["pretrain", "--config", recipe, "--out", reference, "--set", "train.max_steps=40", .. common]);
        Assert.True(code == 0, error);

        // 1. SIGTERM after the first checkpoint: the child finishes its step, writes a checkpoint, exits with 1.
        string run = Path.Combine(dir, "run");
        using (var child = StartChild(["pretrain", "--config", recipe, "--out", run, .. common]))
        {
            var stdout = child.StandardOutput.ReadToEndAsync();
            var stderr = child.StandardError.ReadToEndAsync();
            WaitForCheckpoint(child, run, 5, stderr);
            Assert.Equal(0, SendSignal(child.Id, SigTerm));
            Assert.True(child.WaitForExit(60_000));
            string err = await stderr;
            Assert.True(child.ExitCode == BlipCli.SomeInputsFailed, $"exit {child.ExitCode}: {err}");
            Assert.StartsWith("stopped at step ", await stdout);
            Assert.Contains("continue with --resume", err);
        }
        var store = new CheckpointStore(Path.Combine(run, "checkpoints"));
        long stoppedAt = TrainerState.Read(Path.Combine(store.Latest()!, CheckpointStore.StateFile)).Step;
        Assert.InRange(stoppedAt, 5, 359);
        Assert.Equal(stoppedAt, MetricValues(run).Count); // the checkpoint is at the last step made

        // 2. Resume, then SIGKILL after a later checkpoint: no chance to clean up.
        using (var child = StartChild(["pretrain", "--resume", "--out", run, .. common]))
        {
            _ = child.StandardOutput.ReadToEndAsync();
            var stderr = child.StandardError.ReadToEndAsync();
            WaitForCheckpoint(child, run, (int)stoppedAt + 1, stderr);
            child.Kill(); // SIGKILL
            Assert.True(child.WaitForExit(60_000));
            Assert.NotEqual(0, child.ExitCode);
        }
        long killedAfter = TrainerState.Read(Path.Combine(store.Latest()!, CheckpointStore.StateFile)).Step;
        Assert.True(killedAfter > stoppedAt && killedAfter < 40, $"killed after checkpoint {killedAfter}");

        // 3. Resume to step 40: the metrics (everything but timings) equal the reference's, line for line.
        (code, _, error) = Run(["pretrain", "--resume", "--out", run, "--set", "train.max_steps=40", .. common]);
        Assert.True(code == 0, error);
        var expected = MetricValues(reference);
        Assert.Equal(40, expected.Count);
        Assert.Equal(expected, MetricValues(run));
        Directory.Delete(dir, recursive: true);
    }
}
