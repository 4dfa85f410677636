using System.Collections.Concurrent;
using BlipSharp.Configuration;
using BlipSharp.Modeling;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using BlipSharp.Training.Nlvr;
using BlipSharp.Training.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// One NLVR fixture folder replayed: its BLIP_NLVR checkpoint loaded strictly, one training forward and backward on
/// the fixture's items (targets 1 = True), then the eval-mode forward. Shared by the parity tests of one folder.
/// </summary>
public sealed class NlvrReplay : IDisposable
{
    public const string Model = "models.blip_nlvr.BLIP_NLVR";

    public NlvrReplay(string dir)
    {
        Dir = dir;
        Name = Path.GetFileName(dir);
        Cases = new FixtureCases(dir);
        var special = Cases.Json.GetProperty("special_ids");
        Config = ConfigFor(dir);
        Network = new BlipForNlvr(Config);
        NlvrCheckpoint.LoadNlvr(Network, OriginalFixtures.WeightsFile(dir));
        Task = new NlvrTask(Network);

        var pixels = Cases.Tensor("pixel_values");                                   // (2B, 3, S, S)
        Targets = Cases.Tensor("targets").to_type(ScalarType.Int64);                 // (B)
        long b = Targets.shape[0];
        // The tokenizer's output: [CLS] in column 0, which the model must replace with [ENC].
        TokenizerIds = Cases.Tensor("train.input_ids").to_type(ScalarType.Int64).clone();
        TokenizerIds.select(1, 0).fill_(special.GetProperty("[CLS]").GetInt64());
        Batch = new NlvrBatch(pixels.narrow(0, 0, b), pixels.narrow(0, b, b), TokenizerIds, Cases.Tensor("train.attention_mask"), Targets);

        Network.train();
        Network.zero_grad();
        var loss = Task.Forward(Batch);
        loss.Loss.backward();
        Train = loss;
        Gradients = Network.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad?.clone(), StringComparer.Ordinal);

        Network.eval();
        using (no_grad())
            Eval = Network.Forward(Batch.PixelValues0, Batch.PixelValues1, Batch.InputIds, Batch.AttentionMask);
    }

    /// <summary>
    /// The NLVR configuration of a fixture folder: sizes from its config.json, <c>[ENC]</c> from its cases.json
    /// <c>special_ids</c>, BLIP's merge-from-layer (nlvr_encoder.py hard-codes 6; strict loading checks it against the
    /// checkpoint's merge_layer keys).
    /// </summary>
    public static BlipNlvrConfig ConfigFor(string dir)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "cases.json")));
        int enc = doc.RootElement.GetProperty("special_ids").GetProperty("[ENC]").GetInt32();
        return new BlipNlvrConfig { Blip = OriginalFixtures.TaskConfig(dir), EncTokenId = enc };
    }

    public string Dir { get; }
    public string Name { get; }
    public FixtureCases Cases { get; }
    public BlipNlvrConfig Config { get; }
    public BlipForNlvr Network { get; }
    public NlvrTask Task { get; }
    public Tensor Targets { get; }
    public Tensor TokenizerIds { get; }
    public NlvrBatch Batch { get; }
    public NlvrLoss Train { get; }
    public NlvrOutput Eval { get; }
    public IReadOnlyDictionary<string, Tensor?> Gradients { get; }

    public void Dispose()
    {
        Train.Dispose();
        Eval.Dispose();
        foreach (var g in Gradients.Values) g?.Dispose();
        Task.Dispose();
        Cases.Dispose();
    }
}

/// <summary>One replay per NLVR fixture folder.</summary>
public sealed class NlvrReplays : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<NlvrReplay>> _replays = new();

    public NlvrReplay Get(string name) =>
        _replays.GetOrAdd(name, n => new Lazy<NlvrReplay>(() => new NlvrReplay(OriginalFixtures.CaseDir(n)))).Value;

    public void Dispose()
    {
        foreach (var r in _replays.Values.Where(r => r.IsValueCreated)) r.Value.Dispose();
    }
}

/// <summary>
/// BLIP_NLVR parity (salesforce/BLIP <c>blip_nlvr.py</c> + <c>nlvr_encoder.py</c>): image states, the [ENC] state
/// grounded in both images, the head's logits, the cross-entropy loss, every stored gradient (both cross-attentions,
/// both dense layers, the merge layer, the head) and the eval-mode prediction match the fixture within its
/// fp32-vs-fp64 noise; the accuracy helper agrees with BLIP's argmax.
/// </summary>
[Trait("Category", "Parity")]
public sealed class NlvrParityTests(NlvrReplays replays, ITestOutputHelper output) : IClassFixture<NlvrReplays>
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.CaseDirs(NlvrReplay.Model).Select(d => new object[] { Path.GetFileName(d) });

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheEncoderReadsEncInColumnZero(string name)
    {
        var r = replays.Get(name);
        using var ids = r.Network.EncoderInputIds(r.TokenizerIds);
        TensorAssert.Equal(r.Cases.Tensor("train.input_ids"), ids, $"{name}: train.input_ids");
        var recorded = r.Cases.Json.GetProperty("cases").GetProperty("train").GetProperty("input_ids");
        Assert.Equal(recorded.GetArrayLength(), (int)ids.shape[0]);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TrainingForwardMatches(string name)
    {
        var r = replays.Get(name);
        FixtureModels.Check(r.Cases, "train.image_embeds", r.Train.Output.ImageEmbeds);
        FixtureModels.Check(r.Cases, "train.hidden_state", r.Train.Output.HiddenState);
        FixtureModels.Check(r.Cases, "train.prediction", r.Train.Output.Logits);
        FixtureModels.Check(r.Cases, "train.loss", r.Train.Loss);
        double recorded = r.Cases.Json.GetProperty("cases").GetProperty("train").GetProperty("loss").GetDouble();
        double tol = r.Cases.Tolerance("train.loss");
        Assert.True(Math.Abs(r.Train.Loss.ToSingle() - recorded) <= tol, $"{name}: loss {r.Train.Loss.ToSingle():G9}, BLIP {recorded:G9} (tol {tol:E2})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryStoredGradientMatches(string name)
    {
        var r = replays.Get(name);
        var names = r.Cases.TensorNames.Where(n => n.StartsWith("train.grad.", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(names);
        double worst = 0;
        foreach (string n in names)
        {
            string original = n["train.grad.".Length..];
            string ours = OriginalBlipKeyMap.Rename(original);
            Assert.True(r.Gradients.TryGetValue(ours, out var grad), $"{name}: '{original}' -> '{ours}' is not a parameter here");
            Assert.True(grad is not null, $"{name}: '{ours}' has no gradient");
            // Relative to the gradient's own magnitude (the ulp floor of Tolerances would be loose for values near 1e-3).
            double absMax = r.Cases.AbsMax(n);
            double tol = Math.Max(Tolerances.NoiseFactor * r.Cases.Noise(n), Tolerances.UlpFloor * 1.1920929e-7 * absMax);
            TensorAssert.Close(r.Cases.Tensor(n), grad!, tol, $"{name}: {n}");
            using var diff = (r.Cases.Tensor(n).to_type(ScalarType.Float64) - grad!.to_type(ScalarType.Float64)).abs().max();
            worst = Math.Max(worst, diff.ToDouble() / tol);
        }
        output.WriteLine($"{name}: {names.Count} gradients; worst |diff|/tol {worst:F3}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EvalPredictionAndAccuracyMatch(string name)
    {
        var r = replays.Get(name);
        FixtureModels.Check(r.Cases, "eval.prediction", r.Eval.Logits);
        var eval = r.Cases.Json.GetProperty("cases").GetProperty("eval");
        var argmax = eval.GetProperty("argmax").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        using var predictions = BlipForNlvr.Predictions(r.Eval.Logits);
        Assert.Equal(argmax, predictions.data<long>().ToArray());
        var targets = r.Targets.data<long>().ToArray();
        double expected = argmax.Zip(targets).Count(p => p.First == p.Second) / (double)targets.Length;
        using var accuracy = NlvrTask.Accuracy(r.Eval.Logits, r.Targets);
        Assert.Equal(expected, accuracy.ToSingle(), 6);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheTrainerStepGivesTheLossAndLogsTheAccuracy(string name)
    {
        var r = replays.Get(name);
        using var scope = NewDisposeScope();
        ITrainingTask<NlvrBatch> task = r.Task;
        var step = task.Step(r.Batch, new StepContext { Epoch = 0, Step = 0, BatchInEpoch = 0, BatchesPerEpoch = 1 });
        FixtureModels.Check(r.Cases, "train.loss", step.Loss);
        var prediction = r.Cases.Tensor("train.prediction").argmax(1);
        double expected = prediction.eq(r.Targets).to_type(ScalarType.Float64).mean().ToDouble();
        Assert.Equal(expected, step.Metrics!["acc"].ToSingle(), 6);

        var wrong = r.Batch with { Targets = tensor(Enumerable.Repeat(2L, (int)r.Targets.shape[0]).ToArray()) };
        var e = Assert.Throws<ArgumentException>(() => r.Task.Forward(wrong));
        Assert.Contains("0 (False) or 1 (True)", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RepeatedForwardPassesLeaveNoLiveTensors(string name)
    {
        var r = replays.Get(name);
        using var model = new BlipForNlvr(r.Config);
        using var task = new NlvrTask(new BlipForNlvr(r.Config));
        void Call()
        {
            using (no_grad())
            {
                using var o = model.Forward(r.Batch.PixelValues0, r.Batch.PixelValues1, r.Batch.InputIds, r.Batch.AttentionMask);
            }
            using var loss = task.Forward(r.Batch);
            loss.Loss.backward();
        }
        Call();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 25; i++)
        {
            using (NewDisposeScope()) Call();
        }
        for (int i = 0; i < 25; i++) Call();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryTrainableParameterGetsAGradient(string name)
    {
        var r = replays.Get(name);
        int count = 0;
        foreach (var (param, value) in r.Network.named_parameters())
        {
            if (!value.requires_grad) continue;
            count++;
            var grad = r.Gradients[param];
            Assert.True(grad is not null, $"{name}: '{param}' received no gradient");
            // A text attention key bias shifts every score of a row equally, which softmax ignores: its gradient is 0
            // up to rounding. Every other parameter must be moved by the loss.
            if (param.EndsWith(".key.bias", StringComparison.Ordinal)) continue;
            using var norm = grad!.abs().max();
            Assert.True(norm.ToDouble() > 0, $"{name}: the gradient of '{param}' is exactly zero");
        }
        Assert.Equal(r.Network.parameters().Count(), count);
        Assert.Contains(r.Network.named_parameters(), p => p.name.EndsWith(".merge_layer.weight", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheCheckpointLoadsStrictlyWithEveryValue(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        string weights = OriginalFixtures.WeightsFile(dir);
        var config = NlvrReplay.ConfigFor(dir);
        using var model = new BlipForNlvr(config);
        NlvrCheckpoint.LoadNlvr(model, weights);
        var original = OriginalTaskCheckpoint.ReadStateDict(weights);
        try
        {
            var state = model.state_dict();
            var expectedKeys = original.Keys.Where(k => !OriginalBlipKeyMap.IsPositionIds(k)).Select(OriginalBlipKeyMap.Rename).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(expectedKeys, state.Keys.Order(StringComparer.Ordinal).ToList());
            foreach (var (key, value) in original)
            {
                if (OriginalBlipKeyMap.IsPositionIds(key)) continue;
                Assert.True(value.eq(state[OriginalBlipKeyMap.Rename(key)]).all().ToBoolean(), $"{name}: '{key}' differs after loading");
            }
            int layers = config.Blip.TextConfig.NumHiddenLayers;
            for (int i = 0; i < layers; i++)
            {
                bool hasMerge = state.ContainsKey($"text_encoder.encoder.layer.{i}.crossattention.output.merge_layer.weight");
                Assert.Equal(i >= config.MergeFromLayer, hasMerge);
            }
        }
        finally
        {
            foreach (var t in original.Values) t.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AnNlvrCheckpointIsNotTakenForAPretrainingOne(string name)
    {
        string dir = OriginalFixtures.CaseDir(name);
        using var model = new BlipForNlvr(NlvrReplay.ConfigFor(dir));
        var e = Assert.ThrowsAny<BlipSharp.Checkpoints.CheckpointFormatException>(() => NlvrCheckpoint.FromPretraining(model, OriginalFixtures.WeightsFile(dir)));
        Assert.True(e.Message.Contains("is a two-image (NLVR) key", StringComparison.Ordinal), e.Message);
    }
}
