using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using BlipSharp.Checkpoints;
using BlipSharp.Modeling.Vision;
using BlipSharp.Training.Data;
using BlipSharp.Training.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace BlipSharp.Training.Training;

/// <summary>
/// The training loop, task-agnostic: it reads batches, asks the task for a loss, backpropagates, clips, steps AdamW
/// on a learning-rate schedule, logs and writes checkpoints. It knows nothing of ITC, ITM or queues.
/// </summary>
/// <remarks>
/// <para>
/// One optimizer step is one dispose scope: <see cref="TrainerOptions.GradientAccumulationSteps"/> loader batches
/// (fewer at the end of an epoch), each loss divided by that count and backpropagated, then the optional global
/// gradient-norm clipping, the AdamW step, and <see cref="ITrainingTask{TBatch}.AfterOptimizerStep"/>. Gradients are
/// reset to none (PyTorch's <c>zero_grad(set_to_none=True)</c>) so a parameter that gets no gradient is not decayed.
/// Before each micro-batch the torch generator is seeded from (seed, step, micro-batch), so dropout and sampling are
/// reproducible and a resumed run needs no generator state.
/// </para>
/// <para>
/// bfloat16 (<see cref="Precision.BFloat16"/>): TorchSharp has no autocast, so the whole model is converted to
/// bfloat16 and runs forward and backward in it (LayerNorm, softmax and the losses included, unless the task
/// upcasts), while the optimizer keeps float32 master copies of the trainable parameters: after each micro-batch
/// the bfloat16 gradients are added into float32 master gradients, clipping and AdamW run on the masters, and the
/// masters are rounded back into the model. Checkpoints hold the float32 masters (buffers such as queues are saved
/// in the model's bfloat16). This is mixed precision with master weights, not autocast: activations and the
/// gradients of one micro-batch are bfloat16.
/// </para>
/// <para>
/// Checkpoints (<c>checkpoints/step-N/</c>): <c>model.safetensors</c> (the model's <c>state_dict</c>, buffers included),
/// <c>optimizer.bin</c> (TorchSharp's AdamW state), <c>scheduler.json</c>, <c>config.json</c> (the resolved recipe)
/// and <c>trainer_state.json</c> (<see cref="TrainerState"/>), written atomically by <see cref="CheckpointStore"/>
/// every <see cref="TrainerOptions.CheckpointEvery"/> steps, at epoch ends, at the end and when the run is cancelled
/// (after the current step). Resuming restores all of it and continues with the same batches, so the losses equal an
/// uninterrupted run's exactly (CPU, same thread count).
/// </para>
/// </remarks>
/// <typeparam name="TBatch">The batch type.</typeparam>
public sealed class Trainer<TBatch> : IDisposable where TBatch : IDisposable
{
    /// <summary>The model weights file of a checkpoint.</summary>
    public const string ModelFile = "model.safetensors";

    /// <summary>The optimizer state file of a checkpoint (TorchSharp's <c>save_state_dict</c> format).</summary>
    public const string OptimizerFile = "optimizer.bin";

    /// <summary>The scheduler description of a checkpoint.</summary>
    public const string SchedulerFile = "scheduler.json";

    /// <summary>The folder of the run folder that holds the checkpoints (<c>checkpoints/step-N/</c>).</summary>
    public const string CheckpointsDirectory = "checkpoints";

    /// <summary>The resolved recipe, in the run folder and in every checkpoint.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The metrics file in the run folder.</summary>
    public const string MetricsFile = "metrics.jsonl";

    private readonly ITrainingTask<TBatch> _task;
    private readonly IBatchSource<TBatch> _data;
    private readonly TrainerOptions _options;
    private readonly TrainedParameter[] _parameters;
    private readonly AdamW _optimizer;
    private readonly double[] _learningRateScales;
    private readonly CheckpointStore _store;
    private readonly Action<string> _log;

    /// <summary>Prepares training <paramref name="task"/> on <paramref name="data"/>: builds the optimizer and, for bfloat16, the master weights.</summary>
    /// <param name="task">The task; its model is converted to bfloat16 in place when asked.</param>
    /// <param name="data">The batches.</param>
    /// <param name="options">The settings.</param>
    public Trainer(ITrainingTask<TBatch> task, IBatchSource<TBatch> data, TrainerOptions options)
    {
        _task = task ?? throw new ArgumentNullException(nameof(task));
        _data = data ?? throw new ArgumentNullException(nameof(data));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _log = options.Log ?? (_ => { });
        Validate(options);
        if (data.BatchesPerEpoch < 1) throw new ArgumentException("the batch source has no complete batch", nameof(data));
        StepsPerEpoch = (data.BatchesPerEpoch + options.GradientAccumulationSteps - 1) / options.GradientAccumulationSteps;
        TotalSteps = Math.Min(options.MaxSteps ?? long.MaxValue, (long)options.Epochs * StepsPerEpoch);
        ComputeType = options.Precision == Precision.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;
        _store = new CheckpointStore(Path.Combine(options.OutputDirectory, CheckpointsDirectory));

        var model = task.Model;
        var names = new Dictionary<Parameter, string>(ReferenceEqualityComparer.Instance);
        foreach (var (name, p) in model.named_parameters()) names.TryAdd(p, name); // a shared (tied) parameter keeps its first name
        IReadOnlyList<ParameterGroup> groups;
        try
        {
            groups = ParameterGroups.ScaleLearningRates(task.ParameterGroups(options.WeightDecay), options.LearningRateScales);
        }
        catch (ArgumentException e) when (e.ParamName == "scales")
        {
            int suffix = e.Message.LastIndexOf(" (Parameter", StringComparison.Ordinal); // ArgumentException appends the parameter's name
            throw new TrainingConfigException("train.lr_scales", suffix >= 0 ? e.Message[..suffix] : e.Message);
        }
        var grouped = new List<(string Name, ParameterGroup Group)>();
        var seen = new Dictionary<string, ParameterGroup>(StringComparer.Ordinal);
        foreach (var g in groups)
        {
            foreach (var (_, p) in g.Parameters)
            {
                if (!names.TryGetValue(p, out string? name))
                    throw new ArgumentException($"parameter group '{g.Name}' holds a parameter that is not in the task's model", nameof(task));
                if (seen.TryGetValue(name, out var other))
                {
                    if (ReferenceEquals(other, g)) continue; // listed twice in one group (a tied weight): optimize it once
                    throw new ArgumentException($"parameter '{name}' is in groups '{other.Name}' and '{g.Name}'", nameof(task));
                }
                seen[name] = g;
                grouped.Add((name, g));
            }
        }
        if (grouped.Count == 0) throw new ArgumentException("the task's parameter groups are empty: nothing to train", nameof(task));

        var byName = names.ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);
        if (options.Precision == Precision.BFloat16)
        {
            Dictionary<string, Parameter> current;
            Dictionary<string, Parameter> masters;
            if (grouped.All(x => byName[x.Name].dtype == ScalarType.BFloat16))
            {
                // The task built the model in bfloat16 (a model with tied tensors cannot be converted afterwards):
                // the masters start from its values.
                masters = grouped.ToDictionary(x => x.Name, x => new Parameter(byName[x.Name].detach().to_type(ScalarType.Float32).DetachFromDisposeScope(), true),
                    StringComparer.Ordinal);
                current = byName;
            }
            else
            {
                // float32 masters first (converting the module disposes its float32 parameters), then the bfloat16 model.
                RefuseSharedParameters(model);
                masters = grouped.ToDictionary(x => x.Name, x => new Parameter(byName[x.Name].detach().clone().DetachFromDisposeScope(), true),
                    StringComparer.Ordinal);
                model.to(ScalarType.BFloat16);
                current = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
            }
            _parameters = grouped.Select(x => new TrainedParameter(x.Name, current[x.Name], masters[x.Name])).ToArray();
        }
        else
        {
            var notFloat32 = grouped.FirstOrDefault(x => byName[x.Name].dtype != ScalarType.Float32);
            if (notFloat32.Name is not null)
                throw new TrainingException($"train.precision float32, but parameter '{notFloat32.Name}' is {byName[notFloat32.Name].dtype}");
            _parameters = grouped.Select(x => new TrainedParameter(x.Name, byName[x.Name], byName[x.Name])).ToArray();
        }

        // AdamW over the parameters it updates (the masters under bfloat16), in the task's groups.
        var optimized = _parameters.ToDictionary(p => p.Name, p => p.Optimized, StringComparer.Ordinal);
        var optimizerGroups = groups
            .Select(g => new ParameterGroup(g.Name, grouped.Where(x => ReferenceEquals(x.Group, g)).Select(x => (x.Name, optimized[x.Name])).ToArray(),
                g.WeightDecay, g.LearningRateScale))
            .Where(g => g.Parameters.Count > 0)
            .ToArray();
        _learningRateScales = optimizerGroups.Select(g => g.LearningRateScale).ToArray();
        _optimizer = BlipOptimizer.CreateAdamW(optimizerGroups, new AdamWOptions
        {
            LearningRate = options.Schedule.LearningRate(default),
            WeightDecay = options.WeightDecay,
            Beta1 = options.Betas.Beta1,
            Beta2 = options.Betas.Beta2,
            Eps = options.Eps,
        });

        if (options.GradientCheckpointing)
        {
            int encoders = EnableGradientCheckpointing(model, options.CheckpointLayers);
            if (encoders == 0) _log("gradient checkpointing was asked for but the model has no ViT encoder (BlipEncoder); it has no effect");
        }
    }

    /// <summary>Optimizer steps per epoch: loader batches divided by the accumulation, rounded up.</summary>
    public int StepsPerEpoch { get; }

    /// <summary>Optimizer steps of the whole run.</summary>
    public long TotalSteps { get; }

    /// <summary>The float type the model computes in.</summary>
    public ScalarType ComputeType { get; }

    /// <summary>The checkpoints of the run folder.</summary>
    public CheckpointStore Checkpoints => _store;

    /// <summary>The optimizer (TorchSharp's AdamW over the float32 parameters or masters).</summary>
    public AdamW Optimizer => _optimizer;

    /// <summary>Turns gradient checkpointing on in every <see cref="BlipEncoder"/> of <paramref name="model"/>.</summary>
    /// <param name="model">The model.</param>
    /// <param name="lastLayers">Only the last N blocks of each encoder; null: all.</param>
    /// <returns>How many encoders were found.</returns>
    public static int EnableGradientCheckpointing(nn.Module model, int? lastLayers)
    {
        int n = 0;
        foreach (var (_, m) in model.named_modules())
        {
            if (m is not BlipEncoder encoder) continue;
            encoder.GradientCheckpointing = true;
            encoder.CheckpointedLayers = lastLayers;
            n++;
        }
        return n;
    }

    /// <summary>
    /// Trains to the end, or until <paramref name="cancellationToken"/> is cancelled: then the current step finishes,
    /// a checkpoint is written and the result says the run is not completed.
    /// </summary>
    /// <param name="cancellationToken">Stops the run after the current step (Ctrl+C, SIGTERM).</param>
    public TrainingResult Run(CancellationToken cancellationToken = default)
    {
        Directory.CreateDirectory(_options.OutputDirectory);
        using var runLock = LockRunFolder();
        int leftovers = _store.DeleteLeftovers();
        if (leftovers > 0) _log($"deleted {leftovers} unfinished checkpoint folder(s) in {_store.Directory}");
        string metricsPath = Path.Combine(_options.OutputDirectory, MetricsFile);

        var state = new TrainerState { Seed = _options.Seed, BatchesPerEpoch = _data.BatchesPerEpoch, GradAccumSteps = _options.GradientAccumulationSteps, Precision = _options.Precision };
        string? resumedFrom = null;
        if (_options.Resume && _store.Latest() is { } latest)
        {
            state = Load(latest);
            resumedFrom = latest;
            _log($"resuming from {latest}: step {state.Step}, epoch {state.Epoch}, batch {state.Next.Batch}");
        }
        else if (_store.List().Count > 0)
        {
            throw new TrainingException(
                $"{_options.OutputDirectory} already holds checkpoints; resume the run (--resume) or choose another output folder");
        }
        else if (_options.Resume)
        {
            _log($"no checkpoint in {_store.Directory}; starting from scratch");
        }
        if (state.Step >= TotalSteps) _log($"nothing to train: the checkpoint is at step {state.Step} and the run has {TotalSteps} steps (raise train.max_steps or train.epochs)");
        int dropped = MetricsLog.TruncateAfter(metricsPath, state.Step);
        if (dropped > 0) _log($"dropped {dropped} metrics line(s) after step {state.Step} (written after the checkpoint)");
        if (_options.Config is { } config)
            WriteAtomically(Path.Combine(_options.OutputDirectory, ConfigFile), config.ToJsonString(TrainingConfigLoader.JsonOptions));

        if (!CpuReproducibility.IsConfigured && _task.Model.parameters().FirstOrDefault()?.device_type == DeviceType.CPU)
            _log($"{CpuReproducibility.Variable} is not set: MKL's float32 products can differ in the last bit from run to run, so a resumed run may drift from an uninterrupted one (call CpuReproducibility.Configure() at startup)");
        using var metrics = new MetricsLog(metricsPath);
        _task.Model.train();
        string? lastCheckpoint = resumedFrom;
        long savedStep = resumedFrom is null ? -1 : state.Step;
        double? lastLoss = null;
        var clock = Stopwatch.StartNew();
        double elapsedBefore = state.ElapsedSeconds;
        long sessionSteps = 0;
        var window = new Queue<(double Start, long Samples)>();
        long samplesSinceLog = 0;
        double lastLogTime = 0;

        using var stop = new CancellationTokenSource();
        IEnumerator<TBatch>? batches = null;
        TBatch? pending = default;
        bool hasPending = false;
        try
        {
            batches = _data.Read(state.Next, stop.Token).GetEnumerator();
            while (state.Step < TotalSteps && !cancellationToken.IsCancellationRequested)
            {
                int epoch = state.Next.Epoch;
                int first = state.Next.Batch;
                int end = Math.Min(_data.BatchesPerEpoch, first + _options.GradientAccumulationSteps);

                var micro = new List<TBatch>(end - first);
                while (true)
                {
                    if (!hasPending)
                    {
                        if (!batches.MoveNext()) break;
                        pending = batches.Current;
                        hasPending = true;
                    }
                    var position = _data.PositionOf(pending!);
                    if (position.Epoch == epoch && position.Batch < end)
                    {
                        if (position.Batch < first) throw new InvalidOperationException($"the batch source went back to {position} while at ({epoch}, {first})");
                        micro.Add(pending!);
                        hasPending = false;
                        continue;
                    }
                    break;
                }

                int stepInEpoch = first / _options.GradientAccumulationSteps;
                double lr = _options.Schedule.LearningRate(new ScheduleClock(epoch, state.Step, stepInEpoch, StepsPerEpoch, TotalSteps));
                var next = end == _data.BatchesPerEpoch ? new LoaderPosition(epoch + 1, 0) : new LoaderPosition(epoch, end);
                double started = clock.Elapsed.TotalSeconds;
                StepResult result;
                if (micro.Count == 0)
                {
                    _log($"step {state.Step + 1}: every batch of positions {first}..{end - 1} of epoch {epoch} failed to load; no update");
                    result = new StepResult(double.NaN, new Dictionary<string, double>(), null, 0);
                }
                else
                {
                    using (ManagedCollectionPause.Begin())
                        result = RunStep(micro, epoch, end - first, state.Step, lr);
                    lastLoss = result.Loss;
                }

                sessionSteps++;
                double now = clock.Elapsed.TotalSeconds;
                var last = new Dictionary<string, double>(result.Metrics, StringComparer.Ordinal) { ["loss"] = result.Loss, ["lr"] = lr };
                if (result.GradNorm is { } norm) last["grad_norm"] = norm;
                state = state with
                {
                    Step = state.Step + 1,
                    Epoch = next.Epoch,
                    Next = next,
                    Samples = state.Samples + result.Samples,
                    ElapsedSeconds = elapsedBefore + now,
                    Last = last,
                };

                window.Enqueue((started, result.Samples));
                while (window.Count > 20) window.Dequeue();
                double rate = now > window.Peek().Start ? window.Sum(w => w.Samples) / (now - window.Peek().Start) : 0; // over the last 20 steps
                samplesSinceLog += result.Samples;
                TimeSpan? remaining = sessionSteps > 0 ? TimeSpan.FromSeconds(now / sessionSteps * (TotalSteps - state.Step)) : null;
                _options.Progress?.Report(new TrainingProgress(state.Step, TotalSteps, epoch, _options.Epochs, result.Loss, result.Metrics, lr, rate,
                    TimeSpan.FromSeconds(state.ElapsedSeconds), remaining));

                if (state.Step % _options.LogEvery == 0 || state.Step == TotalSteps)
                {
                    var line = new List<KeyValuePair<string, object>>
                    {
                        new("step", state.Step), new("epoch", epoch), new("lr", lr), new("loss", result.Loss),
                    };
                    line.AddRange(result.Metrics.Select(m => new KeyValuePair<string, object>(m.Key, m.Value)));
                    if (result.GradNorm is { } g) line.Add(new("grad_norm", g));
                    double interval = now - lastLogTime;
                    line.Add(new("images_per_s", interval > 0 ? Math.Round(samplesSinceLog / interval, 2) : 0.0));
                    line.Add(new("elapsed_s", Math.Round(state.ElapsedSeconds, 2)));
                    line.Add(new("peak_rss_mib", PeakResidentMebibytes()));
                    metrics.Write(line);
                    samplesSinceLog = 0;
                    lastLogTime = now;
                }

                bool epochEnded = next.Epoch != epoch;
                bool due = (_options.CheckpointEvery > 0 && state.Step % _options.CheckpointEvery == 0)
                           || (epochEnded && _options.CheckpointAtEpochEnd)
                           || state.Step == TotalSteps
                           || cancellationToken.IsCancellationRequested;
                if (due && savedStep != state.Step)
                {
                    lastCheckpoint = Save(state);
                    savedStep = state.Step;
                    _log($"checkpoint {lastCheckpoint} (step {state.Step}, epoch {epoch}{(epochEnded ? ", end of epoch" : "")})");
                }
            }
            if (state.Step < TotalSteps && savedStep != state.Step)
            {
                lastCheckpoint = Save(state);
                savedStep = state.Step;
                _log($"checkpoint {lastCheckpoint} (step {state.Step})");
            }
            if (state.Step < TotalSteps) _log($"stopped at step {state.Step} of {TotalSteps}; continue with --resume");
        }
        finally
        {
            if (hasPending) pending!.Dispose();
            stop.Cancel();
            batches?.Dispose();
        }
        return new TrainingResult(state.Step >= TotalSteps, state.Step, TotalSteps, lastCheckpoint, lastLoss, resumedFrom);
    }

    private string Save(TrainerState state)
    {
        state = state with { Task = _task.SaveState() };
        return _store.Save(CheckpointStore.NameOf(state.Step), dir =>
        {
            using (var scope = NewDisposeScope())
            {
                var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
                foreach (var (name, t) in _task.Model.state_dict()) tensors[name] = t;
                foreach (var p in _parameters) tensors[p.Name] = p.Optimized; // the float32 masters under bfloat16
                SafeTensors.Save(Path.Combine(dir, ModelFile), tensors, new Dictionary<string, string>
                {
                    ["format"] = "pt",
                    ["step"] = state.Step.ToString(CultureInfo.InvariantCulture),
                });
            }
            using (var stream = File.Create(Path.Combine(dir, OptimizerFile)))
            using (var writer = new BinaryWriter(stream))
                _optimizer.save_state_dict(writer);
            File.WriteAllText(Path.Combine(dir, SchedulerFile), JsonSerializer.Serialize(new
            {
                schedule = (object)_options.Schedule,
                kind = _options.Schedule.GetType().Name,
                step = state.Step,
                last_lr = state.Last.GetValueOrDefault("lr"),
                note = "the learning rate is a function of (epoch, step); the trainer sets it before every step",
            }, ScheduleJson));
            if (_options.Config is { } config) File.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(TrainingConfigLoader.JsonOptions));
            state.Write(Path.Combine(dir, CheckpointStore.StateFile));
        }, _options.KeepCheckpoints);
    }

    private static readonly JsonSerializerOptions ScheduleJson = new(TrainingConfigLoader.JsonOptions) { UnmappedMemberHandling = default };

    private TrainerState Load(string dir)
    {
        var state = TrainerState.Read(Path.Combine(dir, CheckpointStore.StateFile));
        if (state.Format != 1) throw new InvalidDataException($"{dir}: trainer state format {state.Format} is not supported");
        if (state.BatchesPerEpoch != _data.BatchesPerEpoch)
            throw new TrainingException(
                $"{dir} was written with {state.BatchesPerEpoch} batches per epoch, the data now gives {_data.BatchesPerEpoch}: the dataset or batch size changed, so the run cannot continue where it stopped");
        if (state.GradAccumSteps != _options.GradientAccumulationSteps)
            throw new TrainingException($"{dir} was written with train.grad_accum_steps {state.GradAccumSteps}, not {_options.GradientAccumulationSteps}");
        if (state.Precision != _options.Precision)
            throw new TrainingException($"{dir} was written with train.precision {state.Precision}, not {_options.Precision}");
        if (state.Seed != _options.Seed)
            throw new TrainingException($"{dir} was written with seed {state.Seed}, not {_options.Seed}");

        string weightsPath = Path.Combine(dir, ModelFile);
        var weights = SafeTensors.Load(weightsPath);
        try
        {
            StateDictLoader.LoadStrict(_task.Model, weights, weightsPath); // under bfloat16: the masters rounded, as the model had them
            using var _ = no_grad();
            foreach (var p in _parameters)
                if (!ReferenceEquals(p.Model, p.Optimized)) p.Optimized.copy_(weights[p.Name]);
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
        string optimizerPath = Path.Combine(dir, OptimizerFile);
        using (var stream = File.OpenRead(optimizerPath))
        using (var reader = new BinaryReader(stream))
        {
            try
            {
                _optimizer.load_state_dict(reader);
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or EndOfStreamException)
            {
                throw new TrainingException($"{optimizerPath} does not fit this model's optimizer: {e.Message}", e);
            }
        }
        if (state.Task is { } taskState) _task.LoadState(taskState);
        return state;
    }

    private StepResult RunStep(List<TBatch> micro, int epoch, int planned, long step, double lr)
    {
        using var scope = NewDisposeScope();
        ClearGradients();
        BlipOptimizer.SetLearningRate(_optimizer, lr, _learningRateScales);
        double lossSum = 0;
        var sums = new Dictionary<string, double>(StringComparer.Ordinal);
        int samples = 0;
        StepContext? context = null;
        for (int i = 0; i < micro.Count; i++)
        {
            var batch = micro[i];
            try
            {
                var position = _data.PositionOf(batch);
                long seed = SeededRandom.DeriveSeed(_options.Seed, step, i, 0x7EED);
                manual_seed(seed);
                context = new StepContext
                {
                    Epoch = epoch,
                    Step = step,
                    BatchInEpoch = position.Batch,
                    BatchesPerEpoch = _data.BatchesPerEpoch,
                    MicroBatch = i,
                    MicroBatches = planned,
                    LearningRate = lr,
                    ComputeType = ComputeType,
                    Seed = seed,
                };
                var output = _task.Step(batch, context);
                var loss = output.Loss;
                if (loss.numel() != 1) throw new InvalidOperationException($"the task's loss must be a scalar, got shape [{string.Join(", ", loss.shape)}]");
                if (!loss.requires_grad) throw new InvalidOperationException("the task's loss does not require a gradient (was it computed under no_grad, or is nothing trainable?)");
                using (var scaled = planned > 1 ? loss / planned : loss.alias())
                    scaled.backward();
                double value = loss.detach().to_type(ScalarType.Float64).item<double>();
                if (!double.IsFinite(value))
                    throw new TrainingException($"the loss is {value} at step {step + 1} (epoch {epoch}, batch {position.Batch}); the last checkpoint is unaffected");
                lossSum += value;
                foreach (var (name, metric) in output.Metrics ?? new Dictionary<string, Tensor>())
                    sums[name] = sums.GetValueOrDefault(name) + metric.detach().to_type(ScalarType.Float64).item<double>();
                samples += _data.SampleCount(batch);
                AccumulateMasterGradients();
            }
            finally
            {
                batch.Dispose();
            }
        }

        double? norm = null;
        if (_options.ClipGradNorm is { } max)
            norm = nn.utils.clip_grad_norm_(_parameters.Select(p => p.Optimized), max);
        _optimizer.step();
        if (ComputeType != ScalarType.Float32)
        {
            using var _ = no_grad();
            foreach (var p in _parameters) p.Model.copy_(p.Optimized);
        }
        using (no_grad())
            _task.AfterOptimizerStep(context!);
        ClearGradients();
        int n = micro.Count;
        return new StepResult(lossSum / n, sums.ToDictionary(kv => kv.Key, kv => kv.Value / n, StringComparer.Ordinal), norm, samples);
    }

    private void ClearGradients()
    {
        foreach (var p in _parameters)
        {
            p.Model.grad = null;
            p.Optimized.grad = null;
        }
    }

    /// <summary>Under bfloat16: adds the model's gradients into the float32 masters' and clears the model's.</summary>
    private void AccumulateMasterGradients()
    {
        if (ComputeType == ScalarType.Float32) return;
        using var _ = no_grad();
        foreach (var p in _parameters)
        {
            using var g = p.Model.grad;
            if (g is null) continue;
            using var master = p.Optimized.grad;
            if (master is null) p.Optimized.grad = g.to_type(ScalarType.Float32);
            else master.add_(g);
            p.Model.grad = null;
        }
    }

    /// <summary>
    /// Holds <c>RUN/.lock</c> for the whole run (an exclusive open: an advisory <c>flock</c> on Unix, released by the
    /// kernel even when the process is killed), so that two processes never train into one folder.
    /// </summary>
    private FileStream LockRunFolder()
    {
        string path = Path.Combine(_options.OutputDirectory, ".lock");
        try
        {
            var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            stream.SetLength(0);
            stream.Write(System.Text.Encoding.UTF8.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n"));
            stream.Flush();
            return stream;
        }
        catch (IOException e)
        {
            string owner = "";
            try
            {
                owner = File.ReadAllText(path).Trim();
            }
            catch (IOException)
            {
            }
            throw new TrainingException($"{_options.OutputDirectory} is in use by another training process{(owner.Length > 0 ? $" (pid {owner})" : "")}", e);
        }
    }

    /// <summary>
    /// TorchSharp 0.107's <c>Module.to(dtype)</c> converts a parameter shared by two submodules twice, disposing it the
    /// first time, and then fails with "Tensor invalid"; say so before the model is half converted. (A submodule
    /// registered twice is fine: TorchSharp visits it once.)
    /// </summary>
    private static void RefuseSharedParameters(nn.Module model)
    {
        var owners = new Dictionary<Parameter, string>(ReferenceEqualityComparer.Instance);
        var visited = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        foreach (var (path, module) in model.named_modules().Prepend(("", model)))
        {
            if (!visited.Add(module)) continue;
            foreach (var (name, p) in module.named_parameters(recurse: false))
            {
                string key = path.Length == 0 ? name : path + "." + name;
                if (owners.TryGetValue(p, out string? first))
                    throw new TrainingException(
                        $"train.precision bfloat16: parameters '{first}' and '{key}' are one tied tensor, which TorchSharp's Module.to(bfloat16) cannot convert; share the submodule instead of the parameter, or train in float32");
                owners[p] = key;
            }
        }
    }

    private static void WriteAtomically(string path, string text)
    {
        string temp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }

    private static void Validate(TrainerOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.OutputDirectory)) throw new ArgumentException("OutputDirectory is required", nameof(o));
        ArgumentNullException.ThrowIfNull(o.Schedule, nameof(o.Schedule));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.Epochs, 1, nameof(o.Epochs));
        if (o.MaxSteps is { } m) ArgumentOutOfRangeException.ThrowIfLessThan(m, 1, nameof(o.MaxSteps));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.GradientAccumulationSteps, 1, nameof(o.GradientAccumulationSteps));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.LogEvery, 1, nameof(o.LogEvery));
        ArgumentOutOfRangeException.ThrowIfNegative(o.CheckpointEvery, nameof(o.CheckpointEvery));
        ArgumentOutOfRangeException.ThrowIfLessThan(o.KeepCheckpoints, 1, nameof(o.KeepCheckpoints));
        if (o.ClipGradNorm is { } c && !(c > 0)) throw new ArgumentOutOfRangeException(nameof(o.ClipGradNorm), c, "must be positive");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _optimizer.Dispose();
        foreach (var p in _parameters)
            if (!ReferenceEquals(p.Model, p.Optimized)) p.Optimized.Dispose();
    }

    /// <summary>A trained parameter: the model's tensor and the one AdamW updates (the same one in float32; a float32 master under bfloat16).</summary>
    private sealed record TrainedParameter(string Name, Parameter Model, Parameter Optimized);

    private sealed record StepResult(double Loss, IReadOnlyDictionary<string, double> Metrics, double? GradNorm, int Samples);

    /// <summary>
    /// The process's peak resident memory so far in MiB (Linux: <c>VmHWM</c>), the number that decides whether a
    /// recipe fits a machine; logged with every metrics line.
    /// </summary>
    private static double PeakResidentMebibytes()
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return Math.Round(process.PeakWorkingSet64 / (1024.0 * 1024.0), 1);
    }
}
