using System.Text.Json;
using BlipSharp.Training.Checkpoints;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.TestSupport;

/// <summary>A replay of a blip-original fixture's training steps: our values under the fixture's names, plus per-step stats.</summary>
public interface IStepReplay
{
    string Dir { get; }
    string Name { get; }
    FixtureCases Cases { get; }

    /// <summary>Our values under the fixture's tensor names.</summary>
    Dictionary<string, Tensor> Actual { get; }

    /// <summary>Per step: [sum, L2] of every parameter's gradient under its original key (null: no gradient).</summary>
    List<Dictionary<string, (double Sum, double L2, long Count)?>> GradStats { get; }

    /// <summary>Per step: [sum, L2] of every state_dict entry after the step, under its original key.</summary>
    List<Dictionary<string, (double Sum, double L2, long Count)>> StateStats { get; }
}

/// <summary>
/// The comparisons of a replayed training step with the fixture, shared by the pretraining and retrieval parity
/// tests: full tensors at their noise-derived tolerance, and the [sum, L2] statistics of every gradient and every
/// state entry at tolerances scaled by the fixture's largest relative fp32-vs-fp64 noise.
/// </summary>
public static class StepReplayChecks
{
    public static IReadOnlyList<JsonElement> Steps(IStepReplay r) => r.Cases.Json.GetProperty("cases").GetProperty("steps").EnumerateArray().ToList();

    /// <summary>Compares every fixture tensor whose name passes <paramref name="select"/> with the replay's value of that name.</summary>
    public static void CheckAll(IStepReplay r, ITestOutputHelper output, Func<string, bool> select, string prefix = "step")
    {
        var names = r.Cases.TensorNames.Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && select(n)).Order(StringComparer.Ordinal).ToList();
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

    /// <summary>Every parameter's gradient statistics against the fixture's <c>grad_stats_sum_l2</c> of every step.</summary>
    public static void CheckGradientStats(IStepReplay r, ITestOutputHelper output)
    {
        double relative = RelativeNoise(r, ".grad.");
        var steps = Steps(r);
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

    /// <summary>Text attention key biases (self and cross): their exact gradient is 0.</summary>
    public static bool IsKeyBias(string originalKey) => originalKey.EndsWith(".self.key.bias", StringComparison.Ordinal);

    /// <summary>
    /// How many elements of a trainable tensor have an exact gradient of 0, so that AdamW moves them by rounding
    /// noise: every text attention key bias, and the key third of each ViT qkv bias.
    /// </summary>
    public static long NoiseDrivenElements(string originalKey, long count) =>
        IsKeyBias(originalKey) ? count
        : originalKey.StartsWith("visual_encoder.", StringComparison.Ordinal) && originalKey.EndsWith(".attn.qkv.bias", StringComparison.Ordinal) ? count / 3
        : 0;

    public static bool IsMomentum(string originalKey) =>
        originalKey.Split('.')[0] is "visual_encoder_m" or "vision_proj_m" or "text_encoder_m" or "text_proj_m";

    /// <summary>The statistics of every state entry <paramref name="select"/> picks against the fixture's <c>state_stats_after_sum_l2</c>.</summary>
    public static void CheckStateStats(IStepReplay r, ITestOutputHelper output, Func<string, bool> select)
    {
        double relative = RelativeNoise(r, ".after.");
        double learningRate = OriginalFixtures.AdamW(r.Dir).LearningRate;
        var steps = Steps(r);
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
                    // Integer state (queue pointer, id queue): [sum, null].
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
    public static double RelativeNoise(IStepReplay r, string kind)
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
    public static double CheckStats(IStepReplay r, string what, JsonElement expected, (double Sum, double L2, long Count) ours, double relative,
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

    /// <summary>[sum, L2, count] of a tensor in float64.</summary>
    public static (double Sum, double L2, long Count) Stats(Tensor t)
    {
        using var scope = NewDisposeScope();
        var d = t.detach().to_type(ScalarType.Float64);
        return (d.sum().ToDouble(), d.square().sum().sqrt().ToDouble(), t.numel());
    }
}
