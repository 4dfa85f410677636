using BlipSharp.Training.Pretraining;
using BlipSharp.Tests.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>
/// <see cref="BlipWeightInit"/>: a model built from scratch starts as BLIP's reference code draws it (ViT
/// trunc_normal(0.02), BERT N(0, 0.02)), which puts the initial LM loss at ln(vocabulary).
/// </summary>
public sealed class PretrainInitTests
{
    [Fact]
    public void TruncatedNormalHasTheRequestedSpreadAndStaysWithinItsBounds()
    {
        manual_seed(3);
        using var t = empty(200_000);
        BlipWeightInit.TruncatedNormal(t, 0.02);
        Assert.InRange(t.mean().item<float>(), -3e-4, 3e-4);
        Assert.InRange(t.std().item<float>(), 0.0198, 0.0202); // the +-2 cut is 100 std away: no visible truncation
        Assert.True(t.unique().Item1.shape[0] > 150_000, "the values must be drawn, not one constant");

        using var narrow = empty(200_000);
        BlipWeightInit.TruncatedNormal(narrow, 1.0, -1.0, 1.0);
        Assert.True(narrow.min().item<float>() >= -1f && narrow.max().item<float>() <= 1f);
        // A standard normal cut at +-1 has standard deviation 0.5376.
        Assert.InRange(narrow.std().item<float>(), 0.533, 0.542);
        Assert.Throws<ArgumentException>(() => BlipWeightInit.TruncatedNormal(narrow, 1.0, 1.0, -1.0));
    }

    [Fact]
    public void FromScratchWeightsFollowTheReferenceInit()
    {
        using var model = TinyPretraining.Model();
        foreach (var (name, p) in model.named_parameters())
        {
            bool reference = name.StartsWith("vision_model.", StringComparison.Ordinal) || name.StartsWith("text_encoder.", StringComparison.Ordinal)
                || name.StartsWith("text_decoder.", StringComparison.Ordinal);
            if (!reference || name.Contains("patch_embedding", StringComparison.Ordinal)) continue; // the patch conv keeps PyTorch's default, as BLIP
            if (name.EndsWith("layer_norm1.weight", StringComparison.Ordinal) || name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)
                || name.EndsWith("layer_norm2.weight", StringComparison.Ordinal) || name.EndsWith("post_layernorm.weight", StringComparison.Ordinal))
                Assert.True(p.eq(1).all().item<bool>(), name);
            else if (name.EndsWith(".bias", StringComparison.Ordinal))
                Assert.True(p.eq(0).all().item<bool>(), name);
            else
            {
                double std = p.std().item<float>();
                Assert.True(p.numel() < 16 || std is > 0.01 and < 0.03, $"{name}: std {std}");
                Assert.True(p.abs().max().item<float>() < 0.2, name);
            }
        }
        // vision_proj, text_proj and itm_head keep PyTorch's default (uniform within 1/sqrt(fan_in)).
        var itm = (Linear)model.itm_head;
        Assert.True(itm.weight!.abs().max().item<float>() <= 1 / Math.Sqrt(16) + 1e-6);
        Assert.True(itm.weight!.std().item<float>() > 0.1);
    }

    [Fact]
    public void TheInitialLanguageModelingLossIsTheLogOfTheVocabulary()
    {
        using var model = TinyPretraining.Model();
        var task = new PretrainingTask(model);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var batch = TinyPretraining.Batch(b: 4);
        using var losses = task.Step(batch, 0.0);
        double lm = losses.Lm.item<float>();
        // Near-uniform logits: cross-entropy ln(40) = 3.69 with label smoothing 0.1 (smoothing a uniform prediction changes nothing).
        Assert.InRange(lm, Math.Log(TinyPretraining.Vocab) - 0.05, Math.Log(TinyPretraining.Vocab) + 0.05);
    }

    [Fact]
    public void SinCosPositionsFollowMaesTwoDimensionalLayout()
    {
        manual_seed(7);
        var config = TinyPretraining.Config() with { VisionPositionInit = BlipWeightInit.SinCosPositions };
        using var model = new BlipPretrainingModel(config);
        var pos = model.vision_model.embeddings.position_embedding;            // (1, 1 + 2*2, 16): grid 2, quarter 4
        Assert.True(pos[0, 0].eq(0).all().item<bool>(), "the class token's row is 0");
        // Patch (r=1, c=0) is row 3: sin(0), cos(0) for the column, sin(1 * w_k), cos(1 * w_k) for the row.
        var row = pos[0, 3].data<float>().ToArray();
        for (int k = 0; k < 4; k++)
        {
            double w = Math.Pow(10000.0, -k / 4.0);
            Assert.Equal(0f, row[k]);
            Assert.Equal(1f, row[4 + k]);
            Assert.Equal(Math.Sin(w), row[8 + k], 6);
            Assert.Equal(Math.Cos(w), row[12 + k], 6);
        }
        // The momentum copy starts equal to it, as every momentum parameter.
        Assert.True(model.vision_model_m.embeddings.position_embedding.eq(pos).all().item<bool>());

        var unknown = Assert.Throws<ArgumentException>(() => (config with { VisionPositionInit = "learned" }).Validate());
        Assert.Contains("vision_position_init 'learned'", unknown.Message);
        var odd = config with { VisionConfig = config.VisionConfig with { HiddenSize = 18, IntermediateSize = 36 } };
        Assert.Contains("divisible by 4", Assert.Throws<ArgumentException>(() => odd.Validate()).Message);
    }
}
