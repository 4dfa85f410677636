using System.Text.Json;
using BlipSharp.Training.CapFilt;
using BlipSharp.Training.Data;
using Xunit;

namespace BlipSharp.Tests.CapFilt;

/// <summary><see cref="ShardSpec"/>, <see cref="CapFiltOptions.Validate"/> and <see cref="CapFiltInput"/> (no models).</summary>
public sealed class CapFiltInputTests(CapFiltWorld world) : IClassFixture<CapFiltWorld>
{
    [Theory]
    [InlineData("0/1", 0, 1)]
    [InlineData("2/3", 2, 3)]
    [InlineData("0/4", 0, 4)]
    [InlineData("15/16", 15, 16)]
    public void ShardSpecParsesIOfN(string text, int index, int count)
    {
        var spec = ShardSpec.Parse(text);
        Assert.Equal(new ShardSpec(index, count), spec);
        Assert.Equal(text, spec.ToString());
    }

    [Theory]
    [InlineData("", "is not i/N")]
    [InlineData("1", "is not i/N")]
    [InlineData("a/b", "is not i/N")]
    [InlineData("-1/2", "is not i/N")]
    [InlineData(" 0/2", "is not i/N")]
    [InlineData("0/2/3", "is not i/N")]
    [InlineData("0/", "is not i/N")]
    [InlineData("99999999999/2", "is not i/N")]
    [InlineData("0/0", "N must be at least 1")]
    [InlineData("2/2", "i must be below N (parts are numbered 0..1)")]
    [InlineData("5/3", "i must be below N (parts are numbered 0..2)")]
    public void ShardSpecRefusesOtherTextNamingTheProblem(string text, string problem)
    {
        var e = Assert.Throws<FormatException>(() => ShardSpec.Parse(text));
        Assert.Contains($"'{text}'", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void EachChunkBelongsToExactlyOnePart()
    {
        Assert.True(ShardSpec.Single.Owns(0));
        Assert.True(ShardSpec.Single.Owns(12345));
        var parts = Enumerable.Range(0, 3).Select(i => new ShardSpec(i, 3)).ToArray();
        for (long chunk = 0; chunk < 20; chunk++)
        {
            var owners = parts.Where(p => p.Owns(chunk)).ToList();
            Assert.Equal([new ShardSpec((int)(chunk % 3), 3)], owners);
        }
        Assert.Equal([1L, 4, 7, 10], Enumerable.Range(0, 12).Select(k => (long)k).Where(parts[1].Owns));
    }

    [Fact]
    public void OptionsWithAShardOutsideItsCountAreRefused()
    {
        var options = new CapFiltOptions { Inputs = [world.PretrainFile], OutputDirectory = Path.Combine(world.Root, "unused") };
        options.Validate();
        foreach (var bad in new[] { new ShardSpec(3, 3), new ShardSpec(-1, 2), default })
        {
            var e = Assert.Throws<CapFiltException>(() => (options with { Shard = bad }).Validate());
            Assert.Contains("--shard", e.Message);
        }
    }

    [Fact]
    public void OptionsNamingAMissingInputOrHumanFileAreRefused()
    {
        var options = new CapFiltOptions { Inputs = [world.PretrainFile], OutputDirectory = Path.Combine(world.Root, "unused") };
        string missing = Path.Combine(world.Root, "no-such.json");
        var e = Assert.Throws<CapFiltException>(() => (options with { Inputs = [world.PretrainFile, missing] }).Validate());
        Assert.Equal($"--input: {missing} does not exist", e.Message);
        e = Assert.Throws<CapFiltException>(() => (options with { Human = [missing] }).Validate());
        Assert.Equal($"--human: {missing} does not exist", e.Message);
        e = Assert.Throws<CapFiltException>(() => (options with { Inputs = [world.PretrainFile, world.Shards[0]] }).Validate());
        Assert.Contains("not both", e.Message);
    }

    [Fact]
    public void RecordsOfSeveralFilesAreNumberedInOrderAndMalformedOnesKeepTheirPlace()
    {
        var records = CapFiltInput.Read([world.PretrainFile, world.BadFile]).ToList();
        Assert.Equal(CapFiltWorld.WebPairs + CapFiltWorld.BadRecords, records.Count);
        Assert.Equal(Enumerable.Range(0, records.Count).Select(i => (long)i), records.Select(r => r.Ordinal));

        // The list file: "record N", every field read, the image resolved against the file's folder.
        using var list = JsonDocument.Parse(File.ReadAllBytes(world.PretrainFile));
        for (int i = 0; i < CapFiltWorld.WebPairs; i++)
        {
            var r = records[i];
            var expected = list.RootElement[i];
            Assert.Equal(world.PretrainFile, r.Source);
            Assert.Equal($"record {i}", r.Location);
            Assert.Null(r.Problem);
            Assert.Equal(world.WorldImage(i), r.ImagePath);
            Assert.Equal(world.WorldImage(i), r.Image!.Name);
            Assert.Null(r.ImageExtension);
            Assert.Equal([expected.GetProperty("caption").GetString()!], r.WebTexts);
            Assert.Equal(expected.GetProperty("image_id").GetString(), r.ImageId);
            Assert.Equal(expected.GetProperty("noisy").GetBoolean(), r.Extra["noisy"].GetBoolean());
            Assert.Equal(expected.GetProperty("noise_kind").GetString(), r.Extra["noise_kind"].GetString());
            Assert.False(r.Extra.ContainsKey("image"));
        }

        // The JSON-lines file: "line N" (the blank line 3 is no record); the parse problems are the records' problems.
        var bad = records.Skip(CapFiltWorld.WebPairs).ToList();
        Assert.All(bad, r => Assert.Equal(world.BadFile, r.Source));
        Assert.Equal(["line 1", "line 2", "line 4", "line 5", "line 6"], bad.Select(r => r.Location));
        Assert.Null(bad[0].Problem);
        Assert.Equal(world.WorldImage(7), bad[0].ImagePath);
        Assert.Equal(["a hand written web text"], bad[0].WebTexts);
        Assert.Equal("bad_ok", bad[0].ImageId);
        Assert.StartsWith("invalid JSON: ", bad[1].Problem);
        Assert.Null(bad[1].Image);
        Assert.Empty(bad[1].WebTexts);
        Assert.Equal("missing field 'caption'", bad[2].Problem);
        Assert.Null(bad[2].Image);
        // A corrupt or missing image is found when it is decoded, not here.
        Assert.Null(bad[3].Problem);
        Assert.Equal(Path.Combine(world.Root, "corrupt.png"), bad[3].ImagePath);
        Assert.Null(bad[4].Problem);
        Assert.Equal(Path.Combine(world.Root, "missing.png"), bad[4].ImagePath);

        // The other order numbers the same records the other way round.
        var swapped = CapFiltInput.Read([world.BadFile, world.PretrainFile]).ToList();
        Assert.Equal(["line 1", "line 2", "line 4"], swapped.Take(3).Select(r => r.Location));
        Assert.Equal("record 0", swapped[CapFiltWorld.BadRecords].Location);
        Assert.Equal(CapFiltWorld.BadRecords, swapped[CapFiltWorld.BadRecords].Ordinal);
    }

    [Fact]
    public void AListElementThatIsNoObjectIsAMalformedRecord()
    {
        string path = Path.Combine(world.Root, "mixed.json");
        File.WriteAllText(path, """[{"image": "a.png", "caption": "one"}, 7, {"image": "b.png", "caption": ["two", "three"]}, {"image": "c.png", "caption": []}]""");
        var records = CapFiltInput.Read([path]).ToList();
        Assert.Equal(["record 0", "record 1", "record 2", "record 3"], records.Select(r => r.Location));
        Assert.Null(records[0].Problem);
        Assert.Equal("expected a JSON object, got a number", records[1].Problem);
        Assert.Equal(["two", "three"], records[2].WebTexts);
        Assert.Equal("field 'caption' is an empty list", records[3].Problem);
    }

    [Fact]
    public void ATruncatedShardGivesOneProblemRecordAndTheNextShardGoesOn()
    {
        var records = CapFiltInput.Read([world.Shards[0], world.BrokenShard, world.Shards[2]]).ToList();
        Assert.Equal(20 + CapFiltWorld.BrokenShardReadable + 1 + 20, records.Count);
        Assert.Equal(Enumerable.Range(0, records.Count).Select(i => (long)i), records.Select(r => r.Ordinal));

        var first = records[0];
        Assert.Equal(world.Shards[0], first.Source);
        Assert.Equal("sample '000000' (#0)", first.Location);
        Assert.Equal("png", first.ImageExtension);
        Assert.Null(first.ImagePath);
        Assert.Equal($"{world.Shards[0]}:000000.png", first.Image!.Name);
        Assert.Equal(File.ReadAllBytes(world.WorldImage(0)), first.Image.ReadAllBytes());
        Assert.Equal("pretrain_000000", first.ImageId);
        Assert.True(first.Extra.ContainsKey("noisy"));

        var broken = records.Skip(20).Take(CapFiltWorld.BrokenShardReadable + 1).ToList();
        Assert.All(broken, r => Assert.Equal(world.BrokenShard, r.Source));
        Assert.Equal(["sample '000020' (#0)", "sample '000021' (#1)", "sample 'nocaption' (#2)", "sample '000022' (#3)", "sample '000023' (#4)", "end of shard"],
            broken.Select(r => r.Location));
        Assert.All(new[] { broken[0], broken[1], broken[3], broken[4] }, r => Assert.Null(r.Problem));
        Assert.Equal(["pretrain_000020", "pretrain_000021", "pretrain_000022", "pretrain_000023"], new[] { broken[0], broken[1], broken[3], broken[4] }.Select(r => r.ImageId));
        Assert.Equal("no caption (looked for .txt or the 'caption' field of .json)", broken[2].Problem);
        Assert.Null(broken[5].Image);
        Assert.Contains("truncated", broken[5].Problem);
        Assert.Contains("000024.png", broken[5].Problem);
        Assert.EndsWith("the rest of the shard cannot be read", broken[5].Problem);

        // The next shard starts at its first sample.
        var next = records[20 + CapFiltWorld.BrokenShardReadable + 1];
        Assert.Equal(world.Shards[2], next.Source);
        Assert.Equal("sample '000040' (#0)", next.Location);
        Assert.Equal(File.ReadAllBytes(world.WorldImage(40)), next.Image!.ReadAllBytes());
    }

    [Fact]
    public void AMissingInputIsAnErrorNamingIt()
    {
        string missing = Path.Combine(world.Root, "gone.jsonl");
        var e = Assert.Throws<DataFormatException>(() => CapFiltInput.Read([world.BadFile, missing]).ToList());
        Assert.Contains(missing, e.Message);
        Assert.Contains("does not exist", e.Message);
    }
}
