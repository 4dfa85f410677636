namespace BlipSharp.Training.Optimization;

/// <summary>
/// The learning-rate schedules of salesforce/BLIP's <c>utils.py</c>, as pure functions of the position in training.
/// Apply the value with <see cref="BlipOptimizer.SetLearningRate(TorchSharp.Modules.OptimizerHelper, double)"/>. pretrain.py: <see cref="Step"/> at the start
/// of every epoch and <see cref="Warmup"/> at every batch of epoch 0; the fine-tuning scripts: <see cref="Cosine"/>
/// at the start of every epoch.
/// </summary>
public static class LearningRateSchedules
{
    /// <summary>
    /// <c>cosine_lr_schedule</c>: <c>(init - min) * 0.5 * (1 + cos(pi * epoch / maxEpoch)) + min</c>;
    /// <paramref name="initLr"/> at epoch 0, <paramref name="minLr"/> at <paramref name="maxEpoch"/>.
    /// </summary>
    public static double Cosine(int epoch, int maxEpoch, double initLr, double minLr)
    {
        if (maxEpoch <= 0) throw new ArgumentOutOfRangeException(nameof(maxEpoch), maxEpoch, "must be positive.");
        return (initLr - minLr) * 0.5 * (1.0 + Math.Cos(Math.PI * epoch / maxEpoch)) + minLr;
    }

    /// <summary>
    /// <c>warmup_lr_schedule</c>: linear from <paramref name="initLr"/> at step 0 to <paramref name="maxLr"/> at
    /// <paramref name="maxStep"/>, then held: <c>min(max, init + (max - init) * step / maxStep)</c>.
    /// </summary>
    public static double Warmup(long step, long maxStep, double initLr, double maxLr)
    {
        if (maxStep <= 0) throw new ArgumentOutOfRangeException(nameof(maxStep), maxStep, "must be positive.");
        return Math.Min(maxLr, initLr + (maxLr - initLr) * step / maxStep);
    }

    /// <summary><c>step_lr_schedule</c>: <c>max(min, init * decayRate^epoch)</c> (BLIP pretraining: decay 0.9 per epoch).</summary>
    public static double Step(int epoch, double initLr, double minLr, double decayRate) =>
        Math.Max(minLr, initLr * Math.Pow(decayRate, epoch));
}
