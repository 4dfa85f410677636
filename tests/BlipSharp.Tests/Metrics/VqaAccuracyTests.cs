using System.Text.Json;
using BlipSharp.Training.Evaluation.Vqa;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Metrics;

/// <summary>
/// VQA accuracy against <c>vqa_golden.json</c> (official <c>vqaEval.py</c>, HEAD and pre-2021): every item's compared
/// strings, unrounded accuracy and evalQA, and the overall / per-type numbers. The values are exact arithmetic in the
/// reference's order, so they are compared for equality.
/// </summary>
[Trait("Category", "Metrics")]
public sealed class VqaAccuracyTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Versions() => [[VqaEvalVersion.Head], [VqaEvalVersion.Pre2021]];

    [Theory]
    [MemberData(nameof(Versions))]
    public void EveryItemComparesTheReferenceStringsAndScoresTheReferenceAccuracy(VqaEvalVersion version)
    {
        var golden = VqaGolden.Load();
        var failures = new List<string>();
        foreach (var item in golden.Items)
        {
            var expected = VqaGolden.ItemResult(item, version);
            var score = VqaAccuracy.ScoreAnswer(item.GetProperty("prediction").GetString()!, VqaGolden.Strings(item.GetProperty("gt_answers")), version);
            long id = VqaGolden.Id(item);
            string expectedPrediction = expected.GetProperty("prediction_compared").GetString()!;
            string[] expectedGts = VqaGolden.Strings(expected.GetProperty("gt_answers_compared"));
            if (score.PredictionCompared != expectedPrediction)
                failures.Add($"{id}: prediction_compared {JsonSerializer.Serialize(score.PredictionCompared)}, expected {JsonSerializer.Serialize(expectedPrediction)}");
            if (!score.GtAnswersCompared.SequenceEqual(expectedGts))
                failures.Add($"{id}: gt_answers_compared {JsonSerializer.Serialize(score.GtAnswersCompared)}, expected {JsonSerializer.Serialize(expectedGts)}");
            if (score.Accuracy != expected.GetProperty("accuracy").GetDouble())
                failures.Add($"{id}: accuracy {score.Accuracy:R}, expected {expected.GetProperty("accuracy").GetDouble():R}");
            if (score.EvalQA != expected.GetProperty("evalQA").GetDouble())
                failures.Add($"{id}: evalQA {score.EvalQA:R}, expected {expected.GetProperty("evalQA").GetDouble():R}");
        }
        output.WriteLine($"{version}: {golden.Items.Count} items, {failures.Count} mismatches");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public void OverallAndPerTypeAccuracyMatchTheReference(VqaEvalVersion version)
    {
        var golden = VqaGolden.Load();
        var annotations = golden.Items.Select(VqaGolden.Annotation).ToList();
        var predictions = golden.Items.ToDictionary(VqaGolden.Id, i => i.GetProperty("prediction").GetString()!);
        var result = VqaAccuracy.Evaluate(annotations, predictions, version);
        AssertExpected(golden.Expected(version), result);
        Assert.Equal(golden.Expected(version).GetProperty("mean_unrounded_accuracy_x100").GetDouble(), result.MeanUnroundedAccuracyX100);
        Assert.Equal(golden.Items.Count, result.Questions.Count);
        output.WriteLine($"{version}: overall {result.Overall}, {result.PerQuestionType.Count} question types, {result.PerAnswerType.Count} answer types");
    }

    /// <summary>Asserts overall, perQuestionType and perAnswerType equal an <c>expected</c> block (same keys, same values).</summary>
    internal static void AssertExpected(JsonElement expected, VqaAccuracyResult result)
    {
        Assert.Equal(expected.GetProperty("overall").GetDouble(), result.Overall);
        AssertTypes(expected.GetProperty("perQuestionType"), result.PerQuestionType, "perQuestionType");
        AssertTypes(expected.GetProperty("perAnswerType"), result.PerAnswerType, "perAnswerType");
    }

    private static void AssertTypes(JsonElement expected, IReadOnlyDictionary<string, double> actual, string what)
    {
        var want = expected.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
        Assert.Equal(want.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (type, value) in want)
            Assert.True(actual[type] == value, $"{what}['{type}']: {actual[type]:R}, expected {value:R}");
    }

    [Theory]
    [InlineData(0.125, 0.13)] // exactly halfway: Python 2 rounds away from zero (Python 3 would give 0.12)
    [InlineData(-0.125, -0.13)]
    [InlineData(2.675, 2.67)] // the double is just below 2.675
    [InlineData(1.005, 1.0)] // the double is just below 1.005
    [InlineData(30.000000000000004, 30.0)]
    [InlineData(89.99999999999997, 90.0)]
    [InlineData(65.55555555555556, 65.56)]
    [InlineData(0.0, 0.0)]
    public void PythonRoundIsExactAndHalfAwayFromZero(double x, double expected) =>
        Assert.Equal(expected, VqaAccuracy.PythonRound(x, 2));

    [Fact]
    public void PunctuationQuirksOfTheReference()
    {
        Assert.Equal("10002000", VqaAnswerNormalizer.ProcessPunctuation("1,000-2,000"));
        Assert.Equal("redorange  yellow", VqaAnswerNormalizer.ProcessPunctuation("red-orange - yellow"));
        Assert.Equal("5.0", VqaAnswerNormalizer.ProcessPunctuation("5.0."));
        Assert.Equal("yes" + new string('.', 8), VqaAnswerNormalizer.ProcessPunctuation("yes" + new string('.', 40)));
        Assert.Equal("somebodyd", VqaAnswerNormalizer.ProcessDigitArticle("Somebody'd"));
        Assert.Equal("im 0 eleven", VqaAnswerNormalizer.ProcessDigitArticle("Im none eleven"));
    }
}
