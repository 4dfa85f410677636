using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Training.Data;
using BlipSharp.Training.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Training;

/// <summary>
/// The trainer on a real (tiny) task and real batches: accumulation, clipping, the schedule it applies, bfloat16 with
/// master weights, checkpoints that survive a crash mid-write, and a resume whose losses equal an uninterrupted run's.
/// </summary>
public sealed class TrainerTests(TrainerWorld world) : IClassFixture<TrainerWorld>
{
    private static IReadOnlyList<JsonElement> Metrics(string runDir) => MetricsLog.Read(Path.Combine(runDir, Trainer<ImageTextBatch>.MetricsFile));

    private static Dictionary<string, Tensor> Weights(string checkpoint) => SafeTensors.Load(Path.Combine(checkpoint, Trainer<ImageTextBatch>.ModelFile));

    /// <summary>Every logged value but the timings.</summary>
    private static string Values(JsonElement line) =>
        string.Join(",", line.EnumerateObject().Where(p => p.Name is not ("images_per_s" or "elapsed_s" or "peak_rss_mib")).Select(p => $"{p.Name}={p.Value.GetRawText()}"));

    /// <summary>
    /// Trains the regression task for one optimizer step on the first 8 samples of epoch 0 and returns the gradient the
    /// optimizer used (weight and bias, flattened), the weights before the step and the logged gradient norm.
    /// </summary>
    private (Tensor Grad, Tensor Before, double? LoggedNorm) OneStepGradient(int batchSize, int accumulation, double? clip = null, float scale = 1f)
    {
        string run = world.NewRunDir();
        var recipe = world.Recipe(run, $"data.batch_size={batchSize}", $"train.grad_accum_steps={accumulation}", "train.max_steps=1",
            $"train.clip_grad_norm={(clip is null ? "null" : clip.Value.ToString(System.Globalization.CultureInfo.InvariantCulture))}");
        manual_seed(1);
        var dataset = TrainingData.LoadDataset(recipe.Data);
        var loader = TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed);
        using var task = new RegressionTestTask(recipe.Data.ImageSize, scale);
        var linear = (Linear)((Sequential)task.Model).children().Last();
        Tensor before = linear.weight!.detach().clone();
        Tensor? grad = null;
        task.AfterStep = (_, _) => grad = cat([linear.weight!.grad!.flatten(), linear.bias!.grad!.flatten()]).DetachFromDisposeScope();
        using var trainer = new Trainer<ImageTextBatch>(task, new ImageTextBatchSource(loader), TrainerOptions.FromConfig(recipe));
        var result = trainer.Run();
        Assert.True(result.Completed);
        var line = Metrics(run).Single();
        double? logged = line.TryGetProperty("grad_norm", out var g) ? g.GetDouble() : null;
        Directory.Delete(run, recursive: true);
        return (grad!, before, logged);
    }

    [Fact]
    public void TwoAccumulatedHalfBatchesGiveTheFullBatchGradient()
    {
        var (full, w0, _) = OneStepGradient(batchSize: 8, accumulation: 1);
        var (halves, w1, _) = OneStepGradient(batchSize: 4, accumulation: 2);
        Assert.True(w0.allclose(w1, 0, 0)); // same initial weights
        double scale = full.abs().max().item<float>();
        double diff = (full - halves).abs().max().item<float>();
        Assert.True(scale > 1e-3, $"gradient too small to compare: {scale}");
        Assert.True(diff <= 1e-6 * scale, $"accumulated gradient differs by {diff:E3} (max |grad| {scale:E3})");
        // The tolerance can fail: a single half batch is a different gradient.
        var (half, _, _) = OneStepGradient(batchSize: 4, accumulation: 1);
        Assert.True((full - half).abs().max().item<float>() > 1e-3 * scale);
    }

    [Fact]
    public void ClippingScalesTheGlobalNormAndLogsTheNormBeforeIt()
    {
        var (raw, _, unclippedLog) = OneStepGradient(batchSize: 4, accumulation: 1, scale: 100f);
        Assert.Null(unclippedLog); // no clipping, no norm computed
        double norm = raw.norm().item<float>();
        Assert.True(norm > 1, $"the test needs a gradient norm above the clip: {norm}");
        var (clipped, _, logged) = OneStepGradient(batchSize: 4, accumulation: 1, clip: 0.5, scale: 100f);
        Assert.NotNull(logged);
        Assert.True(Math.Abs(logged!.Value - norm) <= 1e-5 * norm, $"logged norm {logged} vs {norm}");
        // torch's clip_grad_norm_: grad * max_norm / (total_norm + 1e-6).
        using var expected = raw * (0.5 / (norm + 1e-6));
        double diff = (expected - clipped).abs().max().item<float>();
        Assert.True(diff <= 1e-5 * expected.abs().max().item<float>(), $"clipped gradient differs by {diff:E3}");
        Assert.Equal(0.5, clipped.norm().item<float>(), 4);
        // A clip above the norm leaves the gradient alone.
        var (untouched, _, _) = OneStepGradient(batchSize: 4, accumulation: 1, clip: 10 * norm, scale: 100f);
        Assert.True(untouched.allclose(raw, 0, 0), $"max diff {(untouched - raw).abs().max().item<float>():E3} of {raw.abs().max().item<float>():E3}");
    }

    [Fact]
    public void TheScheduleIsAppliedPerStepAndPerEpoch()
    {
        string run = world.NewRunDir();
        var recipe = world.Recipe(run); // 48 samples / 4 = 12 steps per epoch, 2 epochs, warm-up 3 steps, x0.5 per epoch
        var result = world.Train(recipe);
        Assert.True(result.Completed);
        Assert.Equal(24, result.Step);
        var lines = Metrics(run);
        Assert.Equal(Enumerable.Range(1, 24), lines.Select(l => l.GetProperty("step").GetInt32()));
        double[] lr = lines.Select(l => l.GetProperty("lr").GetDouble()).ToArray();
        Assert.Equal(1e-5, lr[0], 15);                         // warmup_lr at step 0
        Assert.Equal(1e-5 + (1e-3 - 1e-5) * 2 / 3, lr[2], 15);  // step 2 of 3
        Assert.All(lr[3..12], v => Assert.Equal(1e-3, v));      // epoch 0 after the warm-up
        Assert.All(lr[12..], v => Assert.Equal(5e-4, v));       // epoch 1: x0.5
        Assert.All(lines, l => Assert.True(l.GetProperty("loss").GetDouble() > 0));
        Assert.All(lines, l => Assert.True(l.TryGetProperty("itc_i2t", out _) && l.TryGetProperty("images_per_s", out _)));
        // Peak resident memory: a real process reading (a .NET process with libtorch loaded is far above 50 MiB) that never goes down.
        double[] rss = lines.Select(l => l.GetProperty("peak_rss_mib").GetDouble()).ToArray();
        Assert.True(rss[0] > 50, $"peak_rss_mib {rss[0]}");
        Assert.Equal(rss.Order(), rss);
        Assert.Equal(new[] { 0, 1 }, lines.Select(l => l.GetProperty("epoch").GetInt32()).Distinct());
        // Checkpoints every 4 steps and at the epoch end; only the newest 2 kept.
        var store = new CheckpointStore(Path.Combine(run, "checkpoints"));
        Assert.Equal(["step-00000020", "step-00000024"], store.List().Select(Path.GetFileName));
        Assert.Equal(Path.Combine(store.Directory, "step-00000024"), store.Latest());
        foreach (string file in new[] { "model.safetensors", "optimizer.bin", "scheduler.json", "config.json", "trainer_state.json" })
            Assert.True(File.Exists(Path.Combine(store.Latest()!, file)), file);
        Assert.True(File.Exists(Path.Combine(run, "config.json")));
        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(store.Latest()!, "trainer_state.json"))).RootElement;
        Assert.Equal(24, state.GetProperty("step").GetInt64());
        Assert.Equal(2, state.GetProperty("next").GetProperty("epoch").GetInt32());
        Assert.Equal(0, state.GetProperty("next").GetProperty("batch").GetInt32());
        Assert.Equal(24, state.GetProperty("task").GetProperty("updates").GetInt64());
        Directory.Delete(run, recursive: true);
    }

    [Theory]
    [InlineData("float32", 1)]
    [InlineData("float32", 2)]
    [InlineData("bfloat16", 1)]
    public void ResumingAfterACancelGivesTheUninterruptedLossesExactly(string precision, int accumulation)
    {
        string[] sets = [$"train.precision={precision}", $"train.grad_accum_steps={accumulation}", "train.max_steps=10"];
        string straight = world.NewRunDir();
        var full = world.Train(world.Recipe(straight, sets));
        Assert.True(full.Completed);

        string interrupted = world.NewRunDir();
        var first = world.Train(world.Recipe(interrupted, sets), stopAfter: 3);
        Assert.False(first.Completed);
        Assert.Equal(3, first.Step);
        Assert.EndsWith("step-00000003", first.Checkpoint);
        long updates = -1;
        var second = world.Train(world.Recipe(interrupted, sets), resume: true, inspect: t => updates = ((ContrastiveTestTask)t).Updates);
        Assert.True(second.Completed);
        Assert.EndsWith("step-00000003", second.ResumedFrom);
        Assert.Equal(10, updates); // the task's own state came back (3) and went on

        var expected = Metrics(straight).Select(Values).ToList();
        var actual = Metrics(interrupted).Select(Values).ToList();
        Assert.Equal(10, expected.Count);
        Assert.Equal(expected, actual);

        // The final weights, buffers (queue, pointer, momentum copy) and optimizer state are identical too.
        var a = Weights(full.Checkpoint!);
        var b = Weights(second.Checkpoint!);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.Contains("text_queue", a.Keys);
        Assert.Contains("text_proj_m.weight", a.Keys);
        foreach (var (key, t) in a) Assert.True(t.equal(b[key]).all().item<bool>(), key);
        Assert.Equal(File.ReadAllBytes(Path.Combine(full.Checkpoint!, "optimizer.bin")), File.ReadAllBytes(Path.Combine(second.Checkpoint!, "optimizer.bin")));
        if (precision == "bfloat16") Assert.Equal(ScalarType.Float32, a["vision.encoder.layers.0.mlp.fc1.weight"].dtype); // masters are saved
        foreach (var t in a.Values.Concat(b.Values)) t.Dispose();
        Directory.Delete(straight, recursive: true);
        Directory.Delete(interrupted, recursive: true);
    }

    [Fact]
    public void ACrashWhileWritingACheckpointLeavesThePreviousOneLoadable()
    {
        string run = world.NewRunDir();
        var recipe = world.Recipe(run, "train.max_steps=4");
        Assert.True(world.Train(recipe).Completed);
        var store = new CheckpointStore(Path.Combine(run, "checkpoints"));
        string good = store.Latest()!;
        Assert.EndsWith("step-00000004", good);

        // A write that dies half way (an exception here; a SIGKILL leaves the same temporary folder behind).
        var e = Assert.Throws<IOException>(() => store.Save("step-00000005", dir =>
        {
            File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), new byte[100]);
            throw new IOException("disk full");
        }, keep: 2));
        Assert.Equal("disk full", e.Message);
        Assert.Equal(good, store.Latest());
        Assert.False(Directory.Exists(Path.Combine(store.Directory, "step-00000005")));

        // What a kill leaves: a temporary folder with partial files, an incomplete step folder, a stale pointer temp file.
        string temp = Path.Combine(store.Directory, ".tmp-step-00000005-deadbeef");
        Directory.CreateDirectory(temp);
        File.WriteAllBytes(Path.Combine(temp, "model.safetensors"), new byte[10]);
        Directory.CreateDirectory(Path.Combine(store.Directory, "step-00000006"));
        File.WriteAllText(Path.Combine(store.Directory, "latest.tmp-0badf00d"), "step-00000006");
        Assert.Equal(good, store.Latest());

        // A pointer naming a missing folder falls back to the newest complete checkpoint.
        File.WriteAllText(Path.Combine(store.Directory, CheckpointStore.LatestFile), "step-00000099\n");
        Assert.Equal(good, store.Latest());

        var resumed = world.Train(world.Recipe(run, "train.max_steps=6"), resume: true);
        Assert.True(resumed.Completed);
        Assert.Equal(good, resumed.ResumedFrom);
        Assert.False(Directory.Exists(temp)); // cleaned up
        Assert.Equal(Enumerable.Range(1, 6), Metrics(run).Select(l => l.GetProperty("step").GetInt32()));
        Directory.Delete(run, recursive: true);
    }

    [Fact]
    public void AFinishedOrForeignRunIsNotOverwrittenOrResumedWrongly()
    {
        string run = world.NewRunDir();
        Assert.True(world.Train(world.Recipe(run, "train.max_steps=2")).Completed);
        var again = Assert.Throws<TrainingException>(() => world.Train(world.Recipe(run, "train.max_steps=2")));
        Assert.Contains("already holds checkpoints", again.Message);
        var otherBatch = Assert.Throws<TrainingException>(() => world.Train(world.Recipe(run, "train.max_steps=4", "data.batch_size=8"), resume: true));
        Assert.Contains("batches per epoch", otherBatch.Message);
        var otherSeed = Assert.Throws<TrainingException>(() => world.Train(world.Recipe(run, "train.max_steps=4", "seed=8"), resume: true));
        Assert.Contains("seed", otherSeed.Message);
        // Resuming a finished run with a larger budget continues it.
        var more = world.Train(world.Recipe(run, "train.max_steps=4"), resume: true);
        Assert.True(more.Completed);
        Assert.Equal(4, more.Step);
        // A folder another process trains into is refused (the lock is an exclusive open: flock on Unix).
        using (new FileStream(Path.Combine(run, ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var busy = Assert.Throws<TrainingException>(() => world.Train(world.Recipe(run, "train.max_steps=6"), resume: true));
            Assert.Contains("is in use by another training process", busy.Message);
        }
        Assert.Equal(6, world.Train(world.Recipe(run, "train.max_steps=6"), resume: true).Step);
        Directory.Delete(run, recursive: true);
    }

    [Fact]
    public void GradientsAreResetToNoneAndBFloat16KeepsFloat32Masters()
    {
        string run = world.NewRunDir();
        var recipe = world.Recipe(run, "train.precision=bfloat16", "train.max_steps=2", "train.gradient_checkpointing=true");
        var seen = new List<(ScalarType Model, bool MasterHasGrad)>();
        manual_seed(recipe.Seed);
        var dataset = TrainingData.LoadDataset(recipe.Data);
        using var task = new ContrastiveTestTask(recipe.Model, recipe.Data.ImageSize);
        using var trainer = new Trainer<ImageTextBatch>(task, new ImageTextBatchSource(TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed)),
            TrainerOptions.FromConfig(recipe));
        task.AfterStep = (ctx, model) =>
        {
            Assert.Equal(ScalarType.BFloat16, ctx.ComputeType);
            seen.Add((model.vision_proj.weight!.dtype, model.vision_proj.weight!.grad is not null));
        };
        Assert.True(model_is_checkpointed(task));
        var result = trainer.Run();
        Assert.True(result.Completed);
        Assert.All(seen, s => Assert.Equal((ScalarType.BFloat16, false), s)); // the model's bf16 grads were moved into the masters
        Assert.All(trainer.Optimizer.ParamGroups.Cast<ParamGroup>().SelectMany(g => g.Parameters), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.All(task.Model.parameters(), p => Assert.Null(p.grad));     // set to none after the step
        Directory.Delete(run, recursive: true);

        static bool model_is_checkpointed(ContrastiveTestTask t) => ((TinyClip)t.Model).vision.encoder.GradientCheckpointing;
    }

    [Fact]
    public void TiedWeightsTrainInFloat32AndAreRefusedClearlyInBFloat16()
    {
        string run = world.NewRunDir();
        var recipe = world.Recipe(run, "train.max_steps=2");
        var dataset = TrainingData.LoadDataset(recipe.Data);
        using (var task = new TiedTestTask(recipe.Data.ImageSize))
        using (var trainer = new Trainer<ImageTextBatch>(task, new ImageTextBatchSource(TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed)), TrainerOptions.FromConfig(recipe)))
        {
            Assert.Equal(3, trainer.Optimizer.ParamGroups.Cast<ParamGroup>().Single().Parameters.Count()); // the shared weight once, two biases
            Assert.True(trainer.Run().Completed);
            var linears = (TiedTestTask.TiedLinears)task.Model;
            Assert.Same(linears.a.weight, linears.b.weight);
        }
        Directory.Delete(run, recursive: true);

        using var bf16 = new TiedTestTask(recipe.Data.ImageSize);
        var e = Assert.Throws<TrainingException>(() => new Trainer<ImageTextBatch>(bf16, new ImageTextBatchSource(TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed)),
            TrainerOptions.FromConfig(recipe) with { Precision = Precision.BFloat16 }));
        Assert.Contains("parameters 'a.weight' and 'b.weight' are one tied tensor", e.Message);
        Assert.Equal(ScalarType.Float32, bf16.Model.parameters().First().dtype); // refused before anything was converted
    }

    /// <summary>The regression task's weight and bias before and after one optimizer step of <paramref name="overrides"/>.</summary>
    private (Tensor Weight, Tensor Bias, Tensor NewWeight, Tensor NewBias) OneStep(params string[] overrides)
    {
        string run = world.NewRunDir();
        try
        {
            var recipe = world.Recipe(run, [.. overrides, "train.max_steps=1", "train.warmup_steps=0"]);
            manual_seed(1);
            var dataset = TrainingData.LoadDataset(recipe.Data);
            using var task = new RegressionTestTask(recipe.Data.ImageSize);
            var linear = (Linear)((Sequential)task.Model).children().Last();
            Tensor weight = linear.weight!.detach().clone(), bias = linear.bias!.detach().clone();
            using var trainer = new Trainer<ImageTextBatch>(task, new ImageTextBatchSource(TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed)),
                TrainerOptions.FromConfig(recipe));
            Assert.True(trainer.Run().Completed);
            Assert.Equal(1e-3, Metrics(run).Single().GetProperty("lr").GetDouble(), 15); // the schedule's rate is logged, not a group's
            return (weight, bias, linear.weight!.detach().clone(), linear.bias!.detach().clone());
        }
        finally
        {
            Directory.Delete(run, recursive: true);
        }
    }

    [Fact]
    public void LearningRateScalesMultiplyAModulesStepAndZeroFreezesIt()
    {
        var (w, b, w1, b1) = OneStep();
        var (w2, b2, w2After, b2After) = OneStep("""train.lr_scales={"linear.weight": 0.25, "linear.bias": 0}""");
        Assert.True(w.allclose(w2, 0, 0) && b.allclose(b2, 0, 0)); // same start
        // AdamW's first step is -lr (wd p + g / (|g| + eps)): linear in the learning rate, so the move is a quarter.
        using var full = w1 - w;
        using var quarter = w2After - w2;
        Assert.True(full.abs().max().item<float>() > 1e-4, "the unscaled step must move the weight");
        double diff = (quarter - full * 0.25).abs().max().item<float>();
        Assert.True(diff <= 1e-3 * full.abs().max().item<float>(), $"scaled step differs from a quarter by {diff:E3}");
        Assert.False((b1 - b).abs().max().item<float>() == 0, "the unscaled step must move the bias");
        Assert.True(b2After.eq(b2).all().ToBoolean(), "a scale of 0 must leave the bias unchanged");

        // A module that names no parameter, or a negative scale, is a recipe error naming the key.
        var unknown = Assert.Throws<TrainingConfigException>(() => OneStep("""train.lr_scales={"vision_model": 0.1}"""));
        Assert.Equal("train.lr_scales", unknown.Key);
        Assert.Contains("'vision_model', which names no trained parameter (names start with: linear)", unknown.Message);
        var negative = Assert.Throws<TrainingConfigException>(() => world.Recipe(Path.Combine(world.Directory, "not-created"), """train.lr_scales={"linear": -1}"""));
        Assert.Equal("train.lr_scales.linear", negative.Key);
    }
}
