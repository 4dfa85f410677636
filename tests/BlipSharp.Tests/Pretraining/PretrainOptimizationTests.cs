using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>AdamW parameter groups, the optimizer's update rule, BLIP's learning-rate schedules and the alpha ramp.</summary>
public sealed class PretrainOptimizationTests
{
    [Fact]
    public void BlipFaithfulGroupsDecayEveryTrainableParameterOnce()
    {
        using var model = TinyPretraining.Model();
        var trainable = model.TrainableParameters();
        var groups = ParameterGroups.Build(trainable, 0.05);
        var group = Assert.Single(groups);
        Assert.Equal(0.05, group.WeightDecay);
        Assert.Equal(trainable.Count, group.Parameters.Count);
        // Passing every name (aliases and momentum copies included) gives the same set: ties once, momentum never.
        var fromAllNames = Assert.Single(ParameterGroups.Build(model.NamedParametersWithAliases(), 0.05));
        Assert.Equal(trainable.Select(p => p.Name), fromAllNames.Parameters.Select(p => p.Name));
        Assert.Contains(group.Parameters, p => p.Name == "temp");
        Assert.Contains(group.Parameters, p => p.Name == "text_encoder.embeddings.LayerNorm.bias");
    }

    [Fact]
    public void NoDecayOptionExemptsBiasesNormsEmbeddingsAndTheTemperature()
    {
        using var model = TinyPretraining.Model();
        var groups = ParameterGroups.Build(model.TrainableParameters(), 0.05, WeightDecayPolicy.NoDecayOnBiasNormAndEmbeddings);
        Assert.Equal(["decay", "no_decay"], groups.Select(g => g.Name));
        var decay = groups[0].Parameters.Select(p => p.Name).ToHashSet();
        var noDecay = groups[1].Parameters.Select(p => p.Name).ToHashSet();
        Assert.Equal(0.0, groups[1].WeightDecay);
        foreach (string name in new[] { "temp", "vision_proj.bias", "vision_model.post_layernorm.weight", "text_encoder.embeddings.word_embeddings.weight",
                     "text_encoder.embeddings.position_embeddings.weight", "vision_model.embeddings.class_embedding", "vision_model.embeddings.position_embedding",
                     "text_decoder.cls.predictions.bias", "text_decoder.bert.encoder.layer.0.attention.output.LayerNorm.weight" })
            Assert.Contains(name, noDecay);
        foreach (string name in new[] { "vision_proj.weight", "itm_head.weight", "vision_model.embeddings.patch_embedding.weight",
                     "text_encoder.encoder.layer.1.crossattention.self.key.weight", "text_decoder.cls.predictions.transform.dense.weight" })
            Assert.Contains(name, decay);
        Assert.Empty(decay.Intersect(noDecay));
    }

    [Fact]
    public void LearningRateScalesSplitEachDecayGroupByModule()
    {
        using var model = TinyPretraining.Model();
        var groups = ParameterGroups.Build(model.TrainableParameters(), 0.05, WeightDecayPolicy.NoDecayOnBiasNormAndEmbeddings);
        var scaled = ParameterGroups.ScaleLearningRates(groups, new Dictionary<string, double> { ["vision_model"] = 0.1, ["vision_model.post_layernorm"] = 0 });
        Assert.Equal(["decay", "decay:vision_model", "no_decay", "no_decay:vision_model", "no_decay:vision_model.post_layernorm"], scaled.Select(g => g.Name));
        Assert.Equal([1.0, 0.1, 1.0, 0.1, 0.0], scaled.Select(g => g.LearningRateScale));
        Assert.Equal([0.05, 0.05, 0.0, 0.0, 0.0], scaled.Select(g => g.WeightDecay));
        // Every parameter once, in the group its longest matching module names; the projection is not the ViT.
        Assert.Equal(groups.Sum(g => g.Parameters.Count), scaled.Sum(g => g.Parameters.Count));
        Assert.All(scaled[1].Parameters.Concat(scaled[3].Parameters), p => Assert.StartsWith("vision_model.", p.Name));
        Assert.Equal(["vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias"], scaled[4].Parameters.Select(p => p.Name));
        Assert.Contains(scaled[0].Parameters, p => p.Name == "vision_proj.weight");
        Assert.DoesNotContain(scaled[0].Parameters.Concat(scaled[2].Parameters), p => p.Name.StartsWith("vision_model.", StringComparison.Ordinal));
        Assert.Same(groups, ParameterGroups.ScaleLearningRates(groups, new Dictionary<string, double>()));

        using var optimizer = BlipOptimizer.CreateAdamW(scaled, new AdamWOptions { LearningRate = 2e-3 });
        Assert.Equal([2e-3, 2e-4, 2e-3, 2e-4, 0.0], optimizer.ParamGroups.Select(g => g.LearningRate), new ToleranceComparer(1e-18));
        BlipOptimizer.SetLearningRate(optimizer, 1e-3, scaled.Select(g => g.LearningRateScale).ToArray());
        Assert.Equal([1e-3, 1e-4, 1e-3, 1e-4, 0.0], optimizer.ParamGroups.Select(g => g.LearningRate), new ToleranceComparer(1e-18));
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

        public int GetHashCode(double obj) => 0;
    }

    [Fact]
    public void AdamWStepIsTorchsDecoupledUpdate()
    {
        // One scalar parameter, gradient g: torch's AdamW step 1 gives p(1 - lr wd) - lr g / (|g| + eps) (bias
        // corrections cancel), step 2 as written out below. Beta2 must be 0.999 (TorchSharp's factory uses 0.99).
        var p = new Parameter(tensor(new[] { 2.0 }, dtype: ScalarType.Float64));
        double lr = 0.1, wd = 0.05, g1 = 0.5, g2 = -0.25;
        using var optimizer = BlipOptimizer.CreateAdamW([("p", p)], new AdamWOptions { LearningRate = lr, WeightDecay = wd });
        p.grad = tensor(new[] { g1 }, dtype: ScalarType.Float64);
        optimizer.step();
        double expected = 2.0 * (1 - lr * wd) - lr * g1 / (Math.Abs(g1) + 1e-8);
        Assert.Equal(expected, p.ToDouble(), 12);

        p.grad = tensor(new[] { g2 }, dtype: ScalarType.Float64);
        optimizer.step();
        double m = 0.9 * 0.1 * g1 + 0.1 * g2, v = 0.999 * 0.001 * g1 * g1 + 0.001 * g2 * g2;
        expected = expected * (1 - lr * wd) - lr / (1 - 0.81) * m / (Math.Sqrt(v) / Math.Sqrt(1 - 0.999 * 0.999) + 1e-8);
        Assert.Equal(expected, p.ToDouble(), 12);

        BlipOptimizer.SetLearningRate(optimizer, 0.5);
        Assert.All(optimizer.ParamGroups, g => Assert.Equal(0.5, g.LearningRate));
    }

    [Fact]
    public void LearningRateSchedulesAreBlipsUtilsFunctions()
    {
        // cosine_lr_schedule(epoch, max_epoch, init_lr, min_lr), e.g. retrieval: init 1e-5, min 0, 6 epochs.
        Assert.Equal(1e-5, LearningRateSchedules.Cosine(0, 6, 1e-5, 0), 15);
        Assert.Equal(0.5e-5, LearningRateSchedules.Cosine(3, 6, 1e-5, 0), 15);
        Assert.Equal(1e-5 * 0.5 * (1 - Math.Sqrt(2) / 2), LearningRateSchedules.Cosine(3, 4, 1e-5, 0), 15);
        Assert.Equal(1e-6, LearningRateSchedules.Cosine(6, 6, 1e-5, 1e-6), 15);
        // warmup_lr_schedule(step, max_step, init_lr, max_lr): pretrain.py warms from 1e-6 to 3e-4 over 3000 steps.
        Assert.Equal(1e-6, LearningRateSchedules.Warmup(0, 3000, 1e-6, 3e-4), 15);
        Assert.Equal(1e-6 + (3e-4 - 1e-6) / 2, LearningRateSchedules.Warmup(1500, 3000, 1e-6, 3e-4), 15);
        Assert.Equal(3e-4, LearningRateSchedules.Warmup(5000, 3000, 1e-6, 3e-4), 15);
        // step_lr_schedule(epoch, init_lr, min_lr, decay_rate): pretraining decays 0.9 per epoch down to 1e-6.
        Assert.Equal(3e-4, LearningRateSchedules.Step(0, 3e-4, 1e-6, 0.9), 15);
        Assert.Equal(3e-4 * 0.9 * 0.9, LearningRateSchedules.Step(2, 3e-4, 1e-6, 0.9), 15);
        Assert.Equal(1e-6, LearningRateSchedules.Step(100, 3e-4, 1e-6, 0.9), 15);
    }

    [Fact]
    public void AlphaRampsAsBlipsScripts()
    {
        // pretrain.py: 0.4 * min(1, (epoch * N + i) / (2N)).
        Assert.Equal(0.0, AlphaSchedule.Pretraining(0, 0, 100));
        Assert.Equal(0.1, AlphaSchedule.Pretraining(0, 50, 100), 12);
        Assert.Equal(0.3, AlphaSchedule.Pretraining(1, 50, 100), 12);
        Assert.Equal(0.4, AlphaSchedule.Pretraining(2, 0, 100), 12);
        // train_retrieval.py: epoch 0: 0.4 * min(1, i / N); afterwards 0.4.
        Assert.Equal(0.2, AlphaSchedule.FineTuning(0, 50, 100), 12);
        Assert.Equal(0.4, AlphaSchedule.FineTuning(1, 0, 100), 12);
    }
}
