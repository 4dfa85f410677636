using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Vqa;
using Xunit;

namespace BlipSharp.Tests.Metrics;

/// <summary>
/// The official-format VQA files (<see cref="VqaFiles"/>) and <c>blip score vqa</c>: files written from
/// <c>vqa_golden.json</c> reproduce its <c>expected</c> blocks; malformed files name the file, the record and the field.
/// </summary>
[Trait("Category", "Metrics")]
public sealed class VqaFilesTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "blipsharp-vqa-" + Guid.NewGuid().ToString("N"));
    private readonly VqaGolden _golden = VqaGolden.Load();

    /// <summary>Record <paramref name="k"/>, or the last one when the fixture folder holds fewer.</summary>
    private int Ix(int k) => Math.Min(k, _golden.Items.Count - 1);

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData(VqaEvalVersion.Head)]
    [InlineData(VqaEvalVersion.Pre2021)]
    public void OfficialFilesWrittenFromTheFixtureReproduceExpected(VqaEvalVersion version)
    {
        var (results, questions, annotations) = _golden.WriteOfficialFiles(_dir);
        var result = VqaFiles.Score(results, questions, annotations, version);
        VqaAccuracyTests.AssertExpected(_golden.Expected(version), result);
        Assert.Equal(_golden.Expected(version).GetProperty("mean_unrounded_accuracy_x100").GetDouble(), result.MeanUnroundedAccuracyX100);
        foreach (var (item, q) in _golden.Items.Zip(result.Questions))
        {
            Assert.Equal(VqaGolden.Id(item), q.QuestionId);
            Assert.Equal(VqaGolden.ItemResult(item, version).GetProperty("evalQA").GetDouble(), q.Score.EvalQA);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CliJsonPrintsExpected(bool pre2021)
    {
        var (results, questions, annotations) = _golden.WriteOfficialFiles(_dir);
        string[] args = ["score", "vqa", "--results", results, "--questions", questions, "--annotations", annotations, "--json", .. pre2021 ? new[] { "--pre2021" } : []];
        var (code, output, error) = CliRunner.Run(args);
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        var expected = _golden.Expected(pre2021 ? VqaEvalVersion.Pre2021 : VqaEvalVersion.Head);
        Assert.Equal(pre2021 ? "pre2021" : "head", root.GetProperty("version").GetString());
        Assert.Equal(_golden.Items.Count, root.GetProperty("questions").GetInt32());
        Assert.Equal(expected.GetProperty("overall").GetDouble(), root.GetProperty("overall").GetDouble());
        foreach (var (mine, theirs) in new[] { ("per_answer_type", "perAnswerType"), ("per_question_type", "perQuestionType") })
        {
            var want = expected.GetProperty(theirs).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            var got = root.GetProperty(mine).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            Assert.Equal(want.OrderBy(kv => kv.Key, StringComparer.Ordinal), got.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }
    }

    [Fact]
    public void CliTextPrintsOverallAndEveryType()
    {
        var (results, questions, annotations) = _golden.WriteOfficialFiles(_dir);
        var (code, output, error) = CliRunner.Run("score", "vqa", "--results", results, "--questions", questions, "--annotations", annotations);
        Assert.True(code == 0, error);
        var expected = _golden.Expected(VqaEvalVersion.Head);
        Assert.Contains($": {expected.GetProperty("overall").GetDouble():0.00}", output);
        foreach (var p in expected.GetProperty("perAnswerType").EnumerateObject().Concat(expected.GetProperty("perQuestionType").EnumerateObject()))
            Assert.Matches($@"(?m)^  {System.Text.RegularExpressions.Regex.Escape(p.Name)} +{p.Value.GetDouble():0.00}\r?$", output);
    }

    /// <summary>Rewrites one of the official files, reads them and returns the error.</summary>
    private (DataFormatException Error, string File) Break(string which, Action<JsonNode> edit)
    {
        var (results, questions, annotations) = _golden.WriteOfficialFiles(_dir);
        string path = which switch { "results" => results, "questions" => questions, _ => annotations };
        var node = JsonNode.Parse(File.ReadAllText(path))!;
        edit(node);
        File.WriteAllText(path, node.ToJsonString());
        var e = Assert.Throws<DataFormatException>(() => VqaFiles.Score(results, questions, annotations));
        return (e, path);
    }

    private static void AssertNames(DataFormatException e, string file, params string[] parts)
    {
        Assert.Equal(file, e.Issue.Source);
        Assert.StartsWith(file + ": ", e.Message);
        foreach (string part in parts) Assert.Contains(part, e.Message);
    }

    [Fact]
    public void MissingFieldNamesFileRecordAndField()
    {
        var (e, file) = Break("annotations", n => n["annotations"]![Ix(3)]!.AsObject().Remove("answer_type"));
        AssertNames(e, file, $"annotations record {Ix(3)}", $"question_id {VqaGolden.Id(_golden.Items[Ix(3)])}", "'answer_type'", "missing");
    }

    [Fact]
    public void WrongTypeNamesFileRecordAndField()
    {
        var (e, file) = Break("annotations", n => n["annotations"]![Ix(2)]!["answers"]![0]!["answer"] = 7);
        AssertNames(e, file, $"annotations record {Ix(2)}", "'answers[0].answer'", "must be a string", "number");

        (e, file) = Break("questions", n => n["questions"]![Ix(5)]!["question_id"] = "12");
        AssertNames(e, file, $"questions record {Ix(5)}", "'question_id'", "integer", "string");

        (e, file) = Break("results", n => n[1]!["answer"] = JsonValue.Create(true));
        AssertNames(e, file, "record 1", "'answer'", "must be a string", "boolean");

        (e, file) = Break("annotations", n => n["annotations"]![0]!["image_id"] = 1.5);
        AssertNames(e, file, "annotations record 0", "'image_id'", "integer");
    }

    [Fact]
    public void UnknownImageIdNamesFileRecordAndField()
    {
        var (e, file) = Break("annotations", n => n["annotations"]![Ix(4)]!["image_id"] = 999999999);
        AssertNames(e, file, $"annotations record {Ix(4)}", "'image_id'", "999999999");
    }

    [Fact]
    public void UnknownQuestionIdInAnnotationsNamesTheQuestionsFile()
    {
        var (e, file) = Break("questions", n => n["questions"]!.AsArray().RemoveAt(0));
        AssertNames(e, Path.Combine(_dir, "annotations.json"), "annotations record 0", "'question_id'", "unknown question id", file);
    }

    [Fact]
    public void ResultsMustCoverExactlyTheAnnotatedQuestions()
    {
        long missingId = VqaGolden.Id(_golden.Items[Ix(2)]);
        var (e, file) = Break("results", n => n.AsArray().RemoveAt(Ix(2)));
        AssertNames(e, file, "no result", missingId.ToString());

        (e, file) = Break("results", n => n.AsArray().Add(new JsonObject { ["question_id"] = 123456789, ["answer"] = "yes" }));
        AssertNames(e, file, $"record {_golden.Items.Count}", "123456789", "not in");

        (e, file) = Break("results", n => n.AsArray().Add(new JsonObject { ["question_id"] = VqaGolden.Id(_golden.Items[0]), ["answer"] = "yes" }));
        AssertNames(e, file, $"record {_golden.Items.Count}", "'question_id'", "repeats", "record 0");
    }

    [Fact]
    public void DuplicateAnswerIdsAndNotAListAreErrors()
    {
        var (e, file) = Break("annotations", n => n["annotations"]![0]!["answers"]![1]!["answer_id"] = 1);
        AssertNames(e, file, "annotations record 0", "'answers[1].answer_id'", "repeats");

        file = Path.Combine(_dir, "object.json");
        File.WriteAllText(file, "{\"question_id\": 1, \"answer\": \"yes\"}");
        e = Assert.Throws<DataFormatException>(() => VqaFiles.ReadResults(file));
        AssertNames(e, file, "JSON list", "object");
    }

    [Fact]
    public void CliReportsAMalformedFileAsAUsageError()
    {
        var (results, questions, annotations) = _golden.WriteOfficialFiles(_dir);
        File.WriteAllText(results, "[{\"question_id\": 1}]");
        var (code, _, error) = CliRunner.Run("score", "vqa", "--results", results, "--questions", questions, "--annotations", annotations);
        Assert.Equal(2, code);
        Assert.Contains(results, error);
        Assert.Contains("record 0", error);
        Assert.Contains("'answer'", error);
    }
}
