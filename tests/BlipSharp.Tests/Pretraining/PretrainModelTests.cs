using BlipSharp.Training.Losses;
using BlipSharp.Training.Optimization;
using BlipSharp.Training.Pretraining;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// The pretraining model's structure and state on a tiny random configuration: encoder/decoder sharing, the
/// momentum copies, gradient flow, the temperature clamp, the queues and tensor lifetimes.
/// </summary>
public sealed class PretrainModelTests
{
    [Fact]
    public void DecoderSharesEverythingButSelfAttentionWithTheEncoderAsOneObject()
    {
        using var model = TinyPretraining.Model();
        var byName = model.NamedParametersWithAliases().ToDictionary(p => p.Name, p => p.Parameter);
        int shared = 0, separate = 0;
        foreach (var (name, decoderParameter) in byName.Where(p => p.Key.StartsWith("text_decoder.bert.", StringComparison.Ordinal)))
        {
            string encoderName = "text_encoder." + name["text_decoder.bert.".Length..];
            var encoderParameter = byName[encoderName];
            bool selfAttention = name.Contains(".attention.", StringComparison.Ordinal);
            Assert.True(ReferenceEquals(encoderParameter, decoderParameter) != selfAttention,
                $"{name}: {(selfAttention ? "self-attention must be the decoder's own" : "must be the encoder's Parameter object")}");
            if (selfAttention) separate++;
            else
            {
                shared++;
                Assert.Equal(encoderName, model.SharedParameterNames[name]);
            }
        }
        // Per layer: cross-attention (q, k, v, dense: 8; LayerNorm: 2), intermediate 2, output 4; embeddings 4.
        Assert.Equal(2 * 16 + 4, shared);
        Assert.Equal(2 * 10, separate);
        Assert.Same(byName["text_encoder.embeddings.word_embeddings.weight"], byName["text_decoder.cls.predictions.decoder.weight"]);
        Assert.Equal(shared + 1, model.SharedParameterNames.Count);

        // One update moves both names: the decoder sees an in-place change of the encoder's tensor.
        using (no_grad()) byName["text_encoder.encoder.layer.1.intermediate.dense.weight"].add_(1.0);
        var decoderWeight = model.TextDecoder.bert.encoder.layer[1].intermediate.dense.weight!;
        Assert.True(decoderWeight.eq(byName["text_encoder.encoder.layer.1.intermediate.dense.weight"]).all().ToBoolean());
        model.TieWeights(); // idempotent
        Assert.Same(byName["text_encoder.embeddings.LayerNorm.weight"], model.TextDecoder.bert.embeddings.layer_norm.weight);
    }

    [Fact]
    public void MomentumCopiesStartEqualAndFollowTheEma()
    {
        using var model = TinyPretraining.Model();
        var online = model.vision_proj.weight!;
        var momentum = model.vision_proj_m.weight!;
        Assert.True(online.eq(momentum).all().ToBoolean());
        Assert.False(momentum.requires_grad);
        Assert.All(model.text_encoder_m.parameters(), p => Assert.False(p.requires_grad));
        Assert.All(model.vision_model_m.parameters(), p => Assert.False(p.requires_grad));

        using var before = momentum.clone();
        using (no_grad()) online.add_(2.0);
        model.MomentumUpdate();
        // p_m = 0.995 p_m + 0.005 (p_m + 2) = p_m + 0.01
        Assert.Equal(0.01, (momentum - before).mean().ToDouble(), 5);
        Assert.Equal(0.0, (momentum - before).std().ToDouble(), 5);
    }

    [Fact]
    public void EveryTrainableParameterGetsAGradientAndMomentumCopiesNone()
    {
        using var model = TinyPretraining.Model();
        model.train();
        var task = new PretrainingTask(model, new MultinomialNegativeSampler(new Generator(3)));
        var batch = TinyPretraining.Batch();
        using var scope = NewDisposeScope();
        var losses = task.Step(batch, alpha: 0.4);
        losses.Total.backward();

        var trainable = model.TrainableParameters();
        Assert.Equal(trainable.Count, trainable.Select(p => p.Parameter).Distinct(ReferenceEqualityComparer.Instance).Count());
        foreach (var (name, p) in trainable)
        {
            Assert.True(p.grad is not null, $"{name} received no gradient");
            Assert.True(p.grad!.isfinite().all().ToBoolean(), $"{name}: gradient not finite");
            double norm = p.grad.abs().max().ToDouble();
            if (name.EndsWith(".self.key.bias", StringComparison.Ordinal))
                // Exactly 0 in exact arithmetic (softmax is shift-invariant), so only rounding noise.
                Assert.True(norm < 1e-5, $"{name}: gradient {norm:E2} should be rounding noise");
            else
                Assert.True(norm > 0, $"{name}: gradient is all zero");
        }
        var momentumNames = model.NamedParametersWithAliases().Where(p => p.Name.Split('.')[0].EndsWith("_m", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(momentumNames);
        Assert.All(momentumNames, p => Assert.True(p.Parameter.grad is null, $"{p.Name} must not get a gradient"));
        Assert.DoesNotContain(trainable, p => p.Name.Split('.')[0].EndsWith("_m", StringComparison.Ordinal));
        Assert.Contains(trainable, p => p.Name == "temp");
        // Decoder-only parameters (self-attention, LM head transform) are trainable under the decoder's names.
        Assert.Contains(trainable, p => p.Name == "text_decoder.bert.encoder.layer.0.attention.self.query.weight");
        Assert.Contains(trainable, p => p.Name == "text_decoder.cls.predictions.bias");
        Assert.DoesNotContain(trainable, p => p.Name == "text_decoder.bert.encoder.layer.0.intermediate.dense.weight");
    }

    [Fact]
    public void StepClampsTheTemperatureAndLogsEveryLoss()
    {
        using var model = TinyPretraining.Model();
        var task = new PretrainingTask(model);
        using (no_grad()) model.temp.fill_(0.9);
        using var scope = NewDisposeScope();
        var losses = task.Step(TinyPretraining.Batch(), alpha: 0.0);
        Assert.Equal(0.5, model.temp.ToDouble(), 6);
        var log = losses.ToLogValues();
        Assert.Equal(["loss", "loss_ita", "loss_itm", "loss_lm"], log.Keys.Order());
        Assert.Equal(log["loss_ita"] + log["loss_itm"] + log["loss_lm"], log["loss"], 5);
        // alpha 0: the targets are the one-hot positives.
        var b = losses.Contrastive.TargetsImageToText.shape[0];
        Assert.True(losses.Contrastive.TargetsImageToText.narrow(1, 0, b).eq(eye(b)).all().ToBoolean());
        Assert.Equal([3 * b, 2], losses.Matching.Logits.shape);
        using (no_grad()) model.temp.fill_(0.0);
        model.ClampTemperature();
        Assert.Equal(0.001, model.temp.ToDouble(), 6);
    }

    [Fact]
    public void DequeueAndEnqueueWritesColumnsAtThePointerAndWraps()
    {
        using var model = TinyPretraining.Model(queueSize: 6, idQueue: true);
        using var scope = NewDisposeScope();
        for (int step = 0; step < 4; step++)
        {
            var image = full(2, 8, (float)step);
            var text = full(2, 8, -(float)step);
            model.DequeueAndEnqueue(image, text, tensor(new long[] { 10 * step, 10 * step + 1 }));
            long expectedPtr = (2 * (step + 1)) % 6;
            Assert.Equal(expectedPtr, model.queue_ptr.ToInt64());
        }
        // After 4 batches of 2 into 6 columns: columns 0-1 hold step 3, 2-3 step 1, 4-5 step 2.
        float[] expected = [3, 3, 1, 1, 2, 2];
        for (int c = 0; c < 6; c++)
        {
            Assert.Equal(expected[c], model.image_queue[0, c].ToSingle());
            Assert.Equal(-expected[c], model.text_queue[7, c].ToSingle());
        }
        Assert.Equal([30, 31, 10, 11, 20, 21], model.idx_queue!.data<long>().ToArray());
        Assert.Throws<ArgumentException>(() => model.DequeueAndEnqueue(zeros(4, 8), zeros(4, 8), zeros(4, dtype: ScalarType.Int64)));
        Assert.Throws<ArgumentNullException>(() => model.DequeueAndEnqueue(zeros(2, 8), zeros(2, 8)));
    }

    [Fact]
    public void QueuesAndTemperatureAreSavedAndRestoredWithTheState()
    {
        using var model = TinyPretraining.Model(idQueue: true);
        var keys = model.state_dict().Keys.ToHashSet();
        Assert.Subset(keys, new HashSet<string> { "temp", "image_queue", "text_queue", "queue_ptr", "idx_queue" });
        Assert.Equal([8, 8], model.image_queue.shape);
        Assert.Equal(1.0, model.image_queue.norm(0).mean().ToDouble(), 5);
        Assert.True(model.idx_queue!.eq(-100).all().ToBoolean());

        string path = Path.Combine(Path.GetTempPath(), $"blip-pretrain-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (no_grad()) model.text_queue.fill_(0.25f);
            model.DequeueAndEnqueue(ones(4, 8), ones(4, 8), tensor(new long[] { 1, 2, 3, 4 }));
            BlipSharp.Checkpoints.SafeTensors.Save(path, model.state_dict());
            using var restored = TinyPretraining.Model(idQueue: true, seed: 99);
            var weights = BlipSharp.Checkpoints.SafeTensors.Load(path);
            BlipSharp.Checkpoints.StateDictLoader.LoadStrict(restored, weights, path);
            foreach (var t in weights.Values) t.Dispose();
            Assert.True(restored.text_queue.eq(model.text_queue).all().ToBoolean());
            Assert.True(restored.idx_queue!.eq(model.idx_queue).all().ToBoolean());
            Assert.Equal(4, restored.queue_ptr.ToInt64());
            // Strict loading keeps the ties: the restored decoder still shares the encoder's objects.
            Assert.Same(restored.text_encoder.encoder.layer[0].output.dense.weight, restored.TextDecoder.bert.encoder.layer[0].output.dense.weight);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void RepeatedTrainingStepsLeaveNoLiveTensors()
    {
        using var model = TinyPretraining.Model();
        model.train();
        using var optimizer = BlipOptimizer.CreateAdamW(model.TrainableParameters());
        var task = new PretrainingTask(model, new MultinomialNegativeSampler(new Generator(5)));
        var batch = TinyPretraining.Batch();
        void TrainStep()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var losses = task.Step(batch, 0.4);
            losses.Total.backward();
            optimizer.step();
        }
        TrainStep(); // gradients and optimizer state are created once
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 20; i++) TrainStep();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void ADoubleModelIsCreatedTiedAndATiedModelRefusesConversion()
    {
        manual_seed(7);
        using var model = new BlipPretrainingModel(TinyPretraining.Config(), dtype: ScalarType.Float64);
        Assert.Equal(ScalarType.Float64, model.TextDecoder.bert.encoder.layer[0].output.dense.weight!.dtype);
        Assert.Equal(ScalarType.Float64, model.image_queue.dtype);
        Assert.Same(model.text_encoder.encoder.layer[0].output.dense.weight, model.TextDecoder.bert.encoder.layer[0].output.dense.weight);
        Assert.Equal(37, model.SharedParameterNames.Count);
        using (var scope = NewDisposeScope())
        {
            var batch = TinyPretraining.Batch();
            var losses = new PretrainingTask(model).Step(batch with { PixelValues = batch.PixelValues.to_type(ScalarType.Float64) }, 0.4);
            Assert.Equal(ScalarType.Float64, losses.Total.dtype);
        }
        model.to(ScalarType.Float64); // nothing to change
        var e = Assert.Throws<InvalidOperationException>(() => model.to(ScalarType.Float32));
        Assert.Contains("constructor", e.Message);
        Assert.True(model.text_encoder.encoder.layer[0].output.dense.weight!.isfinite().all().ToBoolean());
    }
}
