using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace BlipSharp.Training.Training;

/// <summary>
/// A training recipe, read from a JSON file in <c>configs/</c> (snake_case keys) by <see cref="TrainingConfigLoader"/>,
/// with command-line overrides applied. Absent keys take the defaults below, which are BLIP's ViT-B pretraining
/// values where BLIP has one. The resolved recipe (defaults filled in) is saved next to every checkpoint.
/// </summary>
public sealed record TrainingConfig
{
    /// <summary>Which task to train (see <see cref="TrainingTasks"/>), e.g. <c>pretrain</c>.</summary>
    public string Task { get; init; } = "pretrain";

    /// <summary>Seeds the data order, the augmentations, the initial weights and every step's torch generator.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>The training data and its transform.</summary>
    public DataConfig Data { get; init; } = new();

    /// <summary>The task's model settings, read by the task (the trainer does not look inside).</summary>
    public JsonObject Model { get; init; } = new();

    /// <summary>
    /// The task's evaluation settings, read by the fine-tuning task (<see cref="Finetuning.IFinetuneTask.Evaluate"/>):
    /// the annotation files of each split and the inference settings (k for retrieval, beam size, answer list). Empty
    /// for pretraining.
    /// </summary>
    public JsonObject Evaluation { get; init; } = new();

    /// <summary>Optimizer, schedule, precision and loop settings.</summary>
    public TrainConfig Train { get; init; } = new();

    /// <summary>Where metrics and checkpoints go, and how often.</summary>
    public OutputConfig Output { get; init; } = new();

    /// <summary>Throws <see cref="TrainingConfigException"/> naming the first key with a bad value.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Task)) throw new TrainingConfigException("task", "must name a task");
        Data.Validate();
        Train.Validate();
        Output.Validate();
    }
}

/// <summary>The <c>data</c> section: BLIP annotation files and the train transform.</summary>
public sealed record DataConfig
{
    /// <summary>
    /// Training files, read in order: annotation files (BLIP's <c>train_file</c>: JSON lists or JSON lines of
    /// <c>{image, caption}</c>) and, for image-text training (<see cref="TrainingData.LoadDataset"/>), WebDataset
    /// <c>.tar</c> shards. The fine-tuning tasks read their own formats (retrieval, VQA, NLVR: annotation files only).
    /// </summary>
    public IReadOnlyList<string> TrainFiles { get; init; } = [];

    /// <summary>Folder the image paths are relative to; null: each annotation file's folder.</summary>
    public string? ImageRoot { get; init; }

    /// <summary>Square training resolution (BLIP's pretraining: 224).</summary>
    public int ImageSize { get; init; } = 224;

    /// <summary>Samples per loader batch (BLIP: 75 per GPU).</summary>
    public int BatchSize { get; init; } = 75;

    /// <summary>Smallest area fraction of the random resized crop (BLIP's pretraining: 0.2; fine-tuning: 0.5).</summary>
    public double MinScale { get; init; } = 0.2;

    /// <summary>Largest area fraction of the random resized crop.</summary>
    public double MaxScale { get; init; } = 1.0;

    /// <summary>Smallest aspect ratio (width / height) of the random resized crop (torchvision's and BLIP's 3/4).</summary>
    public double MinRatio { get; init; } = 3.0 / 4.0;

    /// <summary>Largest aspect ratio of the random resized crop (4/3); <c>min_ratio = max_ratio = 1</c> crops without distorting shapes.</summary>
    public double MaxRatio { get; init; } = 4.0 / 3.0;

    /// <summary>Apply BLIP's RandomAugment (2 ops, magnitude 5).</summary>
    public bool RandAugment { get; init; } = true;

    /// <summary>Probability of a horizontal flip.</summary>
    public double FlipProbability { get; init; } = 0.5;

    /// <summary>Captions are cut to this many words (BLIP's <c>pre_caption(caption, 30)</c>).</summary>
    public int MaxWords { get; init; } = 30;

    /// <summary>Text put before every caption (captioning fine-tuning uses <c>"a picture of "</c>).</summary>
    public string Prompt { get; init; } = "";

    /// <summary>Swap "left" and "right" in the caption of a mirrored image.</summary>
    public bool SwapLeftRightOnFlip { get; init; }

    /// <summary>Threads that decode and augment.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>Batches prepared ahead.</summary>
    public int Prefetch { get; init; } = 2;

    internal void Validate()
    {
        if (TrainFiles.Count == 0) throw new TrainingConfigException("data.train_files", "must list at least one annotation file (or .tar shard)");
        if (TrainFiles.Any(string.IsNullOrWhiteSpace)) throw new TrainingConfigException("data.train_files", "has an empty path");
        Positive(ImageSize, "data.image_size");
        Positive(BatchSize, "data.batch_size");
        Positive(MaxWords, "data.max_words");
        Positive(Workers, "data.workers");
        Positive(Prefetch, "data.prefetch");
        if (!(MinScale > 0 && MinScale <= MaxScale && MaxScale <= 1))
            throw new TrainingConfigException("data.min_scale", $"and data.max_scale must satisfy 0 < min_scale <= max_scale <= 1 (got {MinScale} and {MaxScale})");
        if (!(MinRatio > 0 && MinRatio <= MaxRatio && double.IsFinite(MaxRatio)))
            throw new TrainingConfigException("data.min_ratio", $"and data.max_ratio must satisfy 0 < min_ratio <= max_ratio (got {MinRatio} and {MaxRatio})");
        if (!(FlipProbability >= 0 && FlipProbability <= 1)) throw new TrainingConfigException("data.flip_probability", $"must be within 0..1 (got {FlipProbability})");
    }

    internal static void Positive(long value, string key)
    {
        if (value < 1) throw new TrainingConfigException(key, $"must be at least 1 (got {value})");
    }
}

/// <summary>Floating-point precision of the forward and backward passes.</summary>
public enum Precision
{
    /// <summary>Everything in float32.</summary>
    [JsonStringEnumMemberName("float32")]
    Float32,

    /// <summary>
    /// The model computes in bfloat16 (forward and backward); float32 master weights are kept for the optimizer, as
    /// mixed-precision training without autocast (TorchSharp has none). See <see cref="Trainer{TBatch}"/>.
    /// </summary>
    [JsonStringEnumMemberName("bfloat16")]
    BFloat16,
}

/// <summary>The <c>train</c> section: loop, optimizer (AdamW), schedule, precision and memory settings.</summary>
public sealed record TrainConfig
{
    /// <summary>Epochs to train (BLIP's <c>max_epoch</c>: 20).</summary>
    public int Epochs { get; init; } = 20;

    /// <summary>Stop after this many optimizer steps in all (null: run every epoch).</summary>
    public long? MaxSteps { get; init; }

    /// <summary>Peak learning rate (BLIP's <c>init_lr</c>: 3e-4).</summary>
    public double Lr { get; init; } = 3e-4;

    /// <summary>Floor of the decay (<c>min_lr</c>: 1e-6).</summary>
    public double MinLr { get; init; } = 1e-6;

    /// <summary>Start of the warm-up (<c>warmup_lr</c>: 1e-6).</summary>
    public double WarmupLr { get; init; } = 1e-6;

    /// <summary>Optimizer steps of linear warm-up (<c>warmup_steps</c>: 3000).</summary>
    public int WarmupSteps { get; init; } = 3000;

    /// <summary>Decay after the warm-up: <c>step</c> (per epoch, BLIP's pretraining), <c>cosine</c> or <c>constant</c>.</summary>
    public LearningRateDecay LrDecay { get; init; } = LearningRateDecay.Step;

    /// <summary>Per-epoch factor of the step decay (<c>lr_decay_rate</c>: 0.9).</summary>
    public double LrDecayRate { get; init; } = 0.9;

    /// <summary>Cosine decay at every step instead of once per epoch (BLIP: per epoch).</summary>
    public bool LrPerStep { get; init; }

    /// <summary>AdamW's decoupled weight decay (BLIP: 0.05).</summary>
    public double WeightDecay { get; init; } = 0.05;

    /// <summary>
    /// Learning-rate multipliers by module name, e.g. <c>{"vision_model": 0.1}</c>: that module's parameters train at
    /// the schedule's rate times the value (0 freezes them). Empty (BLIP): one rate for every parameter. A name that
    /// matches no trained parameter is an error.
    /// </summary>
    public IReadOnlyDictionary<string, double> LrScales { get; init; } = new Dictionary<string, double>();

    /// <summary>AdamW's betas (PyTorch's defaults, which BLIP uses).</summary>
    public IReadOnlyList<double> Betas { get; init; } = [0.9, 0.999];

    /// <summary>AdamW's epsilon.</summary>
    public double Eps { get; init; } = 1e-8;

    /// <summary>Loader batches per optimizer step; the loss of each is divided by their number.</summary>
    public int GradAccumSteps { get; init; } = 1;

    /// <summary>Clip the global gradient L2 norm to this (null: no clipping; BLIP does not clip).</summary>
    public double? ClipGradNorm { get; init; }

    /// <summary><c>float32</c> or <c>bfloat16</c> (see <see cref="Training.Precision"/>).</summary>
    public Precision Precision { get; init; } = Precision.Float32;

    /// <summary>Recompute the ViT blocks in backward instead of storing their activations.</summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>With gradient checkpointing, only the last N ViT blocks (BLIP's <c>vit_ckpt_layer</c>); null: all.</summary>
    public int? CheckpointLayers { get; init; }

    /// <summary>The schedule these settings describe (the cosine period is <see cref="Epochs"/>).</summary>
    public LearningRateSchedule Schedule() => new()
    {
        LearningRate = Lr,
        MinLearningRate = MinLr,
        WarmupLearningRate = WarmupLr,
        WarmupSteps = WarmupSteps,
        Decay = LrDecay,
        DecayRate = LrDecayRate,
        Epochs = Epochs,
        PerStep = LrPerStep,
    };

    internal void Validate()
    {
        DataConfig.Positive(Epochs, "train.epochs");
        if (MaxSteps is { } max) DataConfig.Positive(max, "train.max_steps");
        if (!(Lr > 0) || double.IsInfinity(Lr)) throw new TrainingConfigException("train.lr", $"must be a positive number (got {Lr})");
        if (!(MinLr >= 0) || MinLr > Lr) throw new TrainingConfigException("train.min_lr", $"must be within 0..train.lr (got {MinLr})");
        if (!(WarmupLr >= 0)) throw new TrainingConfigException("train.warmup_lr", $"must be at least 0 (got {WarmupLr})");
        if (WarmupSteps < 0) throw new TrainingConfigException("train.warmup_steps", $"must be at least 0 (got {WarmupSteps})");
        if (!(LrDecayRate > 0)) throw new TrainingConfigException("train.lr_decay_rate", $"must be positive (got {LrDecayRate})");
        if (!(WeightDecay >= 0)) throw new TrainingConfigException("train.weight_decay", $"must be at least 0 (got {WeightDecay})");
        foreach (var (module, scale) in LrScales)
            if (!(scale >= 0) || double.IsInfinity(scale))
                throw new TrainingConfigException($"train.lr_scales.{module}", $"must be a finite number at least 0 (got {scale})");
        if (Betas.Count != 2 || Betas.Any(b => !(b >= 0 && b < 1)))
            throw new TrainingConfigException("train.betas", $"must be two numbers within [0, 1) (got [{string.Join(", ", Betas)}])");
        if (!(Eps > 0)) throw new TrainingConfigException("train.eps", $"must be positive (got {Eps})");
        DataConfig.Positive(GradAccumSteps, "train.grad_accum_steps");
        if (ClipGradNorm is { } clip && !(clip > 0)) throw new TrainingConfigException("train.clip_grad_norm", $"must be positive or null (got {clip})");
        if (CheckpointLayers < 0) throw new TrainingConfigException("train.checkpoint_layers", $"must be at least 0 or null (got {CheckpointLayers})");
    }
}

/// <summary>The <c>output</c> section: the run folder, logging and checkpoints.</summary>
public sealed record OutputConfig
{
    /// <summary>The run folder: <c>config.json</c>, <c>metrics.jsonl</c> and <c>checkpoints/</c>.</summary>
    public string Dir { get; init; } = "runs/pretrain";

    /// <summary>Write a metrics line (and update the progress) every this many optimizer steps.</summary>
    public int LogEvery { get; init; } = 50;

    /// <summary>Write a checkpoint every this many optimizer steps (0: only at epoch ends and on interruption).</summary>
    public int CheckpointEvery { get; init; } = 1000;

    /// <summary>Write a checkpoint at the end of every epoch (BLIP saves one per epoch).</summary>
    public bool CheckpointAtEpochEnd { get; init; } = true;

    /// <summary>Keep this many most recent checkpoints and delete older ones.</summary>
    public int KeepCheckpoints { get; init; } = 3;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(Dir)) throw new TrainingConfigException("output.dir", "must name a folder");
        DataConfig.Positive(LogEvery, "output.log_every");
        if (CheckpointEvery < 0) throw new TrainingConfigException("output.checkpoint_every", $"must be at least 0 (got {CheckpointEvery})");
        DataConfig.Positive(KeepCheckpoints, "output.keep_checkpoints");
    }
}

/// <summary>A bad training recipe: an unknown key, a value of the wrong type or out of range. The message names the key.</summary>
public sealed class TrainingConfigException : Exception
{
    /// <summary>Creates the error for <paramref name="key"/>.</summary>
    /// <param name="key">The dotted key, e.g. <c>train.lr</c>.</param>
    /// <param name="problem">What is wrong with it.</param>
    public TrainingConfigException(string key, string problem) : base($"{key} {problem}") => Key = key;

    /// <summary>Creates an error about the whole recipe.</summary>
    /// <param name="message">The message.</param>
    /// <param name="inner">The cause.</param>
    public TrainingConfigException(string message, Exception? inner = null) : base(message, inner) => Key = "";

    /// <summary>The dotted key at fault ("" when the recipe as a whole is).</summary>
    public string Key { get; }
}
