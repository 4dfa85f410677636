using BlipSharp.Configuration;
using BlipSharp.Modeling.Vision;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Pretraining;
using BlipSharp.Training.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Training;

/// <summary>
/// Stochastic depth in the ViT (<see cref="DropPath"/>, <see cref="BlipVisionConfig.DropPathRate"/>), as salesforce/BLIP's
/// <c>models/vit.py</c> with timm 0.4.12's <c>drop_path</c>: per-block rates, the exact masks of a seeded generator,
/// no effect in eval mode or at rate 0, no new state_dict key, gradients, checkpointing, and the recipe key.
/// </summary>
public sealed class VisionDropPathTests
{
    private static BlipVisionConfig TinyVit(double dropPathRate, int depth = 3) => new()
    {
        HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = depth, NumAttentionHeads = 4,
        ImageSize = 32, PatchSize = 8, LayerNormEps = 1e-6, DropPathRate = dropPathRate,
    };

    private static float MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }

    [Fact]
    public void BlockRatesAreBlipsLinspaceDecayRule()
    {
        using var model = new BlipVisionModel(TinyVit(0.1, depth: 12));
        using var expected = linspace(0.0, 0.1, 12, dtype: ScalarType.Float32);            // torch.linspace(0, drop_path_rate, depth)
        var want = expected.data<float>().ToArray();
        var got = model.encoder.layers.Select(l => l.DropPathRate).ToArray();
        Assert.Equal(want.Select(v => (double)v), got);
        Assert.Equal(0.0, got[0]);
        Assert.Equal((double)0.1f, got[11]);                                                // x.item() of a float32: 0.10000000149...
        Assert.Equal(0.1f / 11, (float)got[1], 1e-8f);
        Assert.Equal(new[] { 0.0 }, DropPath.Rates(0.3, 1));                                      // linspace(0, r, 1) = [0]

        model.SetDropPathRate(0.0);
        Assert.All(model.encoder.layers, l => Assert.Equal(0.0, l.DropPathRate));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.SetDropPathRate(1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.encoder.layers[0].DropPathRate = -0.1);
    }

    [Fact]
    public void TrainingBlockEqualsTheReferenceFormulaWithTheSameGenerator()
    {
        const double rate = 0.5;
        const double keep = 1.0 - rate;
        manual_seed(5);
        using var model = new BlipVisionModel(TinyVit(0.0));
        var block = model.encoder.layers[1];
        block.DropPathRate = rate;
        block.train();
        using var x = randn(8, 17, 32);                                                       // (B, T, D)

        // salesforce/BLIP's Block.forward with timm 0.4.12's drop_path, written out.
        Tensor expected;
        Tensor mask1, mask2;
        using (no_grad())
        {
            manual_seed(1234);
            using var a = block.self_attn.forward(block.layer_norm1.forward(x));
            mask1 = (keep + rand(8, 1, 1)).floor_();                                           // random_tensor = keep_prob + torch.rand(shape); floor_()
            using var h = x + a.div(keep) * mask1;                                             // x + x.div(keep_prob) * random_tensor
            using var m = block.mlp.forward(block.layer_norm2.forward(h));
            mask2 = (keep + rand(8, 1, 1)).floor_();
            expected = h + m.div(keep) * mask2;
        }
        using (mask1)
        using (mask2)
        using (expected)
        {
            // The seed makes both kinds of sample appear, so the test can tell a dropped branch from a kept one.
            var m1 = mask1.flatten().data<float>().ToArray();
            var m2 = mask2.flatten().data<float>().ToArray();
            Assert.Contains(0f, m1);
            Assert.Contains(1f, m1);
            Assert.Contains(0f, m2);
            Assert.Contains(1f, m2);

            manual_seed(1234);
            using var got = block.forward(x);
            Assert.Equal(0f, MaxAbsDiff(expected, got));

            // A sample whose both branches were dropped passes through unchanged.
            int both = Enumerable.Range(0, 8).FirstOrDefault(i => m1[i] == 0 && m2[i] == 0, -1);
            if (both >= 0) Assert.Equal(0f, MaxAbsDiff(x[both], got[both]));
        }
    }

    [Fact]
    public void ApplyDropsWholeSamplesAndScalesTheKeptOnes()
    {
        using var ones = torch.ones(64, 5, 3);
        manual_seed(2);
        using var y = DropPath.Apply(ones, 0.25, training: true);
        var values = y.data<float>().ToArray();
        Assert.All(values, v => Assert.True(v == 0f || Math.Abs(v - 1f / 0.75f) < 1e-6, $"value {v}"));
        for (int b = 0; b < 64; b++)
            Assert.Single(values.Skip(b * 15).Take(15).Distinct());                          // one decision per sample
        int dropped = Enumerable.Range(0, 64).Count(b => values[b * 15] == 0f);
        Assert.InRange(dropped, 4, 30);                                                       // 16 expected of 64
        using var eval = DropPath.Apply(ones, 0.25, training: false);
        Assert.Equal(0f, MaxAbsDiff(ones, eval));
    }

    [Fact]
    public void EvalModeAndRateZeroAreUnchangedAndDrawNothing()
    {
        manual_seed(3);
        using var plain = new BlipVisionModel(TinyVit(0.0));
        using var dropping = new BlipVisionModel(TinyVit(0.5));
        Assert.Equal(plain.state_dict().Keys.Order(), dropping.state_dict().Keys.Order());   // no new key
        dropping.load_state_dict(plain.state_dict());
        using var pixels = randn(4, 3, 32, 32);

        plain.eval();
        dropping.eval();
        using var reference = plain.Encode(pixels);
        using var evaluated = dropping.Encode(pixels);
        Assert.Equal(0f, MaxAbsDiff(reference, evaluated));

        // Rate 0 in training mode: the same output, and the generator is not advanced.
        plain.train();
        manual_seed(9);
        using var trained = plain.Encode(pixels);
        using var next = rand(4);
        manual_seed(9);
        using var untouched = rand(4);
        Assert.Equal(0f, MaxAbsDiff(reference, trained));
        Assert.Equal(0f, MaxAbsDiff(untouched, next));

        // The rate in training mode does change the output (so the comparisons above can fail).
        dropping.train();
        manual_seed(9);
        using var dropped = dropping.Encode(pixels);
        Assert.True(MaxAbsDiff(reference, dropped) > 1e-3);
    }

    [Fact]
    public void EveryParameterGetsAGradientAndCheckpointingReplaysTheMasks()
    {
        manual_seed(4);
        using var model = new BlipVisionModel(TinyVit(0.3));
        model.train();
        using var pixels = randn(4, 3, 32, 32);
        using var weights = randn(4, 17, 32);

        Dictionary<string, Tensor> Grads()
        {
            foreach (var p in model.parameters()) p.grad = null;
            using var scope = NewDisposeScope();
            manual_seed(21);
            var loss = (model.Encode(pixels) * weights).sum();
            loss.backward();
            return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone().MoveToOuterDisposeScope());
        }

        var plain = Grads();
        foreach (var (name, g) in plain)
            Assert.True(g.abs().sum().item<float>() > 0, $"{name} got no gradient");

        model.encoder.GradientCheckpointing = true;
        var checkpointed = Grads();
        foreach (var (name, g) in plain)
        {
            double scale = g.abs().max().item<float>();
            double diff = MaxAbsDiff(g, checkpointed[name]);
            Assert.True(diff <= 1e-6 * scale, $"{name}: max |diff| {diff:E3} (max |grad| {scale:E3})");
        }
        foreach (var g in plain.Values.Concat(checkpointed.Values)) g.Dispose();
    }

    [Fact]
    public void ConfigFieldDefaultsToZeroAndIsSetFromARecipe()
    {
        Assert.Equal(0.0, new BlipVisionConfig().DropPathRate);
        Assert.Equal(0.0, BlipConfig.Parse("""{"vision_config": {"hidden_size": 768}}""").VisionConfig.DropPathRate);
        Assert.Equal(0.0, BlipPretrainingConfig.Base().VisionConfig.DropPathRate);
        Assert.Equal(0.1, BlipPretrainingConfig.Large().VisionConfig.DropPathRate);         // BLIP's create_vit: '0.1 or drop_path_rate' for ViT-L
        var bad = Assert.Throws<InvalidDataException>(() => BlipConfig.Parse("""{"vision_config": {"drop_path_rate": 1.0}}"""));
        Assert.Contains("vision_config.drop_path_rate must lie in [0, 1), got 1.", bad.Message, StringComparison.Ordinal);

        var context = new TrainingTaskContext(new ImageTextDataset("none", []), _ => { });
        string tiny = Path.Combine(Fixtures.RepoRoot, "configs", "pretrain-tiny.json");
        var error = Assert.Throws<TrainingConfigException>(() => TrainingTasks.Create(
            TrainingConfigLoader.Load(tiny, ["model.vision_config.drop_path_rate=1.5"]), context));
        Assert.Equal("model: vision_config.drop_path_rate must lie in [0, 1), got 1.5.", error.Message);

        string tokenizer = Fixtures.HfModelDirs().First(d => File.Exists(Path.Combine(d, "vocab.txt")));
        var recipe = TrainingConfigLoader.Load(tiny, // the tiny recipe fitted to BERT's vocabulary, with drop path
            ["model.tokenizer=" + tokenizer, "model.text_config.vocab_size=30524", "model.text_config.bos_token_id=30522", "model.enc_token_id=30523",
                "model.text_config.sep_token_id=102", "model.vision_init=null", "model.vision_config.drop_path_rate=0.1"]);
        var log = new List<string>();
        using var task = (PretrainingTrainingTask)TrainingTasks.Create(recipe, new TrainingTaskContext(new ImageTextDataset("none", []), log.Add));
        var model = task.PretrainingModel;
        Assert.Equal(0.1, model.Config.VisionConfig.DropPathRate);
        foreach (var vision in new[] { model.vision_model, model.vision_model_m })                 // BLIP builds both encoders with the same rate
            Assert.Equal(DropPath.Rates(0.1, 4), vision.encoder.layers.Select(l => l.DropPathRate));
        Assert.Contains(log, l => l.Contains("at 32 px (drop path 0.1), ", StringComparison.Ordinal));
    }
}
