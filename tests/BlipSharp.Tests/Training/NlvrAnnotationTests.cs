using BlipSharp.Training.Data;
using Xunit;

namespace BlipSharp.Tests.Training;

public sealed class NlvrAnnotationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-nlvr-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string content)
    {
        string path = Path.Combine(_dir, "nlvr_dev.json");
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public void ReadsBlipNlvrRecordsWithBothImagesResolved()
    {
        string path = Write("""
            [
              {"images": ["dev/a-img0.png", "dev/a-img1.png"], "sentence": "The left image contains two dogs.", "label": "True", "identifier": "dev-1-0-0"},
              {"images": ["/abs/b0.png", "dev/b1.png"], "sentence": "There is one bird.", "label": "False"}
            ]
            """);
        var items = NlvrAnnotations.Load(path, imageRoot: "/data/nlvr2");
        Assert.Equal(2, items.Count);
        Assert.Equal(("/data/nlvr2/dev/a-img0.png", "/data/nlvr2/dev/a-img1.png"), (items[0].Left.Name, items[0].Right.Name));
        Assert.Equal("/abs/b0.png", items[1].Left.Name);
        Assert.Equal("The left image contains two dogs.", items[0].Sentence);
        Assert.True(items[0].Label);
        Assert.False(items[1].Label);
        Assert.Equal("record 1", items[1].Location);
    }

    [Theory]
    [InlineData("""{"sentence": "s", "label": "True"}""", "missing field 'images'")]
    [InlineData("""{"images": ["a.png"], "sentence": "s", "label": "True"}""", "field 'images' must be a list of two image paths")]
    [InlineData("""{"images": ["a.png", 3], "sentence": "s", "label": "True"}""", "field 'images' must be a list of two image paths")]
    [InlineData("""{"images": ["a.png", "b.png"], "label": "True"}""", "missing field 'sentence'")]
    [InlineData("""{"images": ["a.png", "b.png"], "sentence": 7, "label": "True"}""", "field 'sentence' must be a string")]
    [InlineData("""{"images": ["a.png", "b.png"], "sentence": "s"}""", "missing field 'label'")]
    [InlineData("""{"images": ["a.png", "b.png"], "sentence": "s", "label": true}""", "field 'label' must be \"True\" or \"False\"")]
    [InlineData("""{"images": ["a.png", "b.png"], "sentence": "s", "label": "yes"}""", "field 'label' must be \"True\" or \"False\"")]
    public void AMalformedRecordIsNamedWithItsFileRecordAndField(string bad, string reason)
    {
        string path = Write($$"""[{"images": ["a.png", "b.png"], "sentence": "fine", "label": "False"}, {{bad}}]""");
        var e = Assert.Throws<DataFormatException>(() => NlvrAnnotations.Load(path, options: new AnnotationOptions { Strict = true }));
        Assert.Equal(path, e.Issue.Source);
        Assert.Equal("record 1", e.Issue.Location);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);

        var issues = new List<DataIssue>();
        var items = NlvrAnnotations.Load(path, options: new AnnotationOptions { OnIssue = issues.Add });
        Assert.Single(items);
        Assert.Equal("record 1", Assert.Single(issues).Location);
    }

    [Fact]
    public void AFileThatIsNotAListFailsNamingIt()
    {
        string path = Write(""""not a list of records"""");
        var e = Assert.Throws<DataFormatException>(() => NlvrAnnotations.Load(path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }
}
