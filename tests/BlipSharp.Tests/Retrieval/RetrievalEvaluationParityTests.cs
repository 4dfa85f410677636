using BlipSharp.Tests.TestSupport;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Retrieval;

/// <summary>
/// BLIP's train_retrieval.evaluation on the freshly loaded BLIP_Retrieval: tokenisation (max_length 35), ITC
/// features and similarities, the top-k candidates of both directions, their ITM scores and BLIP's dense -100-filled
/// score matrices match every <c>eval.*</c> tensor of the fixture (run with batch sizes that split the fixture's
/// images, texts and ITM pairs unevenly).
/// </summary>
[Trait("Category", "Parity")]
public sealed class RetrievalEvaluationParityTests(RetrievalReplays replays, ITestOutputHelper output) : IClassFixture<RetrievalReplays>
{
    public static IEnumerable<object[]> Cases() => OriginalFixtures.RetrievalCaseNames();

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryEvaluationTensorMatches(string name)
    {
        var r = replays.Get(name);
        StepReplayChecks.CheckAll(r, output, _ => true, prefix: "eval.");
        Assert.True(r.EvalTrainingModeRestored, $"{r.Name}: the evaluator did not restore the model's training mode");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DenseScoreMatricesEqualTheOnesInCasesJson(string name)
    {
        var r = replays.Get(name);
        var eval = r.Cases.Json.GetProperty("cases").GetProperty("eval");
        foreach (string matrix in new[] { "score_matrix_i2t", "score_matrix_t2i" })
        {
            var rows = eval.GetProperty(matrix).EnumerateArray().Select(row => row.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
            var actual = r.Actual["eval." + matrix];
            double tol = r.Cases.Tolerance("eval." + matrix);
            Assert.Equal(rows.Length, (int)actual.shape[0]);
            for (int i = 0; i < rows.Length; i++)
            {
                for (int j = 0; j < rows[i].Length; j++)
                {
                    double ours = actual[i, j].ToDouble();
                    Assert.True(Math.Abs(ours - rows[i][j]) <= tol, $"{r.Name}: {matrix}[{i}, {j}] = {ours:G9}, BLIP {rows[i][j]:G9} (tol {tol:E2})");
                }
            }
        }
    }
}
