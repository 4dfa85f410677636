using System.Collections.Concurrent;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Retrieval;

/// <summary>One replay per retrieval fixture folder, shared by the parity tests.</summary>
public sealed class RetrievalReplays : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<RetrievalReplay>> _replays = new();

    public RetrievalReplay Get(string name) =>
        _replays.GetOrAdd(name, n => new Lazy<RetrievalReplay>(() => new RetrievalReplay(OriginalFixtures.CaseDir(n)))).Value;

    public void Dispose()
    {
        foreach (var r in _replays.Values.Where(r => r.IsValueCreated)) r.Value.Dispose();
    }
}

/// <summary>
/// BLIP_Retrieval fine-tuning parity: the training steps of salesforce/BLIP's train_retrieval.py, replayed from the
/// pretraining checkpoint with the recorded image ids and negatives, match the fixture at every recorded point (ITC
/// with id positives and the id queue, ITM with id-masked hard negatives, the losses, every gradient, the AdamW step,
/// the momentum update and the queues). Tolerances come from the fixture's fp32-vs-fp64 noise.
/// </summary>
[Trait("Category", "Parity")]
public sealed class RetrievalTrainingParityTests(RetrievalReplays replays, ITestOutputHelper output) : IClassFixture<RetrievalReplays>
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.RetrievalCaseNames();

    private static bool EndsWithAny(string name, params string[] items) => items.Any(i => name.EndsWith("." + i, StringComparison.Ordinal));

    [Theory]
    [MemberData(nameof(Cases))]
    public void LoadingAPretrainingCheckpointDropsTheDecoderAndStartsAnEmptyIdQueue(string name)
    {
        var r = replays.Get(name);
        Assert.Contains(r.LoadLog, l => l.Contains("text_decoder.* entries not used by this model", StringComparison.Ordinal));
        Assert.Contains(r.LoadLog, l => l.Contains("idx_queue", StringComparison.Ordinal));
        CheckAll(r, n => EndsWithAny(n, "idx_queue_before", "ptr_queue_before", "temp_before", "image_queue_before", "text_queue_before")
            && n.StartsWith("step1.", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ItcWithIdPositivesMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, n => EndsWithAny(n, "temp_used", "image_embeds", "image_feat", "text_feat", "idx_all", "pos_idx", "sim_targets",
            "image_feat_m", "text_feat_m", "image_feat_m_all", "text_feat_m_all", "sim_i2t_m", "sim_t2i_m", "sim_i2t_targets", "sim_t2i_targets",
            "itc.sim_i2t", "itc.sim_t2i", "itc.loss_i2t", "itc.loss_t2i", "loss_ita"));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ItmWithIdMaskedNegativesMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, n => EndsWithAny(n, "encoder_input_ids", "mask", "itm.sim_i2t", "itm.sim_t2i", "weights_i2t", "weights_t2i",
            "neg_image_idx", "neg_text_idx", "text_ids_all", "vl_output", "itm_labels", "loss_itm", "loss"));
        var steps = StepReplayChecks.Steps(r);
        for (int k = 0; k < steps.Count; k++)
        {
            foreach (string loss in new[] { "loss_ita", "loss_itm", "loss" })
            {
                double expected = steps[k].GetProperty(loss).GetDouble();
                double tol = r.Cases.Tolerance($"step{k + 1}.{loss}");
                Assert.True(Math.Abs(r.Logged[k][loss] - expected) <= tol, $"{r.Name} step {k + 1}: logged {loss} {r.Logged[k][loss]:G9}, BLIP {expected:G9} (tol {tol:E2})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryParameterGradientMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, n => n.Contains(".grad.", StringComparison.Ordinal));
        StepReplayChecks.CheckGradientStats(r, output);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AdamWStepMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, n => n.Contains(".after.", StringComparison.Ordinal) && !n.Contains("_m.", StringComparison.Ordinal) && !n.Contains("queue", StringComparison.Ordinal));
        StepReplayChecks.CheckStateStats(r, output, key => !StepReplayChecks.IsMomentum(key) && !key.Contains("queue", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MomentumUpdateMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, n => n.Contains(".after.", StringComparison.Ordinal) && n.Contains("_m.", StringComparison.Ordinal));
        StepReplayChecks.CheckStateStats(r, output, StepReplayChecks.IsMomentum);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void FeatureAndIdQueuesMatchAfterEveryStep(string name)
    {
        var r = replays.Get(name);
        var steps = StepReplayChecks.Steps(r);
        Assert.True(steps.Count >= 2, $"{r.Name}: the fixture should record at least two steps");
        CheckAll(r, n => n.Contains("queue", StringComparison.Ordinal));
        StepReplayChecks.CheckStateStats(r, output, key => key.Contains("queue", StringComparison.Ordinal));
        for (int k = 0; k < steps.Count; k++)
        {
            Assert.Equal(steps[k].GetProperty("ptr_queue_after").GetInt64(), r.Actual[$"step{k + 1}.after.ptr_queue"].ToInt64());
            var expectedIds = steps[k].GetProperty("idx_queue_after")[0].EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(expectedIds, r.Actual[$"step{k + 1}.after.idx_queue"].data<long>().ToArray());
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryStepTensorOfTheFixtureIsCompared(string name)
    {
        var r = replays.Get(name);
        var missing = r.Cases.TensorNames
            .Where(n => n.StartsWith("step", StringComparison.Ordinal) && !EndsWithAny(n, RetrievalReplay.InputSuffixes) && !r.Actual.ContainsKey(n))
            .ToList();
        Assert.True(missing.Count == 0, $"{r.Name}: fixture tensors the replay does not produce: {string.Join(", ", missing)}");
        CheckAll(r, n => !EndsWithAny(n, RetrievalReplay.InputSuffixes));
    }

    private void CheckAll(RetrievalReplay r, Func<string, bool> select) => StepReplayChecks.CheckAll(r, output, select);
}
