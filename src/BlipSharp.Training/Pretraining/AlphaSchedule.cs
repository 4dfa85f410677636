namespace BlipSharp.Training.Pretraining;

/// <summary>
/// The ramp of the momentum-distillation weight alpha in BLIP's training scripts: linear from 0 to its final
/// value over the first <c>rampEpochs</c> epochs, then constant. <c>pretrain.py</c> ramps over two epochs
/// (<c>alpha * min(1, (epoch * N + i) / (2 * N))</c>); <c>train_retrieval.py</c> over one (<c>alpha * min(1, i / N)</c> in
/// epoch 0).
/// </summary>
public static class AlphaSchedule
{
    /// <summary>BLIP's final alpha.</summary>
    public const double BlipAlpha = 0.4;

    /// <summary>Alpha at batch <paramref name="step"/> of <paramref name="epoch"/> (both from 0).</summary>
    /// <param name="alpha">Final value.</param>
    /// <param name="epoch">Epoch, from 0.</param>
    /// <param name="step">Batch within the epoch, from 0.</param>
    /// <param name="stepsPerEpoch">Batches per epoch (N).</param>
    /// <param name="rampEpochs">Epochs of the ramp (pretraining: 2; retrieval fine-tuning: 1).</param>
    public static double Ramp(double alpha, int epoch, long step, long stepsPerEpoch, double rampEpochs)
    {
        if (stepsPerEpoch <= 0) throw new ArgumentOutOfRangeException(nameof(stepsPerEpoch), stepsPerEpoch, "must be positive.");
        if (rampEpochs <= 0) return alpha;
        double progress = (epoch * (double)stepsPerEpoch + step) / (rampEpochs * stepsPerEpoch);
        return alpha * Math.Min(1.0, progress);
    }

    /// <summary>pretrain.py's schedule: ramp over the first two epochs.</summary>
    public static double Pretraining(int epoch, long step, long stepsPerEpoch, double alpha = BlipAlpha) =>
        Ramp(alpha, epoch, step, stepsPerEpoch, rampEpochs: 2);

    /// <summary>The fine-tuning scripts' schedule: ramp over the first epoch.</summary>
    public static double FineTuning(int epoch, long step, long stepsPerEpoch, double alpha = BlipAlpha) =>
        Ramp(alpha, epoch, step, stepsPerEpoch, rampEpochs: 1);
}
