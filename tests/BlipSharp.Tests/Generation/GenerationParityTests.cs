using System.Text.Json;
using BlipSharp.Generation;
using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Generation;

/// <summary>
/// Every <c>generate</c> run recorded in the hf-blip fixtures (greedy, beam, prompted, VQA) reproduced token for
/// token, with beam scores and greedy step logits, with and without the KV cache.
/// </summary>
[Trait("Category", "Parity")]
public sealed class GenerationParityTests
{
    public static IEnumerable<object[]> Runs() => GenerationFixtureRuns.All();

    [Theory]
    [MemberData(nameof(Runs))]
    public void SequencesMatchTransformers(string model, string run)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var spec = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty(run);
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        using var result = GenerationFixtureRuns.Run(cases, m, run, spec, GenerationFixtureRuns.Options(spec, outputLogits: true));
        CheckAgainstRun(cases, run, spec, result, GenerationFixtureRuns.LogitTolerance(cases));
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void CachedDecodingEqualsFullRecomputation(string model, string run)
    {
        string dir = Fixtures.HfModelDir(model);
        using var cases = new FixtureCases(dir);
        var spec = cases.Json.GetProperty("cases").GetProperty("generate").GetProperty(run);
        using var m = FixtureModels.Load(dir, FixtureModels.Architecture(cases));
        using var cached = GenerationFixtureRuns.Run(cases, m, run, spec, GenerationFixtureRuns.Options(spec, useCache: true, outputLogits: true));
        using var full = GenerationFixtureRuns.Run(cases, m, run, spec, GenerationFixtureRuns.Options(spec, useCache: false, outputLogits: true));
        Assert.Equal(full.Sequences.Count, cached.Sequences.Count);
        for (int r = 0; r < full.Sequences.Count; r++) Assert.Equal(full.Sequences[r], cached.Sequences[r]);
        TensorAssert.Close(full.StepLogits!, cached.StepLogits!, GenerationFixtureRuns.LogitTolerance(cases), $"{model} {run}: step logits, cached vs recomputed");
        if (full.SequenceScores is not null)
            for (int r = 0; r < full.SequenceScores.Count; r++)
                Assert.True(Math.Abs(full.SequenceScores[r] - cached.SequenceScores![r]) < 1e-4, $"{run} row {r}: score {cached.SequenceScores[r]} vs {full.SequenceScores[r]}");
    }

    internal static void CheckAgainstRun(FixtureCases cases, string run, JsonElement spec, GeneratedSequences result, double logitTolerance)
    {
        string what = $"{Path.GetFileName(cases.Dir)} {run}";
        var expected = spec.GetProperty("sequences").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToList();
        Assert.Equal(expected.Count, result.Sequences.Count);
        for (int r = 0; r < expected.Count; r++)
            Assert.True(expected[r].SequenceEqual(result.Sequences[r]),
                $"{what} row {r}:\n expected [{string.Join(", ", expected[r])}]\n got      [{string.Join(", ", result.Sequences[r])}]");
        // The tensor copy of the sequences agrees with the JSON.
        TensorAssert.Equal(cases.Tensor($"generate.{run}.sequences"), tensor(result.Sequences.SelectMany(s => s).ToArray(), [result.Sequences.Count, result.Sequences[0].Length]), what);
        Assert.Equal(spec.GetProperty("prompt_len").GetInt32(), result.PromptLength);

        if (spec.TryGetProperty("sequences_scores", out var scores))
        {
            var want = scores.EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.NotNull(result.SequenceScores);
            for (int r = 0; r < want.Length; r++)
                Assert.True(Math.Abs(want[r] - result.SequenceScores![r]) <= 1e-5 + 1e-5 * Math.Abs(want[r]),
                    $"{what} row {r}: sequence score {result.SequenceScores[r]:G9}, expected {want[r]:G9}");
        }
        else
        {
            Assert.Null(result.SequenceScores);
        }

        if (spec.TryGetProperty("steps_raw_logits_top5", out var steps))
        {
            var logits = result.StepLogits!;
            var stepList = steps.EnumerateArray().ToList();
            Assert.Equal(stepList.Count, (int)logits.shape[0]);
            long sep = result.EosTokenId;
            for (int s = 0; s < stepList.Count; s++)
            {
                var ids = stepList[s].GetProperty("top5_ids").EnumerateArray().ToList();
                var values = stepList[s].GetProperty("top5_logits").EnumerateArray().ToList();
                var sepLogits = stepList[s].GetProperty("logit_SEP").EnumerateArray().Select(v => v.GetDouble()).ToList();
                for (int r = 0; r < ids.Count; r++)
                {
                    using var row = logits[s, r];
                    var (top, topIds) = row.topk(5);
                    Assert.Equal(ids[r].EnumerateArray().Select(v => v.GetInt64()), topIds.data<long>().ToArray());
                    var want = values[r].EnumerateArray().Select(v => v.GetDouble()).ToArray();
                    var got = top.data<float>().ToArray();
                    for (int j = 0; j < 5; j++)
                        Assert.True(Math.Abs(want[j] - got[j]) <= logitTolerance, $"{what} step {s} row {r} top{j}: {got[j]:G9} vs {want[j]:G9} (tol {logitTolerance:E2})");
                    Assert.True(Math.Abs(sepLogits[r] - row[sep].ToDouble()) <= logitTolerance, $"{what} step {s} row {r}: [SEP] logit");
                    top.Dispose();
                    topIds.Dispose();
                }
            }
        }
    }
}
