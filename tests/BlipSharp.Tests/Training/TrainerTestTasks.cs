using System.Text.Json.Nodes;
using BlipSharp.Configuration;
using BlipSharp.Modeling.Vision;
using BlipSharp.Training.Data;
using BlipSharp.Training.Synthetic;
using BlipSharp.Training.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace BlipSharp.Tests.Training;

/// <summary>
/// A small real image-text task for the trainer tests (the pretraining task lives on another branch): a tiny ViT with
/// attention dropout and a bag-of-hashed-words text encoder, trained with a contrastive loss whose image-to-text side
/// also scores a queue of momentum text features. It has everything the trainer must checkpoint and restore: dropout
/// (the torch generator), a buffer queue and pointer, a momentum copy updated after the optimizer step, task state.
/// </summary>
internal sealed class ContrastiveTestTask : ITrainingTask<ImageTextBatch>
{
    public const string Name = "test-contrastive";

    private readonly TinyClip _model;
    private long _updates;

    public ContrastiveTestTask(JsonObject model, int imageSize)
    {
        _model = new TinyClip(
            hidden: (int?)model["hidden"] ?? 32,
            layers: (int?)model["layers"] ?? 2,
            imageSize: imageSize,
            dropout: (double?)model["dropout"] ?? 0.1,
            embed: (int?)model["embed_dim"] ?? 16,
            queue: (int?)model["queue_size"] ?? 32);
    }

    public nn.Module Model => _model;

    /// <summary>Called after every optimizer step while the gradients are still there (for tests that inspect them).</summary>
    public Action<StepContext, TinyClip>? AfterStep { get; set; }

    public long Updates => _updates;

    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        var m = _model;
        using var pixels = batch.Pixels.to_type(context.ComputeType);
        var image = m.vision.Encode(pixels)[.., 0, ..];                                      // (B, D)
        var imageFeat = functional.normalize(m.vision_proj.forward(image), dim: -1);         // (B, E)
        var (ids, mask) = Hash(batch.Captions, context.ComputeType);
        var words = m.word_embeddings.forward(ids);                                          // (B, L, D)
        var text = (words * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim: true).clamp_min(1); // (B, D)
        var textFeat = functional.normalize(m.text_proj.forward(text), dim: -1);            // (B, E)
        var temp = m.temp.clamp(0.001, 0.5);
        Tensor textFeatM;
        Tensor candidates;
        using (no_grad())
        {
            textFeatM = functional.normalize(m.text_proj_m.forward(text.detach()), dim: -1);  // (B, E)
            candidates = cat([textFeatM.t(), m.text_queue.clone()], 1);                       // (E, B + Q)
        }
        var i2t = imageFeat.matmul(candidates) / temp;                                       // (B, B + Q)
        var t2i = textFeat.matmul(imageFeat.t()) / temp;                                      // (B, B)
        long b = batch.Count;
        var targets = arange(b, dtype: ScalarType.Int64);
        var lossI2t = functional.cross_entropy(i2t.to_type(ScalarType.Float32), targets);
        var lossT2i = functional.cross_entropy(t2i.to_type(ScalarType.Float32), targets);
        using (no_grad())
        {
            long q = m.text_queue.shape[1];
            long ptr = m.queue_ptr.item<long>();
            long n = Math.Min(b, q - ptr);
            m.text_queue[.., (int)ptr..(int)(ptr + n)] = textFeatM.t()[.., ..(int)n];
            m.queue_ptr.fill_((ptr + n) % q);
        }
        return TrainingStepOutput.Of((lossI2t + lossT2i) / 2, ("itc_i2t", lossI2t), ("itc_t2i", lossT2i));
    }

    public void AfterOptimizerStep(StepContext context)
    {
        AfterStep?.Invoke(context, _model);
        foreach (var (pm, p) in _model.text_proj_m.parameters().Zip(_model.text_proj.parameters()))
            pm.mul_(0.9).add_(p, alpha: 0.1);
        _updates++;
    }

    public JsonObject? SaveState() => new() { ["updates"] = _updates };

    public void LoadState(JsonObject state) => _updates = (long)state["updates"]!;

    public void Dispose() => _model.Dispose();

    /// <summary>Words hashed into 256 buckets (FNV-1a), padded with 0, at most 12 per caption; the mask in <paramref name="dtype"/>.</summary>
    private static (Tensor Ids, Tensor Mask) Hash(IReadOnlyList<string> captions, ScalarType dtype)
    {
        const int length = 12;
        var ids = new long[captions.Count * length];
        var mask = new float[captions.Count * length];
        for (int i = 0; i < captions.Count; i++)
        {
            var words = captions[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (int j = 0; j < Math.Min(length, words.Length); j++)
            {
                uint h = 2166136261;
                foreach (char c in words[j]) h = (h ^ c) * 16777619;
                ids[i * length + j] = 1 + h % 255;
                mask[i * length + j] = 1;
            }
        }
        return (tensor(ids, [captions.Count, length]), tensor(mask, [captions.Count, length]).to_type(dtype));
    }

    /// <summary>Registers the task under <see cref="Name"/> (idempotent).</summary>
    public static void Register() =>
        TrainingTasks.Register(Name, (config, _) => new ContrastiveTestTask(config.Model, config.Data.ImageSize));
}

/// <summary>The test task's module: field names are the state_dict keys.</summary>
internal sealed class TinyClip : nn.Module
{
#pragma warning disable IDE1006
    public BlipVisionModel vision;
    public Embedding word_embeddings;
    public Linear vision_proj;
    public Linear text_proj;
    public Linear text_proj_m;
    public Parameter temp;
    public Tensor text_queue;
    public Tensor queue_ptr;
#pragma warning restore IDE1006

    public TinyClip(int hidden, int layers, int imageSize, double dropout, int embed, int queue) : base(nameof(TinyClip))
    {
        vision = new BlipVisionModel(new BlipVisionConfig
        {
            HiddenSize = hidden, IntermediateSize = 2 * hidden, NumHiddenLayers = layers, NumAttentionHeads = 4,
            ImageSize = imageSize, PatchSize = 8, AttentionDropout = dropout, LayerNormEps = 1e-6,
        });
        word_embeddings = Embedding(256, hidden, padding_idx: 0);
        vision_proj = Linear(hidden, embed);
        text_proj = Linear(hidden, embed);
        text_proj_m = Linear(hidden, embed);
        temp = Parameter(full(1, 0.07f));
        text_queue = functional.normalize(randn(embed, queue), dim: 0);
        queue_ptr = zeros(1, dtype: ScalarType.Int64);
        RegisterComponents();
        using var _ = no_grad();
        foreach (var (pm, p) in text_proj_m.parameters().Zip(text_proj.parameters()))
        {
            pm.copy_(p);
            pm.requires_grad = false;
        }
    }
}

/// <summary>
/// A per-sample loss (a linear map of the pixels regressed onto a caption statistic, MSE averaged over the batch), so
/// that two half batches accumulated equal one full batch; optional dropout exercises the seeding.
/// </summary>
internal sealed class RegressionTestTask : ITrainingTask<ImageTextBatch>
{
    private readonly Sequential _model;

    public RegressionTestTask(int imageSize, float scale = 1f)
    {
        _model = Sequential(("flatten", Flatten()), ("linear", Linear(3 * imageSize * imageSize, 1)));
        Scale = scale;
    }

    /// <summary>Multiplies the loss (to make gradients large for the clipping test).</summary>
    public float Scale { get; }

    public nn.Module Model => _model;

    public Action<StepContext, nn.Module>? AfterStep { get; set; }

    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        var prediction = _model.forward(batch.Pixels.to_type(context.ComputeType)).squeeze(-1).to_type(ScalarType.Float32); // (B)
        var target = tensor(batch.Captions.Select(c => c.Length / 10f).ToArray());                                            // (B)
        var loss = functional.mse_loss(prediction, target) * Scale;
        return TrainingStepOutput.Of(loss);
    }

    public void AfterOptimizerStep(StepContext context) => AfterStep?.Invoke(context, _model);

    public void Dispose() => _model.Dispose();
}

/// <summary>A small synthetic world shared by the trainer tests of one class.</summary>
public sealed class TrainerWorld : IDisposable
{
    public TrainerWorld()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("blipsharp-trainer-").FullName;
        SyntheticWorld.Generate(Directory, new SyntheticWorldOptions
        {
            Seed = 3, ImageSize = 32, PretrainImages = 48, HumanImages = 0, ValImages = 0, TestImages = 0, VqaImages = 0, ClassifyImages = 0,
        });
        AnnotationFile = Path.Combine(Directory, SyntheticWorld.PretrainFile);
        ContrastiveTestTask.Register();
    }

    public string Directory { get; }

    public string AnnotationFile { get; }

    /// <summary>A fresh folder for one run.</summary>
    public string NewRunDir() => System.IO.Directory.CreateTempSubdirectory("blipsharp-run-").FullName;

    /// <summary>A recipe for the contrastive test task on this world: 16 px crops of 32 px images, batches of 4.</summary>
    public TrainingConfig Recipe(string runDir, params string[] overrides)
    {
        var json = JsonNode.Parse($$"""
        {
          "task": "{{ContrastiveTestTask.Name}}",
          "seed": 7,
          "data": { "train_files": [{{System.Text.Json.JsonSerializer.Serialize(AnnotationFile)}}], "image_size": 16, "batch_size": 4,
                    "min_scale": 0.5, "rand_augment": false, "workers": 1, "prefetch": 2 },
          "model": { "hidden": 16, "layers": 2, "dropout": 0.1, "embed_dim": 8, "queue_size": 16 },
          "train": { "epochs": 2, "lr": 1e-3, "min_lr": 1e-5, "warmup_lr": 1e-5, "warmup_steps": 3, "lr_decay": "step",
                     "lr_decay_rate": 0.5, "weight_decay": 0.05 },
          "output": { "dir": {{System.Text.Json.JsonSerializer.Serialize(runDir)}}, "log_every": 1, "checkpoint_every": 4, "keep_checkpoints": 2 }
        }
        """)!.AsObject();
        return TrainingConfigLoader.FromJson(json, overrides);
    }

    /// <summary>
    /// Trains the recipe as <c>blip pretrain</c> does (seeded task, loader, trainer); <paramref name="stopAfter"/>
    /// cancels the run once that many steps are done (as Ctrl+C would).
    /// </summary>
    public TrainingResult Train(TrainingConfig recipe, bool resume = false, long? stopAfter = null, Action<ITrainingTask<ImageTextBatch>>? inspect = null)
    {
        manual_seed(recipe.Seed);
        var dataset = TrainingData.LoadDataset(recipe.Data);
        var loader = TrainingData.CreateLoader(dataset, recipe.Data, recipe.Seed);
        using var task = TrainingTasks.Create(recipe, new TrainingTaskContext(dataset, _ => { }));
        using var cts = new CancellationTokenSource();
        var options = TrainerOptions.FromConfig(recipe) with
        {
            Resume = resume,
            Progress = new SyncProgress(p =>
            {
                if (p.Step == stopAfter) cts.Cancel();
            }),
        };
        using var trainer = new Trainer<ImageTextBatch>(task, new ImageTextBatchSource(loader), options);
        var result = trainer.Run(cts.Token);
        inspect?.Invoke(task);
        return result;
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>An <see cref="IProgress{T}"/> that calls back on the reporting thread (Progress&lt;T&gt; posts to the thread pool).</summary>
internal sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) => report(value);
}

/// <summary>Two linear maps sharing one weight tensor (as an LM head tied to the word embeddings).</summary>
internal sealed class TiedTestTask : ITrainingTask<ImageTextBatch>
{
    private readonly TiedLinears _model;

    public TiedTestTask(int imageSize) => _model = new TiedLinears(3 * imageSize * imageSize);

    public nn.Module Model => _model;

    public TrainingStepOutput Step(ImageTextBatch batch, StepContext context)
    {
        var x = batch.Pixels.to_type(context.ComputeType).flatten(1);                                   // (B, 3*S*S)
        var prediction = (_model.a.forward(x) + _model.b.forward(x)).squeeze(-1).to_type(ScalarType.Float32); // (B)
        return TrainingStepOutput.Of(functional.mse_loss(prediction, ones_like(prediction)));
    }

    public void Dispose() => _model.Dispose();

    internal sealed class TiedLinears : nn.Module
    {
#pragma warning disable IDE1006
        public Linear a;
        public Linear b;
#pragma warning restore IDE1006

        public TiedLinears(int inputs) : base(nameof(TiedLinears))
        {
            a = Linear(inputs, 1);
            b = Linear(inputs, 1);
            b.weight = a.weight;
            RegisterComponents();
        }
    }
}
