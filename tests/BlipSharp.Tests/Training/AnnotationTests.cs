using System.Formats.Tar;
using System.Text;
using BlipSharp.Processing;
using BlipSharp.Training.Data;
using BlipSharp.Training.Synthetic;
using Xunit;

namespace BlipSharp.Tests.Training;

public sealed class AnnotationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blipsharp-ann-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        string path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public void ReadsBlipJsonWithExtraFieldsAndResolvesImageRoot()
    {
        string path = Write("ann.json", """
            [
              {"image": "imgs/a.jpg", "caption": "A cat.", "image_id": 42, "noisy": false},
              {"image": "/abs/b.jpg", "caption": ["one", "two"]},
              {"image": "imgs/c.jpg", "caption": "third", "image_id": "42"}
            ]
            """);
        var ds = BlipAnnotations.Load(path, new AnnotationOptions { ImageRoot = "/data/root" });
        Assert.Equal(3, ds.Count);
        Assert.Equal(0, ds.SkippedCount);
        Assert.Equal(Path.Combine("/data/root", "imgs/a.jpg"), ds[0].Image.Name);
        Assert.Equal("/abs/b.jpg", ds[1].Image.Name); // absolute paths kept, as os.path.join does
        Assert.Equal(["A cat."], ds[0].Captions);
        Assert.Equal(["one", "two"], ds[1].Captions);
        Assert.Equal("42", ds[0].ImageId);
        Assert.False(ds[0].Extra["noisy"].GetBoolean());
        Assert.Equal("record 2", ds[2].Location);
        // Image indices are dense per image id (else per path), in order of first appearance.
        Assert.Equal([0, 1, 0], ds.Select(e => e.ImageIndex));
        Assert.Equal(2, ds.ImageCount);
    }

    [Fact]
    public void DefaultImageRootIsTheAnnotationFolder()
    {
        string path = Write("sub/ann.json", """[{"image": "x.png", "caption": "c"}]""");
        var ds = BlipAnnotations.Load(path);
        Assert.Equal(Path.Combine(_dir, "sub", "x.png"), ds[0].Image.Name);
    }

    [Fact]
    public void MalformedRecordsAreSkippedAndNamed()
    {
        string path = Write("bad.json", """
            [
              {"image": "a.jpg", "caption": "ok"},
              {"caption": "no image"},
              {"image": "b.jpg", "caption": 7},
              {"image": "c.jpg", "caption": ["x", null]},
              "not an object",
              {"image": "d.jpg", "caption": "ok", "image_id": [1]},
              {"image": "e.jpg"},
              {"image": "f.jpg", "caption": []},
              {"image": "g.jpg", "caption": "also ok"}
            ]
            """);
        var seen = new List<DataIssue>();
        var ds = BlipAnnotations.Load(path, new AnnotationOptions { OnIssue = seen.Add });
        Assert.Equal(["ok", "also ok"], ds.Select(e => e.Captions[0]));
        Assert.Equal(7, ds.SkippedCount);
        Assert.Equal(seen, ds.Issues.Issues);
        var byRecord = ds.Issues.Issues.ToDictionary(i => i.Location, i => i.Reason);
        Assert.Contains("missing field 'image'", byRecord["record 1"]);
        Assert.Contains("'caption' must be a string or a list of strings, got a number (7)", byRecord["record 2"]);
        Assert.Contains("item 1 is a null", byRecord["record 3"]);
        Assert.Contains("expected a JSON object, got a string", byRecord["record 4"]);
        Assert.Contains("'image_id' must be a string or a number", byRecord["record 5"]);
        Assert.Contains("missing field 'caption'", byRecord["record 6"]);
        Assert.Contains("empty list", byRecord["record 7"]);
        Assert.All(ds.Issues.Issues, i => Assert.Equal(path, i.Source));
        Assert.StartsWith(path + ": record 1: ", ds.Issues.Issues[0].ToString());
    }

    [Fact]
    public void StrictModeThrowsNamingFileAndRecord()
    {
        string path = Write("strict.json", """[{"image": "a.jpg", "caption": "ok"}, {"image": 3, "caption": "x"}]""");
        var e = Assert.Throws<DataFormatException>(() => BlipAnnotations.Load(path, new AnnotationOptions { Strict = true }));
        Assert.Equal(path, e.Issue.Source);
        Assert.Equal("record 1", e.Issue.Location);
        Assert.Contains($"{path}: record 1: field 'image' must be a non-empty string", e.Message);
    }

    [Fact]
    public void JsonLinesReportLineNumbersForBrokenLines()
    {
        string path = Write("ann.jsonl",
            "{\"image\": \"a.jpg\", \"caption\": \"first\"}\n" +
            "\n" +
            "{\"image\": \"b.jpg\", \"caption\": \"unterminated}\n" +
            "{\"image\": \"c.jpg\", \"caption\": \"third\"}\r\n" +
            "[1, 2]\n");
        var ds = BlipAnnotations.Load(path);
        Assert.Equal(["first", "third"], ds.Select(e => e.Captions[0]));
        Assert.Equal(["line 3", "line 5"], ds.Issues.Issues.Select(i => i.Location));
        Assert.Contains("invalid JSON", ds.Issues.Issues[0].Reason);
        Assert.Equal("line 4", ds[1].Location);
        var e = Assert.Throws<DataFormatException>(() => BlipAnnotations.Load(path, new AnnotationOptions { Strict = true }));
        Assert.Contains("line 3", e.Message);
    }

    [Fact]
    public void UnreadableFilesAlwaysThrow()
    {
        var missing = Assert.Throws<DataFormatException>(() => BlipAnnotations.Load(Path.Combine(_dir, "none.json")));
        Assert.Contains("does not exist", missing.Message);
        string broken = Write("broken.json", "[{\"image\": \"a.jpg\", \"caption\": \"x\"},\n  {\"image\": ");
        var e = Assert.Throws<DataFormatException>(() => BlipAnnotations.Load(broken));
        Assert.Contains("broken.json", e.Message);
        Assert.Contains("not valid JSON", e.Message);
        string obj = Write("object.json", "  {\"images\": []}\n{\"x\": 1}");
        var ds = BlipAnnotations.Load(obj); // objects per line: read as JSON lines, each lacking 'image'
        Assert.Equal(2, ds.SkippedCount);
    }

    [Fact]
    public void ConcatenatesFilesAsPretrainDatasetDoes()
    {
        string a = Write("a.json", """[{"image": "1.jpg", "caption": "x"}]""");
        string b = Write("b.jsonl", "{\"image\": \"2.jpg\", \"caption\": \"y\"}\n");
        var ds = BlipAnnotations.Load([a, b]);
        Assert.Equal(["x", "y"], ds.Select(e => e.Captions[0]));
        Assert.Equal([a, b], ds.Select(e => e.Source));
        Assert.Equal([0, 1], ds.Select(e => e.ImageIndex));
    }

    [Fact]
    public void CocoKarpathyTrainAndEval()
    {
        string train = Write("coco_karpathy_train.json", """
            [
              {"caption": "A woman wearing a net on her head cutting a cake. ", "image": "val2014/COCO_val2014_000000522418.jpg", "image_id": "coco_522418"},
              {"caption": "A woman cutting a large white sheet cake.", "image": "val2014/COCO_val2014_000000522418.jpg", "image_id": "coco_522418"},
              {"caption": "A child holding a flowered umbrella.", "image": "val2014/COCO_val2014_000000184613.jpg", "image_id": "coco_184613"},
              {"caption": "no id", "image": "val2014/x.jpg"},
              {"caption": ["a", "list"], "image": "val2014/y.jpg", "image_id": "coco_1"}
            ]
            """);
        var ds = CocoKarpathy.LoadTrain(train, "/coco/images");
        Assert.Equal(3, ds.Count);
        Assert.Equal([0, 0, 1], ds.Select(e => e.ImageIndex)); // BLIP's img_ids
        Assert.Equal(Path.Combine("/coco/images", "val2014/COCO_val2014_000000522418.jpg"), ds[0].Image.Name);
        Assert.Equal(["record 3", "record 4"], ds.Issues.Issues.Select(i => i.Location));

        string test = Write("coco_karpathy_test.json", """
            [
              {"image": "val2014/COCO_val2014_000000391895.jpg", "caption": ["A man with a red helmet on a small moped on a dirt road. ", "Man riding a motor bike on a dirt road on the countryside."]},
              {"image": "val2014/COCO_val2014_000000060623.jpg", "caption": ["A young girl inhales with the intent of blowing out a candle."]}
            ]
            """);
        var eval = CocoKarpathy.LoadEval(test, "/coco/images");
        Assert.Equal(["391895", "60623"], eval.Select(e => e.ImageId));
        Assert.Equal([0, 1], eval.Select(e => e.ImageIndex));
        var index = CocoKarpathy.BuildRetrievalIndex(eval);
        Assert.Equal("a man with a red helmet on a small moped on a dirt road", index.Texts[0]);
        Assert.Equal([0, 0, 1], index.TextToImage);
        Assert.Equal([0, 1], index.ImageToTexts[0]);
        Assert.Equal([2], index.ImageToTexts[1]);
    }

    [Theory]
    [InlineData("val2014/COCO_val2014_000000391895.jpg", 391895L)]
    [InlineData("COCO_val2014_000000000042.jpg", 42L)]
    [InlineData("gj_12.jpg", 12L)] // strip('.jpg') also removes the leading 'g' and 'j'
    public void ImageIdFromFileNameFollowsBlip(string path, long expected)
    {
        Assert.True(CocoKarpathy.TryParseImageId(path, out long id));
        Assert.Equal(expected, id);
    }

    [Fact]
    public void PngNamesDoNotParseAsBlipWouldFail()
    {
        Assert.False(CocoKarpathy.TryParseImageId("images/test/000012.png", out _)); // "000012.pn"
        Assert.False(CocoKarpathy.TryParseImageId("a/b/img_7.jpeg", out _)); // "img_7.je"
    }

    [Fact]
    public void WebDatasetLoadIndexesShardsAndSkipsBrokenSamples()
    {
        var png = PngEncoder.Encode(RgbImage.Create(2, 1, [255, 0, 0, 0, 255, 0]));
        var tar = TarReaderTests.BuildTar(TarEntryFormat.Gnu,
            ("000001.png", png), ("000001.txt", Encoding.UTF8.GetBytes("a red pixel\n")),
            ("000002.png", png), ("000002.json", Encoding.UTF8.GetBytes("{\"caption\": [\"x\", \"y\"], \"image_id\": 9, \"noisy\": true}")),
            ("000003.png", png), // no caption
            ("000004.txt", Encoding.UTF8.GetBytes("no image")),
            ("000005.png", png), ("000005.json", Encoding.UTF8.GetBytes("{broken")),
            ("000006.png", png), ("000006.json", Encoding.UTF8.GetBytes("{\"caption\": 5}")),
            ("000007.jpg", png), ("000007.txt", Encoding.UTF8.GetBytes("jpg ext")));
        string shard = Path.Combine(_dir, "shard-0.tar");
        File.WriteAllBytes(shard, tar);
        var ds = WebDataset.Load([shard]);
        Assert.Equal(["a red pixel\n", "x", "jpg ext"], ds.Select(e => e.Captions[0]));
        Assert.Equal(["000001", "9", "000007"], ds.Select(e => e.ImageId));
        Assert.True(ds[1].Extra["noisy"].GetBoolean());
        Assert.Equal(4, ds.SkippedCount);
        Assert.Equal(["sample '000003' (#2)", "sample '000004' (#3)", "sample '000005' (#4)", "sample '000006' (#5)"], ds.Issues.Issues.Select(i => i.Location));
        Assert.Contains("no caption", ds.Issues.Issues[0].Reason);
        Assert.Contains("no image member", ds.Issues.Issues[1].Reason);
        Assert.Contains("invalid JSON", ds.Issues.Issues[2].Reason);
        // Images are read in place from the shard.
        var image = ds[0].Image.Decode();
        Assert.Equal((255, 0, 0), image[0, 0]);
        Assert.Equal($"{shard}:000001.png", ds[0].Image.Name);

        var strict = Assert.Throws<DataFormatException>(() => WebDataset.Load([shard], new WebDatasetOptions { Strict = true }));
        Assert.Contains("sample '000003'", strict.Message);
        Assert.Contains(shard, strict.Message);
    }

    [Fact]
    public void TruncatedShardKeepsCompleteSamples()
    {
        var png = PngEncoder.Encode(RgbImage.Create(1, 1, [1, 2, 3]));
        var tar = TarReaderTests.BuildTar(TarEntryFormat.Ustar,
            ("a.png", png), ("a.txt", Encoding.UTF8.GetBytes("first")),
            ("b.png", new byte[4096]), ("b.txt", Encoding.UTF8.GetBytes("second")));
        string shard = Path.Combine(_dir, "cut.tar");
        File.WriteAllBytes(shard, tar.AsSpan(0, 512 * 4 + 512 + 2000).ToArray()); // inside b.png's data
        var ds = WebDataset.Load([shard]);
        Assert.Single(ds);
        Assert.Equal("first", ds[0].Captions[0]);
        var issue = Assert.Single(ds.Issues.Issues);
        Assert.Contains("truncated", issue.Reason);
        Assert.Contains("b.png", issue.Reason);
        Assert.Throws<DataFormatException>(() => WebDataset.Load([shard], new WebDatasetOptions { Strict = true }));
    }
}
