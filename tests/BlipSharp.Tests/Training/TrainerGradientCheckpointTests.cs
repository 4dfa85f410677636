using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Modeling.Vision;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Training;

/// <summary>
/// Gradient checkpointing of the ViT blocks (<see cref="GradientCheckpoint"/>, <see cref="BlipEncoder.GradientCheckpointing"/>):
/// the same loss and the same gradients as without it, dropout included; peak memory is measured in bench/.
/// </summary>
public sealed class TrainerGradientCheckpointTests
{
    private static BlipVisionConfig TinyVit(double attentionDropout) => new()
    {
        HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 3, NumAttentionHeads = 4,
        ImageSize = 32, PatchSize = 8, AttentionDropout = attentionDropout, LayerNormEps = 1e-6,
    };

    /// <summary>Loss and every parameter gradient of one forward/backward, with the torch generator seeded first.</summary>
    private static (float Loss, Dictionary<string, Tensor> Grads) LossAndGrads(BlipVisionModel model, Tensor pixels, Tensor weights)
    {
        foreach (var p in model.parameters()) p.grad = null;
        using var scope = NewDisposeScope();
        manual_seed(11);
        var states = model.Encode(pixels);                // (B, 1+N, D)
        var loss = (states * weights).sum();
        loss.backward();
        var grads = model.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!.clone().MoveToOuterDisposeScope());
        return (loss.item<float>(), grads);
    }

    [Theory]
    [InlineData(0.0, null)]
    [InlineData(0.2, null)]  // dropout inside the blocks: the recomputation must replay the same masks
    [InlineData(0.2, 2)]     // only the last two of three blocks, as BLIP's vit_ckpt_layer
    public void GradientsEqualTheUncheckpointedOnes(double dropout, int? lastLayers)
    {
        manual_seed(3);
        using var model = new BlipVisionModel(TinyVit(dropout));
        model.train();
        using var pixels = randn(2, 3, 32, 32);
        using var weights = randn(2, 17, 32);

        var (plainLoss, plain) = LossAndGrads(model, pixels, weights);
        model.encoder.GradientCheckpointing = true;
        model.encoder.CheckpointedLayers = lastLayers;
        var (ckptLoss, ckpt) = LossAndGrads(model, pixels, weights);

        Assert.Equal(plainLoss, ckptLoss);
        Assert.Equal(plain.Keys.Order(), ckpt.Keys.Order());
        foreach (var (name, g) in plain)
        {
            Assert.True(g.abs().sum().item<float>() > 0, $"{name} got no gradient");
            double scale = g.abs().max().item<float>();
            double diff = (g - ckpt[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6 * scale, $"{name}: max |diff| {diff:E3} (max |grad| {scale:E3})");
        }
        foreach (var g in plain.Values.Concat(ckpt.Values)) g.Dispose();
    }

    [Fact]
    public void TheForwardMayRunInAScopeThatEndsBeforeTheBackward()
    {
        // A task may compute its loss in its own dispose scope and move only the loss out (PretrainingTask does):
        // what the checkpoint keeps for its backward must not belong to that scope.
        manual_seed(3);
        using var model = new BlipVisionModel(TinyVit(0.2));
        model.train();
        using var pixels = randn(2, 3, 32, 32);
        using var weights = randn(2, 17, 32);
        var (_, plain) = LossAndGrads(model, pixels, weights);
        model.encoder.GradientCheckpointing = true;
        foreach (var p in model.parameters()) p.grad = null;
        using (NewDisposeScope())
        {
            manual_seed(11);
            Tensor loss;
            using (NewDisposeScope())
                loss = (model.Encode(pixels) * weights).sum().MoveToOuterDisposeScope();
            loss.backward();
        }
        foreach (var (name, p) in model.named_parameters())
        {
            double diff = (plain[name] - p.grad!).abs().max().item<float>();
            Assert.True(diff <= 1e-6 * plain[name].abs().max().item<float>(), $"{name}: max |diff| {diff:E3}");
        }
        foreach (var g in plain.Values) g.Dispose();
    }

    [Fact]
    public void DropoutMasksDifferWithoutTheReplayedGenerator()
    {
        // The tolerance above can fail: without replaying the generator the recomputed dropout masks differ.
        manual_seed(3);
        using var model = new BlipVisionModel(TinyVit(0.2));
        model.train();
        using var pixels = randn(2, 3, 32, 32);
        using var weights = randn(2, 17, 32);
        var (_, plain) = LossAndGrads(model, pixels, weights);

        foreach (var p in model.parameters()) p.grad = null;
        using (NewDisposeScope())
        {
            manual_seed(11);
            var h = model.embeddings.Forward(pixels, false);
            foreach (var layer in model.encoder.layers) h = GradientCheckpoint.Run(layer, h, preserveRngState: false);
            (model.post_layernorm.forward(h) * weights).sum().backward();
        }
        var qkv = model.named_parameters().First(p => p.name == "encoder.layers.0.self_attn.qkv.weight").parameter.grad!;
        double diff = (plain["encoder.layers.0.self_attn.qkv.weight"] - qkv).abs().max().item<float>();
        Assert.True(diff > 1e-4, $"masks replayed although the generator was not: {diff:E3}");
        foreach (var g in plain.Values) g.Dispose();
    }

    [Fact]
    public void BlocksAfterAFrozenStemStillGetGradients()
    {
        manual_seed(4);
        using var model = new BlipVisionModel(TinyVit(0.0));
        model.train();
        foreach (var p in model.embeddings.parameters()) p.requires_grad = false;
        using var pixels = randn(2, 3, 32, 32);
        using var weights = randn(2, 17, 32);
        var (_, plain) = LossAndGrads(model, pixels, weights);
        model.encoder.GradientCheckpointing = true;
        var (_, ckpt) = LossAndGrads(model, pixels, weights);
        foreach (var (name, g) in plain)
        {
            double diff = (g - ckpt[name]).abs().max().item<float>();
            Assert.True(diff <= 1e-6 * g.abs().max().item<float>(), $"{name}: max |diff| {diff:E3}");
        }
        Assert.DoesNotContain(ckpt.Keys, k => k.StartsWith("embeddings.", StringComparison.Ordinal));
        foreach (var g in plain.Values.Concat(ckpt.Values)) g.Dispose();
    }

    [Fact]
    public void EvaluationAndNoGradIgnoreTheFlag()
    {
        manual_seed(5);
        using var model = new BlipVisionModel(TinyVit(0.0));
        model.encoder.GradientCheckpointing = true;
        using var pixels = randn(1, 3, 32, 32);
        model.eval();
        using var a = model.Encode(pixels);
        model.encoder.GradientCheckpointing = false;
        using var b = model.Encode(pixels);
        Assert.True(a.allclose(b, rtol: 0, atol: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.encoder.CheckpointedLayers = -1);
    }
}
