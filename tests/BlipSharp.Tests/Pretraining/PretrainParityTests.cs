using System.Collections.Concurrent;
using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Checkpoints;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Pretraining;

/// <summary>One replay per pretrain fixture folder, shared by the parity tests.</summary>
public sealed class PretrainReplays : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<PretrainReplay>> _replays = new();

    public PretrainReplay Get(string name) =>
        _replays.GetOrAdd(name, n => new Lazy<PretrainReplay>(() => new PretrainReplay(OriginalFixtures.CaseDir(n)))).Value;

    public void Dispose()
    {
        foreach (var r in _replays.Values.Where(r => r.IsValueCreated)) r.Value.Dispose();
    }
}

/// <summary>
/// BLIP_Pretrain parity: two training steps of salesforce/BLIP's pretrain.py, replayed from the fixture's model.pth
/// with the recorded negatives, match the fixture at every recorded point (ITC similarities and soft targets, ITM
/// logits, LM loss, total, every parameter's gradient, the AdamW step, the momentum update and the queues).
/// Tolerances come from the fixture's fp32-vs-fp64 noise (<see cref="Tolerances"/>).
/// </summary>
[Trait("Category", "Parity")]
public sealed class PretrainParityTests(PretrainReplays replays, ITestOutputHelper output) : IClassFixture<PretrainReplays>
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.PretrainCaseNames();

    private int StepCount(PretrainReplay r) => r.Cases.Json.GetProperty("cases").GetProperty("steps").GetArrayLength();

    private void CheckAll(PretrainReplay r, Func<string, bool> select) => StepReplayChecks.CheckAll(r, output, select);

    [Theory]
    [MemberData(nameof(Cases))]
    public void ItcFeaturesSimilaritiesAndSoftTargetsMatch(string name)
    {
        var r = replays.Get(name);
        string[] items = ["temp_before", "temp_used", "image_embeds", "image_feat", "text_feat", "image_feat_m", "text_feat_m",
            "sim_i2t_m", "sim_t2i_m", "sim_i2t_targets", "sim_t2i_targets", "sim_i2t", "sim_t2i", "loss_i2t", "loss_t2i", "loss_ita"];
        CheckAll(r, n => items.Any(i => n.EndsWith("." + i, StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ItmLogitsForTheRecordedNegativesMatch(string name)
    {
        var r = replays.Get(name);
        string[] items = ["weights_t2i", "weights_i2t", "neg_image_idx", "neg_text_idx", "vl_output", "itm_labels", "loss_itm"];
        CheckAll(r, n => items.Any(i => n.EndsWith("." + i, StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LmLossAndTotalMatch(string name)
    {
        var r = replays.Get(name);
        string[] items = ["lm.per_token_loss", "loss_lm", "loss"];
        CheckAll(r, n => items.Any(i => n.EndsWith("." + i, StringComparison.Ordinal)));
        var steps = r.Cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();
        for (int k = 0; k < steps.Count; k++)
        {
            foreach (var (logged, recorded) in new[] { ("loss_ita", "loss_ita"), ("loss_itm", "loss_itm"), ("loss_lm", "loss_lm"), ("loss", "loss") })
            {
                double expected = steps[k].GetProperty(recorded).GetDouble();
                double tol = r.Cases.Tolerance($"step{k + 1}.{(recorded == "loss" ? "loss" : recorded)}");
                Assert.True(Math.Abs(r.Logged[k][logged] - expected) <= tol, $"{r.Name} step {k + 1}: logged {logged} {r.Logged[k][logged]:G9}, BLIP {expected:G9} (tol {tol:E2})");
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
        CheckStateStats(r, key => !IsMomentum(key) && !key.Contains("queue", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MomentumUpdateMatches(string name)
    {
        var r = replays.Get(name);
        CheckAll(r, n => n.Contains(".after.", StringComparison.Ordinal) && n.Contains("_m.", StringComparison.Ordinal));
        CheckStateStats(r, IsMomentum);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void QueuesMatchAfterEveryStep(string name)
    {
        var r = replays.Get(name);
        Assert.True(StepCount(r) >= 2, $"{r.Name}: the fixture should record at least two steps");
        CheckAll(r, n => n.Contains("queue", StringComparison.Ordinal));
        CheckStateStats(r, key => key.Contains("queue", StringComparison.Ordinal));
        var steps = r.Cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();
        for (int k = 0; k < steps.Count; k++)
            Assert.Equal(steps[k].GetProperty("queue_ptr_after").GetInt64(), r.Actual[$"step{k + 1}.after.queue_ptr"].ToInt64());
    }

    private static bool IsMomentum(string originalKey) => StepReplayChecks.IsMomentum(originalKey);

    private void CheckStateStats(PretrainReplay r, Func<string, bool> select) => StepReplayChecks.CheckStateStats(r, output, select);
}
