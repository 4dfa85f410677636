using BlipSharp.Training.Data;
using BlipSharp.Training.Vqa;
using Xunit;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// BLIP's VQA annotation files (vqa_train.json / vg_qa.json / vqa_test.json): records are read with their types, the
/// answer weighting keeps BLIP's order and sums, and every malformed record fails naming the file, the record and the field.
/// </summary>
public sealed class VqaAnnotationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vqa-annotations-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string json, string name = "vqa_train.json")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void ReadsVqaAndVisualGenomeRecords()
    {
        string path = Write("""
            [
              {"question_id": 262148000, "question": "Where is he looking?", "answer": ["down", "down", "at table"], "image": "val2014/x.jpg", "dataset": "vqa"},
              {"question_id": "vg_7", "question": "What color is the bus?", "answer": "red", "image": "VG_100K/1.jpg", "dataset": "vg"}
            ]
            """);
        var records = VqaAnnotationReader.Read(path);
        Assert.Equal(2, records.Count);
        Assert.Equal(new VqaAnnotation("262148000", "Where is he looking?", records[0].Answers, "val2014/x.jpg", VqaSource.Vqa), records[0]);
        Assert.Equal(["down", "down", "at table"], records[0].Answers);
        Assert.Equal("vg_7", records[1].QuestionId);
        Assert.Equal(["red"], records[1].Answers);
        Assert.Equal(VqaSource.VisualGenome, records[1].Source);
    }

    [Fact]
    public void WeighsAnswersInOrderOfFirstAppearanceAndCollatesThem()
    {
        var vqa = new VqaAnnotation(null, "Is it raining?!", ["no", "yes", "no", "no"], "a.jpg", VqaSource.Vqa);
        var vg = new VqaAnnotation(null, "What is it?", ["rain"], "b.jpg", VqaSource.VisualGenome);
        var item = VqaAnswerWeighting.Weigh(vqa);
        Assert.Equal("is it raining?", item.Question);
        Assert.Equal(["no", "yes"], item.Answers.Select(a => a.Answer));
        Assert.Equal(0.25 + 0.25 + 0.25, item.Answers[0].Weight);
        Assert.Equal(0.25, item.Answers[1].Weight);
        var collated = VqaAnswerWeighting.Collate([item, VqaAnswerWeighting.Weigh(vg)]);
        Assert.Equal(["no", "yes", "rain"], collated.Answers);
        Assert.Equal([0.75f, 0.25f, 0.2f], collated.Weights);
        Assert.Equal([2, 1], collated.AnswerCounts);
    }

    [Fact]
    public void TestRecordsNeedAQuestionIdButNoAnswer()
    {
        string path = Write("""[{"question_id": 5, "question": "q?", "image": "i.jpg", "dataset": "vqa"}]""", "vqa_test.json");
        var record = Assert.Single(VqaAnnotationReader.Read(path, VqaSplit.Test));
        Assert.Empty(record.Answers);
        string missing = Write("""[{"question": "q?", "image": "i.jpg", "dataset": "vqa"}]""", "vqa_test2.json");
        AssertError(() => VqaAnnotationReader.Read(missing, VqaSplit.Test), missing, "record 0", "'question_id'");
    }

    [Theory]
    [InlineData("""{"question": "q", "image": "i.jpg", "dataset": "vqa"}""", "missing field 'answer'")]
    [InlineData("""{"answer": ["a"], "image": "i.jpg", "dataset": "vqa"}""", "missing field 'question'")]
    [InlineData("""{"question": "q", "answer": ["a"], "dataset": "vqa"}""", "missing field 'image'")]
    [InlineData("""{"question": "q", "answer": ["a"], "image": "i.jpg"}""", "missing field 'dataset'")]
    [InlineData("""{"question": "q", "answer": ["a"], "image": "i.jpg", "dataset": "coco"}""", "field 'dataset'")]
    [InlineData("""{"question": 3, "answer": ["a"], "image": "i.jpg", "dataset": "vqa"}""", "field 'question' must be a non-empty string")]
    [InlineData("""{"question": "q", "answer": "a", "image": "i.jpg", "dataset": "vqa"}""", "field 'answer' of a \"vqa\" record must be a list")]
    [InlineData("""{"question": "q", "answer": ["a", 2], "image": "i.jpg", "dataset": "vqa"}""", "item 1")]
    [InlineData("""{"question": "q", "answer": [], "image": "i.jpg", "dataset": "vqa"}""", "field 'answer' is an empty list")]
    [InlineData("""{"question": "q", "answer": ["a"], "image": "i.jpg", "dataset": "vg"}""", "field 'answer' of a \"vg\" record must be a string")]
    [InlineData("""{"question_id": [1], "question": "q", "answer": ["a"], "image": "i.jpg", "dataset": "vqa"}""", "field 'question_id'")]
    [InlineData("""["q", "a"]""", "expected a JSON object")]
    public void AMalformedRecordIsAnErrorNamingFileRecordAndField(string badRecord, string reason)
    {
        string path = Write($$"""[{"question": "ok?", "answer": ["a"], "image": "i.jpg", "dataset": "vqa"}, {{badRecord}}]""");
        AssertError(() => VqaAnnotationReader.Read(path), path, "record 1", reason);
    }

    [Fact]
    public void AFileThatIsNotAListOrNotJsonIsAnError()
    {
        string obj = Write("""{"question": "q"}""", "obj.json");
        AssertError(() => VqaAnnotationReader.Read(obj), obj, "file", "expected a JSON list");
        string broken = Write("[{\"question\": ", "broken.json");
        AssertError(() => VqaAnnotationReader.Read(broken), broken, "line", "not valid JSON");
        string absent = Path.Combine(_dir, "absent.json");
        AssertError(() => VqaAnnotationReader.Read(absent), absent, "file", "does not exist");
    }

    private static void AssertError(Action read, string path, string location, string reason)
    {
        var e = Assert.Throws<DataFormatException>(read);
        Assert.Equal(path, e.Issue.Source);
        Assert.Contains(location, e.Issue.Location, StringComparison.Ordinal);
        Assert.Contains(reason, e.Issue.Reason, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }
}
