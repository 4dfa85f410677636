using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using BlipSharp.Configuration;
using BlipSharp.Modeling.Vision;
using BlipSharp.Training.Data;
using BlipSharp.Training.Training;
using TorchSharp;
using static TorchSharp.torch;

// Memory and time of ViT training steps, one configuration per child process so that each peak RSS (VmHWM) is its own.
//   dotnet run --project bench/TrainingBench -c Release                     all configurations, a table
//   dotnet run --project bench/TrainingBench -c Release -- one MODE ARGS   one configuration (what the table runs)
// Modes: vit (forward + backward of the ViT alone, with or without gradient checkpointing) and trainer (full Trainer
// steps, float32 or bfloat16 with float32 masters).

CpuReproducibility.Configure();
Setenv("OMP_WAIT_POLICY", "PASSIVE");
if (args.Length > 0 && args[0] == "one") return One(args[1..]);

var runs = new List<string[]>
{
    new[] { "vit", "plain", "224", "8", "12" },
    new[] { "vit", "ckpt", "224", "8", "12" },
    new[] { "trainer", "float32", "224", "4", "12" },
    new[] { "trainer", "bfloat16", "224", "4", "12" },
};
foreach (bool memory in new[] { true, false })
{
    Console.WriteLine(memory
        ? "Memory (MALLOC_MMAP_THRESHOLD_=131072, so RSS follows live tensors; times are slowed by the page faults):"
        : "Time (default malloc):");
    Console.WriteLine("| run | image | batch | layers | peak RSS (MiB) | RSS before (MiB) | fastest step (s) |");
    Console.WriteLine("|---|---|---|---|---|---|---|");
    foreach (var run in runs)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
        // Allocations from 128 KiB up get their own mapping, returned to the system when freed, so RSS follows the live
        // tensors instead of what glibc keeps cached (its adaptive threshold otherwise rises to 32 MiB).
        if (memory) info.Environment["MALLOC_MMAP_THRESHOLD_"] = "131072";
        info.ArgumentList.Add(typeof(Program).Assembly.Location);
        info.ArgumentList.Add("one");
        foreach (string a in run) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        string line = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        Console.WriteLine(line);
    }
    Console.WriteLine();
}
return 0;

static int One(string[] a)
{
    string kind = a[0], mode = a[1];
    int image = int.Parse(a[2], CultureInfo.InvariantCulture), batch = int.Parse(a[3], CultureInfo.InvariantCulture), layers = int.Parse(a[4], CultureInfo.InvariantCulture);
    set_num_threads(Math.Min(2, Environment.ProcessorCount));
    manual_seed(0);
    var config = new BlipVisionConfig { ImageSize = image, NumHiddenLayers = layers, LayerNormEps = 1e-6 }; // ViT-B/16
    double seconds;
    long before;
    long? peakDuringSteps = null;
    if (kind == "vit")
    {
        using var model = new BlipVisionModel(config);
        model.train();
        model.encoder.GradientCheckpointing = mode == "ckpt";
        using var pixels = randn(batch, 3, image, image);
        using var weights = randn(batch, config.NumPositions, config.HiddenSize);
        GC.Collect();
        before = Rss("VmRSS");
        ResetPeak();
        seconds = double.MaxValue;
        for (int i = 0; i < 4; i++)
        {
            var clock = Stopwatch.StartNew();
            using (NewDisposeScope())
            {
                foreach (var p in model.parameters()) p.grad = null;
                (model.Encode(pixels) * weights).sum().backward();
            }
            if (i > 0) seconds = Math.Min(seconds, clock.Elapsed.TotalSeconds); // the fastest step after the first
        }
    }
    else
    {
        string dir = Directory.CreateTempSubdirectory("blipsharp-bench-").FullName;
        using var task = new VitTask(config);
        var source = new RandomBatches(batch, image);
        var options = new TrainerOptions
        {
            OutputDirectory = dir,
            Schedule = new LearningRateSchedule { LearningRate = 1e-4 },
            MaxSteps = 4,
            Precision = mode == "bfloat16" ? Precision.BFloat16 : Precision.Float32,
            CheckpointAtEpochEnd = false,
            LogEvery = 1,
        };
        var times = new List<double>();
        var last = Stopwatch.StartNew();
        long stepPeak = 0; // read at every step, so the final checkpoint's write (which copies every tensor) is not counted
        using var trainer = new Trainer<RandomBatch>(task, source, options with
        {
            Progress = new StepTimer(() =>
            {
                times.Add(last.Elapsed.TotalSeconds);
                stepPeak = Math.Max(stepPeak, Rss("VmHWM"));
                last.Restart();
            }),
        });
        GC.Collect();
        before = Rss("VmRSS");
        ResetPeak();
        last.Restart();
        trainer.Run();
        seconds = times.Skip(1).Min(); // the fastest step after the first
        Directory.Delete(dir, true);
        peakDuringSteps = stepPeak;
    }
    long peak = peakDuringSteps ?? Rss("VmHWM");
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {kind} {mode} | {image} | {batch} | {layers} | {peak / 1024.0:F0} | {before / 1024.0:F0} | {seconds:F2} |"));
    return 0;
}

/// <summary>A kB figure of /proc/self/status.</summary>
static long Rss(string field)
{
    foreach (string line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith(field + ":", StringComparison.Ordinal))
            return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    return -1;
}

/// <summary>Resets VmHWM to the current RSS (Linux 4.0+).</summary>
static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

static void Setenv(string name, string value)
{
    if (OperatingSystem.IsLinux()) Native.setenv(name, value, 0);
}

static class Native
{
    [DllImport("libc")]
    public static extern int setenv(string name, string value, int overwrite);
}

sealed class StepTimer(Action step) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) => step();
}

sealed record RandomBatch(Tensor Pixels, LoaderPosition Position) : IDisposable
{
    public void Dispose() => Pixels.Dispose();
}

sealed class RandomBatches(int batch, int image) : IBatchSource<RandomBatch>
{
    public int BatchesPerEpoch => 1000;

    public IEnumerable<RandomBatch> Read(LoaderPosition start, CancellationToken cancellationToken)
    {
        for (var p = start; ; p = p.Batch + 1 == BatchesPerEpoch ? new LoaderPosition(p.Epoch + 1, 0) : p with { Batch = p.Batch + 1 })
        {
            cancellationToken.ThrowIfCancellationRequested();
            var g = new Generator((ulong)(p.Epoch * 100_000 + p.Batch));
            yield return new RandomBatch(randn([batch, 3, image, image], generator: g).DetachFromDisposeScope(), p);
        }
    }

    public LoaderPosition PositionOf(RandomBatch batch) => batch.Position;

    public int SampleCount(RandomBatch batch) => (int)batch.Pixels.shape[0];
}

/// <summary>ViT-B features regressed onto zero: a loss with the ViT's full backward.</summary>
sealed class VitTask(BlipVisionConfig config) : ITrainingTask<RandomBatch>
{
    private readonly BlipVisionModel _model = new(config);

    public nn.Module Model => _model;

    public TrainingStepOutput Step(RandomBatch batch, StepContext context)
    {
        var states = _model.Encode(batch.Pixels.to_type(context.ComputeType));   // (B, 1+N, D)
        return new TrainingStepOutput(states.to_type(ScalarType.Float32).pow(2).mean());
    }

    public void Dispose() => _model.Dispose();
}
