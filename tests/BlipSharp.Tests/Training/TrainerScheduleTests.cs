using BlipSharp.Training.Training;
using Xunit;

namespace BlipSharp.Tests.Training;

/// <summary>The learning-rate schedules against BLIP's formulas worked by hand (utils.py: warmup/step/cosine_lr_schedule).</summary>
public sealed class TrainerScheduleTests
{
    private static ScheduleClock At(int epoch, long step, int stepsPerEpoch = 100, long total = 2000) =>
        new(epoch, step, (int)(step - (long)epoch * stepsPerEpoch), stepsPerEpoch, total);

    private static readonly LearningRateSchedule Pretrain = new()
    {
        LearningRate = 3e-4, MinLearningRate = 1e-6, WarmupLearningRate = 1e-6, WarmupSteps = 3000,
        Decay = LearningRateDecay.Step, DecayRate = 0.9, Epochs = 20,
    };

    [Theory]
    [InlineData(0, 1e-6)]                 // warmup_lr at step 0
    [InlineData(1, 1.0996666666666666e-6)] // 1e-6 + 2.99e-4 * 1/3000
    [InlineData(1500, 1.505e-4)]          // half way
    [InlineData(2999, 2.9990033333333335e-4)]
    [InlineData(3000, 3e-4)]              // init_lr from the end of the warm-up
    [InlineData(4000, 3e-4)]
    public void WarmupIsLinearFromWarmupLrToInitLr(long step, double expected)
    {
        var clock = new ScheduleClock(0, step, (int)step, 5000, 100000);
        Assert.Equal(expected, Pretrain.At(clock), 15);
    }

    [Theory]
    [InlineData(1, 2.7e-4)]
    [InlineData(2, 2.43e-4)]
    [InlineData(10, 1.0460353203e-4)]     // 3e-4 * 0.9^10
    [InlineData(19, 4.052555153e-5)]      // 3e-4 * 0.9^19
    public void StepDecayMultipliesByTheRateEachEpoch(int epoch, double expected)
    {
        var clock = new ScheduleClock(epoch, 5000L * epoch, 0, 5000, 100000);
        Assert.Equal(expected, Pretrain.At(clock), 12);
        Assert.Equal(Pretrain.At(clock), Pretrain.At(clock with { StepInEpoch = 4999, Step = 5000L * epoch + 4999 })); // per epoch, not per step
    }

    [Fact]
    public void StepDecayStopsAtMinLr()
    {
        var s = Pretrain with { DecayRate = 0.1 };
        Assert.Equal(3e-5, s.At(At(1, 3100)), 15);
        Assert.Equal(1e-6, s.At(At(5, 3500)));
    }

    [Fact]
    public void WarmupLongerThanAnEpochIsCappedByTheDecayedRate()
    {
        // BLIP warms up only inside epoch 0; here the warm-up goes on but never above the epoch's decayed rate.
        var s = Pretrain with { WarmupSteps = 200 };
        Assert.Equal(1e-6 + 2.99e-4 * 150 / 200, s.At(At(1, 150)), 15);
        Assert.Equal(2.7e-4, s.At(At(1, 199)), 15); // ramp 2.985e-4 above the epoch-1 rate: the rate
    }

    [Theory]
    [InlineData(0, 1e-5)]
    [InlineData(3, 5.05e-6)]              // (1e-5 - 1e-7) * 0.5 * (1 + cos(pi/2)) + 1e-7
    [InlineData(6, 1e-7)]
    public void CosineDecaysPerEpochToMinLr(int epoch, double expected)
    {
        var s = new LearningRateSchedule { LearningRate = 1e-5, MinLearningRate = 1e-7, Decay = LearningRateDecay.Cosine, Epochs = 6 };
        Assert.Equal(expected, s.At(At(epoch, epoch * 100L)), 15);
        Assert.Equal(s.At(At(epoch, epoch * 100L)), s.At(At(epoch, epoch * 100L + 99))); // constant within the epoch
    }

    [Fact]
    public void PerStepCosineFollowsTheGlobalStep()
    {
        var s = new LearningRateSchedule { LearningRate = 1e-3, MinLearningRate = 0, Decay = LearningRateDecay.Cosine, PerStep = true, WarmupSteps = 10, WarmupLearningRate = 0 };
        Assert.Equal(0, s.At(At(0, 0, total: 1000)));
        Assert.Equal(5e-4, s.At(At(0, 5, total: 1000)), 15);                         // warm-up ramp
        Assert.Equal(5e-4, s.At(At(5, 500, total: 1000)), 15);                       // half way down
        Assert.Equal(1e-3 * 0.5 * (1 + Math.Cos(Math.PI * 250 / 1000)), s.At(At(2, 250, total: 1000)), 15);
        Assert.True(s.At(At(2, 251, total: 1000)) < s.At(At(2, 250, total: 1000)));
    }

    [Fact]
    public void ConstantIgnoresEpochs()
    {
        var s = new LearningRateSchedule { LearningRate = 2e-4 };
        Assert.Equal(2e-4, s.At(At(0, 0)));
        Assert.Equal(2e-4, s.At(At(7, 700)));
    }

    [Fact]
    public void TheRecipeDescribesBlipsPretrainingSchedule()
    {
        var recipe = TrainingConfigLoader.Load(Path.Combine(TestSupport.Fixtures.RepoRoot, "configs", "pretrain-base.json"));
        Assert.Equal(Pretrain, recipe.Train.Schedule());
    }
}
