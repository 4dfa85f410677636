using System.Text.Json;
using System.Text.Json.Nodes;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Data;
using BlipSharp.Training.Evaluation.Captioning;
using Xunit;

namespace BlipSharp.Tests.Metrics;

/// <summary><c>blip score captions</c> on COCO-format files written from the golden fixture, and the readers' errors on malformed files.</summary>
[Trait("Category", "Metrics")]
public sealed class ScoreCaptionsCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blip-score-captions-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes the fixture as a results file (ids as given) and a COCO annotation file; returns both paths.</summary>
    private (string Results, string Annotations) WriteFixtureFiles(bool idsAsStrings = false)
    {
        var items = CaptioningFixture.Items();
        JsonNode Id(string id) => idsAsStrings || !long.TryParse(id, out long n) ? JsonValue.Create(id)! : JsonValue.Create(n)!;
        // Results in reverse order: COCO scores in the annotation file's image order, whatever the results order.
        var results = new JsonArray(items.Reverse().Select(i => (JsonNode)new JsonObject { ["image_id"] = Id(i.ImageId), ["caption"] = i.Candidate }).ToArray());
        int annId = 0;
        var annotations = new JsonObject
        {
            ["images"] = new JsonArray(items.Select(i => (JsonNode)new JsonObject { ["id"] = Id(i.ImageId), ["file_name"] = $"{i.ImageId}.jpg" }).ToArray()),
            ["annotations"] = new JsonArray(items.SelectMany(i => i.References.Select(r => (JsonNode)new JsonObject { ["image_id"] = Id(i.ImageId), ["id"] = annId++, ["caption"] = r })).ToArray()),
        };
        string resultsPath = Path.Combine(_dir, "results.json"), annotationsPath = Path.Combine(_dir, "gt.json");
        File.WriteAllText(resultsPath, results.ToJsonString());
        File.WriteAllText(annotationsPath, annotations.ToJsonString());
        return (resultsPath, annotationsPath);
    }

    [Theory]
    [InlineData("ptb", false)]
    [InlineData("simple", true)]
    public void CliReproducesTheCorpusNumbers(string tokenizer, bool idsAsStrings)
    {
        var (results, annotations) = WriteFixtureFiles(idsAsStrings);
        string perImage = Path.Combine(_dir, "per-image.json");
        var (code, output, error) = CliRunner.Run("score", "captions", "--results", results, "--annotations", annotations, "--tokenizer", tokenizer, "--json", "--per-image", perImage);
        Assert.True(code == 0, error);
        var json = JsonDocument.Parse(output).RootElement;
        var expected = CaptioningFixture.Results(tokenizer).GetProperty("corpus");
        foreach (string key in new[] { "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr" })
            CaptioningFixture.Close(expected.GetProperty(key).GetDouble(), json.GetProperty(key).GetDouble(), $"CLI {key}");
        Assert.Equal(CaptioningFixture.Items().Count, json.GetProperty("images").GetInt32());
        var rows = JsonDocument.Parse(File.ReadAllText(perImage)).RootElement.EnumerateArray().ToList();
        var want = CaptioningFixture.Results(tokenizer).GetProperty("per_image").EnumerateArray().ToList();
        Assert.Equal(want.Count, rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(want[i].GetProperty("image_id").GetRawText().Trim('"'), rows[i].GetProperty("image_id").GetString());
            CaptioningFixture.Close(want[i].GetProperty("CIDEr").GetDouble(), rows[i].GetProperty("CIDEr").GetDouble(), $"per-image CIDEr {i}");
            Assert.Equal(want[i].GetProperty("candidate_tokenized").GetString(), rows[i].GetProperty("candidate_tokenized").GetString());
        }
    }

    [Fact]
    public void TextOutputShowsTheSixNumbers()
    {
        var (results, annotations) = WriteFixtureFiles();
        var (code, output, error) = CliRunner.Run("score", "captions", "--results", results, "--annotations", annotations);
        Assert.True(code == 0, error);
        double cider = CaptioningFixture.Results("ptb").GetProperty("corpus").GetProperty("CIDEr").GetDouble();
        foreach (string key in new[] { "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr" }) Assert.Contains(key, output);
        Assert.Contains(cider.ToString("F6", System.Globalization.CultureInfo.InvariantCulture), output);
    }

    public static IEnumerable<object[]> Malformed() =>
    [
        ["results", """[{"image_id": 1, "caption": "a cat"}, {"image_id": 2}]""", "record 1", "missing field 'caption'"],
        ["results", """[{"image_id": 1, "caption": 7}]""", "record 0", "field 'caption' must be a string"],
        ["results", """[{"image_id": [1], "caption": "a"}]""", "record 0", "field 'image_id' must be an integer or a non-empty string"],
        ["results", """[{"image_id": 1, "caption": "a"}, {"image_id": 99, "caption": "b"}]""", "record 1", "image 99 is not in the annotation file"],
        ["results", """[{"image_id": 1, "caption": "a"}, {"image_id": "1", "caption": "b"}]""", "record 1", "image 1 has a second result"],
        ["results", """{"image_id": 1}""", "file", "expected a JSON list"],
        ["annotations", """{"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "a cat"}, {"caption": "x"}]}""", "annotations[1]", "missing field 'image_id'"],
        ["annotations", """{"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": null}]}""", "annotations[0]", "field 'caption' must be a string"],
        ["annotations", """{"images": [{"id": 1}], "annotations": [{"image_id": 5, "caption": "a"}]}""", "annotations[0]", "image 5 is not in the file's 'images' list"],
        ["annotations", """{"images": [{"name": 1}], "annotations": []}""", "images[0]", "missing field 'id'"],
        ["annotations", """{"annotations": []}""", "file", "missing field 'images'"],
    ];

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedFilesNameTheFileTheRecordAndTheField(string which, string content, string location, string reason)
    {
        string results = Path.Combine(_dir, "r.json"), annotations = Path.Combine(_dir, "a.json");
        File.WriteAllText(results, """[{"image_id": 1, "caption": "a cat"}]""");
        File.WriteAllText(annotations, """{"images": [{"id": 1}], "annotations": [{"image_id": 1, "caption": "a cat on a mat"}]}""");
        string bad = which == "results" ? results : annotations;
        File.WriteAllText(bad, content);
        var e = Assert.Throws<DataFormatException>(() => CocoCaptionFiles.Read(results, annotations));
        Assert.Equal(bad, e.Issue.Source);
        Assert.Equal(location, e.Issue.Location);
        Assert.Contains(reason, e.Issue.Reason);
        var (code, _, error) = CliRunner.Run("score", "captions", "--results", results, "--annotations", annotations);
        Assert.Equal(2, code);
        Assert.Contains(bad, error);
        Assert.Contains(location, error);
    }
}
