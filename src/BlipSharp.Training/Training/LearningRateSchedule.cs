using BlipSharp.Training.Optimization;

namespace BlipSharp.Training.Training;

/// <summary>Where the run is, for a learning-rate schedule. Steps are optimizer steps.</summary>
/// <param name="Epoch">The epoch, from 0.</param>
/// <param name="Step">Optimizer steps completed before this one (the global step, from 0).</param>
/// <param name="StepInEpoch">The step within the epoch, from 0.</param>
/// <param name="StepsPerEpoch">Optimizer steps in one epoch.</param>
/// <param name="TotalSteps">Optimizer steps in the whole run.</param>
public readonly record struct ScheduleClock(int Epoch, long Step, int StepInEpoch, int StepsPerEpoch, long TotalSteps);

/// <summary>
/// The learning rate as a pure function of where the run is, so a resumed run needs no scheduler state: the
/// trainer sets the rate before every optimizer step.
/// </summary>
public interface ILearningRateSchedule
{
    /// <summary>The learning rate of the step at <paramref name="clock"/>.</summary>
    /// <param name="clock">The step.</param>
    double LearningRate(ScheduleClock clock);
}

/// <summary>How the rate decays after the warm-up.</summary>
public enum LearningRateDecay
{
    /// <summary>No decay: the initial rate throughout.</summary>
    Constant,

    /// <summary>BLIP's <c>step_lr_schedule</c>, per epoch: <c>max(min_lr, lr * decay_rate^epoch)</c> (pretraining).</summary>
    Step,

    /// <summary>
    /// BLIP's <c>cosine_lr_schedule</c>, per epoch: <c>min_lr + (lr - min_lr) * (1 + cos(pi * epoch / epochs)) / 2</c>
    /// (fine-tuning); with <see cref="LearningRateSchedule.PerStep"/>, over the steps of the whole run instead.
    /// </summary>
    Cosine,
}

/// <summary>
/// BLIP's schedules (<see cref="LearningRateSchedules"/>) as one function of the step: a linear warm-up
/// (<c>warmup_lr_schedule</c>) from <see cref="WarmupLearningRate"/> over the first <see cref="WarmupSteps"/> optimizer
/// steps, capped by the decayed rate, then per-epoch step decay or cosine decay.
/// </summary>
/// <remarks>
/// BLIP applies its warm-up only within epoch 0 (and jumps to the epoch-1 rate if epoch 0 is shorter than the
/// warm-up); here the warm-up counts global steps and is capped by the decayed rate, which is the same whenever
/// epoch 0 has at least <see cref="WarmupSteps"/> steps (BLIP's pretraining: about 4,900 steps per epoch).
/// </remarks>
public sealed record LearningRateSchedule : ILearningRateSchedule
{
    /// <summary>The peak rate (BLIP's <c>init_lr</c>).</summary>
    public required double LearningRate { get; init; }

    /// <summary>The floor of the decay (<c>min_lr</c>).</summary>
    public double MinLearningRate { get; init; }

    /// <summary>Where the warm-up starts (<c>warmup_lr</c>).</summary>
    public double WarmupLearningRate { get; init; }

    /// <summary>Optimizer steps of linear warm-up (<c>warmup_steps</c>); 0: none.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>The decay after the warm-up.</summary>
    public LearningRateDecay Decay { get; init; } = LearningRateDecay.Constant;

    /// <summary>Per-epoch factor of <see cref="LearningRateDecay.Step"/> (<c>lr_decay_rate</c>).</summary>
    public double DecayRate { get; init; } = 1.0;

    /// <summary>Epochs of the run, the period of <see cref="LearningRateDecay.Cosine"/> (<c>max_epoch</c>).</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Cosine: decay at every step over the whole run instead of once per epoch.</summary>
    public bool PerStep { get; init; }

    double ILearningRateSchedule.LearningRate(ScheduleClock clock) => At(clock);

    /// <summary>The rate of the step at <paramref name="clock"/>.</summary>
    /// <param name="clock">The step.</param>
    public double At(ScheduleClock clock)
    {
        double lr = Decay switch
        {
            LearningRateDecay.Constant => LearningRate,
            LearningRateDecay.Step => LearningRateSchedules.Step(clock.Epoch, LearningRate, MinLearningRate, DecayRate),
            LearningRateDecay.Cosine when PerStep => CosineOverSteps(clock.Step, Math.Max(1, clock.TotalSteps)),
            LearningRateDecay.Cosine => LearningRateSchedules.Cosine(clock.Epoch, Epochs, LearningRate, MinLearningRate),
            _ => throw new InvalidOperationException($"unknown decay {Decay}"),
        };
        if (clock.Step < WarmupSteps)
            lr = Math.Min(lr, LearningRateSchedules.Warmup(clock.Step, WarmupSteps, WarmupLearningRate, LearningRate));
        return lr;
    }

    /// <summary>BLIP's cosine formula with the step in place of the epoch.</summary>
    private double CosineOverSteps(long step, long totalSteps) =>
        (LearningRate - MinLearningRate) * 0.5 * (1.0 + Math.Cos(Math.PI * step / totalSteps)) + MinLearningRate;
}
