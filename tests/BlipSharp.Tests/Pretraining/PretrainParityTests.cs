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

    private void CheckAll(PretrainReplay r, Func<string, bool> select)
    {
        var names = r.Cases.TensorNames.Where(n => n.StartsWith("step", StringComparison.Ordinal) && select(n)).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(names);
        double worst = 0;
        string worstName = "";
        foreach (string name in names)
        {
            Assert.True(r.Actual.ContainsKey(name), $"{r.Name}: the replay produced no value for fixture tensor '{name}'");
            var expected = r.Cases.Tensor(name);
            var actual = r.Actual[name];
            if (!expected.is_floating_point())
            {
                TensorAssert.Equal(expected, actual, $"{r.Name}: {name}");
                continue;
            }
            double tol = r.Cases.Tolerance(name);
            FixtureModels.Check(r.Cases, name, actual);
            using var diff = (expected.to_type(ScalarType.Float64) - actual.reshape(expected.shape).to_type(ScalarType.Float64)).abs().max();
            double ratio = diff.ToDouble() / tol;
            if (ratio > worst) (worst, worstName) = (ratio, name);
        }
        output.WriteLine($"{r.Name}: {names.Count} tensors; worst |diff|/tol {worst:F3} ({worstName})");
    }

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
        double relative = RelativeNoise(r, ".grad.");
        var steps = r.Cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();
        double worst = 0;
        for (int k = 0; k < steps.Count; k++)
        {
            int count = 0;
            foreach (var entry in steps[k].GetProperty("grad_stats_sum_l2").EnumerateObject())
            {
                var ours = r.GradStats[k][entry.Name];
                if (entry.Value.ValueKind == JsonValueKind.Null)
                {
                    Assert.True(ours is null, $"{r.Name} step {k + 1}: '{entry.Name}' has no gradient in BLIP but has one here");
                    continue;
                }
                Assert.True(ours is not null, $"{r.Name} step {k + 1}: '{entry.Name}' has a gradient in BLIP but none here");
                count++;
                if (IsKeyBias(entry.Name))
                {
                    // Exactly 0: a key bias adds the same q.b to every score of a row, and softmax ignores it. Both
                    // sides hold rounding noise; check that it is noise against the key weight's gradient.
                    string weight = entry.Name[..^"bias".Length] + "weight";
                    double scale = steps[k].GetProperty("grad_stats_sum_l2").GetProperty(weight)[1].GetDouble();
                    double limit = Tolerances.NoiseFactor * relative * scale;
                    Assert.True(ours!.Value.L2 <= limit && entry.Value[1].GetDouble() <= limit,
                        $"{r.Name} step {k + 1}: the gradient of '{entry.Name}' should be rounding noise (exactly 0): L2 {ours.Value.L2:E2} here, {entry.Value[1].GetDouble():E2} in BLIP, limit {limit:E2}");
                    continue;
                }
                worst = Math.Max(worst, CheckStats(r, $"step {k + 1} gradient of '{entry.Name}'", entry.Value, ours!.Value, relative));
            }
            Assert.True(count > 0);
        }
        output.WriteLine($"{r.Name}: gradient stats, relative noise {relative:E2}; worst |diff|/tol {worst:F3}");
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

    /// <summary>Text attention key biases (self and cross): their exact gradient is 0.</summary>
    private static bool IsKeyBias(string originalKey) => originalKey.EndsWith(".self.key.bias", StringComparison.Ordinal);

    /// <summary>
    /// How many elements of a trainable tensor have an exact gradient of 0, so that AdamW moves them by rounding
    /// noise: every text attention key bias, and the key third of each ViT qkv bias.
    /// </summary>
    private static long NoiseDrivenElements(string originalKey, long count) =>
        IsKeyBias(originalKey) ? count
        : originalKey.StartsWith("visual_encoder.", StringComparison.Ordinal) && originalKey.EndsWith(".attn.qkv.bias", StringComparison.Ordinal) ? count / 3
        : 0;

    private static bool IsMomentum(string originalKey) =>
        originalKey.Split('.')[0] is "visual_encoder_m" or "vision_proj_m" or "text_encoder_m" or "text_proj_m";

    private void CheckStateStats(PretrainReplay r, Func<string, bool> select)
    {
        double relative = RelativeNoise(r, ".after.");
        double learningRate = OriginalFixtures.AdamW(r.Dir).LearningRate;
        var steps = r.Cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();
        double worst = 0;
        int count = 0;
        for (int k = 0; k < steps.Count; k++)
        {
            foreach (var entry in steps[k].GetProperty("state_stats_after_sum_l2").EnumerateObject())
            {
                if (!select(entry.Name) || OriginalBlipKeyMap.IsPositionIds(entry.Name)) continue;
                Assert.True(r.StateStats[k].TryGetValue(entry.Name, out var ours), $"{r.Name}: no state recorded for '{entry.Name}'");
                count++;
                if (entry.Value[1].ValueKind == JsonValueKind.Null)
                {
                    // Integer state (queue_ptr): [sum, null].
                    Assert.True(entry.Value[0].GetDouble() == ours.Sum, $"{r.Name}: step {k + 1} state '{entry.Name}' sums to {ours.Sum}, BLIP {entry.Value[0]}");
                    continue;
                }
                // Elements whose exact gradient is 0 are moved by AdamW's normalised step by up to lr per step in a
                // direction set by rounding noise, on both sides: allow 2 lr per step for each of them.
                long noiseDriven = NoiseDrivenElements(entry.Name, ours.Count);
                double allowance = 2 * learningRate * (k + 1);
                worst = Math.Max(worst, CheckStats(r, $"step {k + 1} state '{entry.Name}'", entry.Value, ours, relative,
                    extraL2: allowance * Math.Sqrt(noiseDriven), extraSum: allowance * noiseDriven));
            }
        }
        Assert.True(count > 0, $"{r.Name}: no state entry selected");
        output.WriteLine($"{r.Name}: {count} state stats, relative noise {relative:E2}; worst |diff|/tol {worst:F3}");
    }

    /// <summary>
    /// The largest relative fp32-vs-fp64 noise (noise / absmax) of the fixture's full tensors of one kind
    /// (gradients or states after a step): the scale for quantities recorded only as [sum, L2].
    /// </summary>
    private static double RelativeNoise(PretrainReplay r, string kind)
    {
        double rel = 0;
        foreach (string n in r.Cases.TensorNames.Where(n => n.Contains(kind, StringComparison.Ordinal)))
        {
            double absMax = r.Cases.AbsMax(n);
            if (absMax > 0) rel = Math.Max(rel, r.Cases.Noise(n) / absMax);
        }
        Assert.True(rel > 0, $"{r.Name}: no noise recorded for the {kind} tensors");
        return rel;
    }

    /// <summary>
    /// Compares [sum, L2] with tolerances from the relative noise: each element may be off by about rel * L2
    /// (Tolerances.NoiseFactor times), so the L2 by that much and the sum by sqrt(n) times that; floors of a few
    /// float32 ulps of the magnitudes.
    /// </summary>
    private static double CheckStats(PretrainReplay r, string what, JsonElement expected, (double Sum, double L2, long Count) ours, double relative,
        double extraL2 = 0, double extraSum = 0)
    {
        double sum = expected[0].GetDouble(), l2 = expected[1].GetDouble();
        const double ulp = 1.1920929e-7;
        double tolL2 = Math.Max(Tolerances.NoiseFactor * relative * l2, Tolerances.UlpFloor * ulp * l2) + extraL2;
        double tolSum = Math.Max(Tolerances.NoiseFactor * relative * l2 * Math.Sqrt(ours.Count), Tolerances.UlpFloor * ulp * Math.Max(Math.Abs(sum), l2)) + extraSum;
        double dL2 = Math.Abs(ours.L2 - l2), dSum = Math.Abs(ours.Sum - sum);
        Assert.True(dL2 <= tolL2, $"{r.Name}: {what}: L2 {ours.L2:G9}, BLIP {l2:G9} (|diff| {dL2:E2} > tol {tolL2:E2})");
        Assert.True(dSum <= tolSum, $"{r.Name}: {what}: sum {ours.Sum:G9}, BLIP {sum:G9} (|diff| {dSum:E2} > tol {tolSum:E2})");
        return Math.Max(dL2 / tolL2, dSum / tolSum);
    }
}
