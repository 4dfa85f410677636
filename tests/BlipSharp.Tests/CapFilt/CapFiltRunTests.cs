using System.Formats.Tar;
using System.Globalization;
using System.Text.Json;
using BlipSharp.Cli;
using BlipSharp.Training.CapFilt;
using BlipSharp.Training.Data;
using Xunit;
using static BlipSharp.Tests.CapFilt.CapFiltWorld;

namespace BlipSharp.Tests.CapFilt;

/// <summary>
/// <c>blip capfilt</c> and <c>blip capfilt merge</c> in-process on the tiny fixture models: what the output holds, that
/// sharding does not change it, and that restarts and merges refuse what does not fit.
/// </summary>
public sealed class CapFiltRunTests(CapFiltWorld world) : IClassFixture<CapFiltWorld>
{
    private const int Records = WebPairs + BadRecords;

    /// <summary>One scored text of <c>scores.jsonl</c>.</summary>
    private sealed record Text(long Ordinal, string Source, string Value, double Itm, double Itc, bool Kept);

    private static IEnumerable<Text> Texts(IEnumerable<JsonElement> scores) =>
        scores.SelectMany(r => new[] { "web", "synthetic" }.SelectMany(source => r.TryGetProperty(source, out var list)
            ? list.EnumerateArray().Select(t => new Text(r.GetProperty("ordinal").GetInt64(), source, t.GetProperty("text").GetString()!,
                t.GetProperty("itm").GetDouble(), t.GetProperty("itc").GetDouble(), t.GetProperty("kept").GetBoolean()))
            : []));

    [Fact]
    public void AnAnnotationRunAccountsForEveryRecordAndKeepsExactlyTheMatchedTexts()
    {
        string output = world.Reference;

        var summary = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(output, CapFiltMerge.SummaryFile))).RootElement;
        Assert.Equal(Records, summary.GetProperty("records").GetInt64());
        Assert.Equal(WebPairs + 1, summary.GetProperty("images").GetInt64());
        Assert.Equal(2, summary.GetProperty("unreadable").GetInt64());
        Assert.Equal(2, summary.GetProperty("malformed").GetInt64());
        Assert.Equal(summary.GetProperty("records").GetInt64(),
            summary.GetProperty("images").GetInt64() + summary.GetProperty("unreadable").GetInt64() + summary.GetProperty("malformed").GetInt64());

        // Every input record exactly once, in order.
        var scores = ReadLines(Path.Combine(output, CapFiltMerge.ScoresFile));
        Assert.Equal(Enumerable.Range(0, Records).Select(i => (long)i), scores.Select(s => s.GetProperty("ordinal").GetInt64()));
        var statuses = scores.Select(s => s.GetProperty("status").GetString()).ToList();
        Assert.Equal(Enumerable.Repeat("ok", WebPairs + 1).Concat(["malformed", "malformed", "unreadable", "unreadable"]), statuses);
        var texts = Texts(scores).ToList();
        Assert.Equal(WebPairs + 1, texts.Count(t => t.Source == "web"));
        Assert.Equal(WebPairs + 1, texts.Count(t => t.Source == "synthetic")); // one caption per image
        Assert.All(scores.Where(s => s.GetProperty("status").GetString() == "ok"), s =>
        {
            Assert.Single(s.GetProperty("synthetic").EnumerateArray());
            Assert.False(string.IsNullOrWhiteSpace(s.GetProperty("synthetic")[0].GetProperty("text").GetString()));
        });
        Assert.All(texts, t =>
        {
            Assert.InRange(t.Itm, 0, 1);
            Assert.InRange(t.Itc, -1, 1);
            Assert.True(t.Kept ? t.Itm >= 0.5 : t.Itm <= 0.5, $"{t}: the verdict disagrees with ITM >= 0.5");
        });
        // The random filter keeps some and drops some of each source, so the checks below can fail.
        foreach (string source in new[] { "web", "synthetic" })
        {
            Assert.Contains(texts, t => t.Source == source && t.Kept);
            Assert.Contains(texts, t => t.Source == source && !t.Kept);
        }
        Assert.Equal(texts.Count(t => t.Source == "web" && t.Kept), summary.GetProperty("web").GetProperty("kept").GetInt64());
        Assert.Equal(texts.Count(t => t.Source == "synthetic" && t.Kept), summary.GetProperty("synthetic").GetProperty("kept").GetInt64());
        // The web texts are the input's, as written.
        using var list = JsonDocument.Parse(File.ReadAllBytes(world.PretrainFile));
        Assert.Equal(list.RootElement.EnumerateArray().Select(e => e.GetProperty("caption").GetString()).Append("a hand written web text"),
            texts.Where(t => t.Source == "web").Select(t => t.Value));

        // The dataset: the kept texts, each with its image (relative to the output folder) and scores, then the human pairs.
        var dataset = ReadLines(Path.Combine(output, CapFiltMerge.DatasetFile));
        var machine = dataset.Where(d => d.GetProperty("capfilt_source").GetString() != "human").ToList();
        var kept = texts.Where(t => t.Kept).ToList();
        Assert.Equal(kept.Select(t => (t.Source, t.Value, t.Itm, t.Itc)),
            machine.Select(d => (d.GetProperty("capfilt_source").GetString()!, d.GetProperty("caption").GetString()!, d.GetProperty("itm").GetDouble(), d.GetProperty("itc").GetDouble())));
        for (int i = 0; i < kept.Count; i++)
        {
            string image = machine[i].GetProperty("image").GetString()!;
            Assert.False(Path.IsPathRooted(image), image);
            string expected = kept[i].Ordinal < WebPairs ? world.WorldImage((int)kept[i].Ordinal) : world.WorldImage(7);
            Assert.Equal(expected, Path.GetFullPath(Path.Combine(output, image)));
            var record = scores[(int)kept[i].Ordinal];
            Assert.Equal(record.GetProperty("image_id").GetString(), machine[i].GetProperty("image_id").GetString());
            // Web texts carry their record's other fields (the planted-noise label); synthetic ones do not.
            Assert.Equal(kept[i].Source == "web", machine[i].TryGetProperty("noisy", out var noisy));
            if (kept[i].Source == "web") Assert.Equal(record.GetProperty("extra").GetProperty("noisy").GetBoolean(), noisy.GetBoolean());
        }

        var human = dataset.Where(d => d.GetProperty("capfilt_source").GetString() == "human").ToList();
        using var humanList = JsonDocument.Parse(File.ReadAllBytes(world.HumanFile));
        Assert.Equal(6, human.Count);
        Assert.Equal(6, summary.GetProperty("human").GetProperty("total").GetInt64());
        Assert.Equal(humanList.RootElement.EnumerateArray().Select(e => (e.GetProperty("caption").GetString(), e.GetProperty("image_id").GetString(),
                Path.Combine(world.WorldDir, e.GetProperty("image").GetString()!))),
            human.Select(h => (h.GetProperty("caption").GetString(), h.GetProperty("image_id").GetString(), Path.GetFullPath(Path.Combine(output, h.GetProperty("image").GetString()!)))));
        Assert.All(human, h => Assert.True(File.Exists(Path.Combine(output, h.GetProperty("image").GetString()!))));

        // The bad records, where they are and why.
        var issues = ReadLines(Path.Combine(output, CapFiltMerge.IssuesFile));
        Assert.Equal([61L, 62, 63, 64], issues.Select(i => i.GetProperty("ordinal").GetInt64()));
        Assert.All(issues, i => Assert.Equal(world.BadFile, i.GetProperty("source").GetString()));
        Assert.Equal(["line 2", "line 4", "line 5", "line 6"], issues.Select(i => i.GetProperty("location").GetString()));
        Assert.Equal(["malformed", "malformed", "unreadable", "unreadable"], issues.Select(i => i.GetProperty("status").GetString()));
        Assert.StartsWith("invalid JSON", issues[0].GetProperty("reason").GetString());
        Assert.Equal("missing field 'caption'", issues[1].GetProperty("reason").GetString());
        Assert.Equal(Path.Combine(world.Root, "corrupt.png"), issues[2].GetProperty("image").GetString());
        Assert.Equal(Path.Combine(world.Root, "missing.png"), issues[3].GetProperty("image").GetString());
        Assert.Contains("does not exist", issues[3].GetProperty("reason").GetString());

        // The planted-noise report counts the labelled web texts.
        var noisyLabels = scores.Take(WebPairs + 1).Select(s => s.GetProperty("extra").GetProperty("noisy").GetBoolean()).ToList();
        var webKept = texts.Where(t => t.Source == "web").Select(t => t.Kept).ToList();
        var noise = summary.GetProperty("planted_noise");
        Assert.Equal(noisyLabels.Count(n => n), noise.GetProperty("noisy").GetInt64());
        Assert.Equal(noisyLabels.Count(n => !n), noise.GetProperty("clean").GetInt64());
        Assert.Equal(noisyLabels.Zip(webKept).Count(p => p.First && !p.Second), noise.GetProperty("noisy_dropped").GetInt64());
        Assert.Equal(noisyLabels.Zip(webKept).Count(p => !p.First && p.Second), noise.GetProperty("clean_kept").GetInt64());

        Assert.Equal([Path.Combine(output, CapFiltMerge.DatasetFile)], summary.GetProperty("train_files").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal(Enumerable.Range(0, 9).Select(k => $"chunk-{k:D6}.jsonl"),
            Directory.GetFiles(Path.Combine(output, CapFiltRunner.ChunksDirectory)).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(["part-0-of-1.json"], Directory.GetFiles(Path.Combine(output, CapFiltRunner.PartsDirectory)).Select(Path.GetFileName));
        Assert.Empty(Directory.GetFiles(output, "*.tmp-*", SearchOption.AllDirectories));
    }

    [Fact]
    public void AnItcThresholdDropsMoreAndNoCaptionsWritesNoSyntheticTexts()
    {
        var reference = Texts(ReadLines(Path.Combine(world.Reference, CapFiltMerge.ScoresFile))).ToList();
        // A cosine between two of the kept texts' (stored with 6 decimals): some kept texts fall below it.
        var keptItc = reference.Where(t => t.Kept).Select(t => t.Itc).Distinct().Order().ToList();
        double itc = (keptItc[keptItc.Count / 2 - 1] + keptItc[keptItc.Count / 2]) / 2;
        string output = world.NewOutput("itc");
        var (code, stdout, error) = Blip(world.AnnotationRun(output, "--itc-threshold", itc.ToString("R", CultureInfo.InvariantCulture), "--json"));
        Assert.True(code == 0, error);
        var texts = Texts(ReadLines(Path.Combine(output, CapFiltMerge.ScoresFile))).ToList();
        // The same captions and scores; a text is kept when it was before and its cosine reaches the threshold.
        Assert.Equal(reference.Select(t => (t.Ordinal, t.Source, t.Value, t.Itm, t.Itc)), texts.Select(t => (t.Ordinal, t.Source, t.Value, t.Itm, t.Itc)));
        Assert.Equal(reference.Select(t => t.Kept && t.Itc >= itc), texts.Select(t => t.Kept));
        Assert.InRange(texts.Count(t => t.Kept), 1, reference.Count(t => t.Kept) - keptItc.Count / 2);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(texts.Count(t => t.Kept && t.Source == "web"), json.RootElement.GetProperty("web").GetProperty("kept").GetInt64());
        Assert.Equal(texts.Count(t => t.Kept) + 6, ReadLines(Path.Combine(output, CapFiltMerge.DatasetFile)).Count);

        output = world.NewOutput("nocaptions");
        (code, _, error) = Blip(world.AnnotationRun(output, "--num-captions", "0"));
        Assert.True(code == 0, error);
        var scores = ReadLines(Path.Combine(output, CapFiltMerge.ScoresFile));
        Assert.Equal(Records, scores.Count);
        Assert.All(scores, s => Assert.Empty(s.GetProperty("synthetic").EnumerateArray()));
        texts = Texts(scores).ToList();
        Assert.All(texts, t => Assert.Equal("web", t.Source));
        // Web texts are scored as before (the batches pad to other lengths, so the last digits may differ).
        var web = reference.Where(t => t.Source == "web").ToList();
        Assert.Equal(web.Select(t => t.Value), texts.Select(t => t.Value));
        Assert.All(web.Zip(texts), p => Assert.Equal(p.First.Itm, p.Second.Itm, 4));
        var dataset = ReadLines(Path.Combine(output, CapFiltMerge.DatasetFile));
        Assert.DoesNotContain(dataset, d => d.GetProperty("capfilt_source").GetString() == "synthetic");
        Assert.Equal(texts.Count(t => t.Kept) + 6, dataset.Count);
        var summary = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(output, CapFiltMerge.SummaryFile))).RootElement;
        Assert.Equal(0, summary.GetProperty("synthetic").GetProperty("total").GetInt64());
    }

    [Fact]
    public void OnePartThreePartsAndTwoFoldersGiveTheSameBytes()
    {
        byte[] expected = File.ReadAllBytes(Path.Combine(world.Reference, CapFiltMerge.ScoresFile));

        // Three parts into one folder; a merge before the last one has run names its chunks and the part.
        string three = world.NewOutput("three");
        for (int part = 0; part < 2; part++)
        {
            var (code, _, error) = Blip(world.AnnotationRun(three, "--shard", $"{part}/3"));
            Assert.True(code == 0, error);
            Assert.Contains($"part {part}/3 is complete; when every part is, run: blip capfilt merge {three}", error);
        }
        var (c, _, err) = Blip("capfilt", "merge", three);
        Assert.Equal(BlipCli.UsageError, c);
        Assert.Contains("3 of 9 chunks are not committed (chunk 2, 5, 8)", err);
        Assert.Contains("--shard 2/3", err);
        Assert.False(File.Exists(Path.Combine(three, CapFiltMerge.ScoresFile)));
        (c, _, err) = Blip(world.AnnotationRun(three, "--shard", "2/3"));
        Assert.True(c == 0, err);
        (c, var stdout, err) = Blip("capfilt", "merge", three);
        Assert.True(c == 0, err);
        Assert.StartsWith($"{Records} records: {WebPairs + 1} images scored, 2 unreadable, 2 malformed", stdout);
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(three, CapFiltMerge.ScoresFile)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(world.Reference, CapFiltMerge.DatasetFile)), File.ReadAllBytes(Path.Combine(three, CapFiltMerge.DatasetFile)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(world.Reference, CapFiltMerge.IssuesFile)), File.ReadAllBytes(Path.Combine(three, CapFiltMerge.IssuesFile)));

        // Two parts into two folders, merged into a third.
        string a = world.NewOutput("a"), b = world.NewOutput("b"), merged = world.NewOutput("merged");
        (c, _, err) = Blip(world.AnnotationRun(a, "--shard", "0/2"));
        Assert.True(c == 0, err);
        (c, _, err) = Blip(world.AnnotationRun(b, "--shard", "1/2"));
        Assert.True(c == 0, err);
        Assert.Equal(5, Directory.GetFiles(Path.Combine(a, CapFiltRunner.ChunksDirectory)).Length);
        Assert.Equal(4, Directory.GetFiles(Path.Combine(b, CapFiltRunner.ChunksDirectory)).Length);
        (c, stdout, err) = Blip("capfilt", "merge", a, b, "--out", merged, "--json");
        Assert.True(c == 0, err);
        Assert.Equal(Records, JsonDocument.Parse(stdout).RootElement.GetProperty("records").GetInt64());
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(merged, CapFiltMerge.ScoresFile)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(world.Reference, CapFiltMerge.DatasetFile)), File.ReadAllBytes(Path.Combine(merged, CapFiltMerge.DatasetFile)));
        Assert.False(File.Exists(Path.Combine(a, CapFiltMerge.ScoresFile)));

        // Damage copies of the three-part folder: a missing chunk names the chunk and its part; a wrong ordinal is refused.
        string missing = world.CopyOutput(three, "missing");
        File.Delete(CapFiltRunner.ChunkPath(missing, 4));
        (c, _, err) = Blip("capfilt", "merge", missing);
        Assert.Equal(BlipCli.UsageError, c);
        Assert.Contains("1 of 9 chunks are not committed (chunk 4)", err);
        Assert.Contains("--shard 1/3", err);
        // Running that part again redoes only that chunk, to the same bytes.
        (c, _, err) = Blip(world.AnnotationRun(missing, "--shard", "1/3"));
        Assert.True(c == 0, err);
        Assert.Contains("part 1/3: 1 chunk(s) committed now, 2 already done", err);
        (c, _, err) = Blip("capfilt", "merge", missing);
        Assert.True(c == 0, err);
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(missing, CapFiltMerge.ScoresFile)));

        string renumbered = world.CopyOutput(three, "renumbered");
        string chunk = CapFiltRunner.ChunkPath(renumbered, 2);
        var lines = File.ReadAllLines(chunk);
        lines[3] = lines[3].Replace("\"ordinal\":19,", "\"ordinal\":20,", StringComparison.Ordinal);
        File.WriteAllLines(chunk, lines);
        (c, _, err) = Blip("capfilt", "merge", renumbered);
        Assert.Equal(BlipCli.UsageError, c);
        Assert.Contains($"{chunk}: line 4 holds record 20, expected 19; delete the file and run its part again", err);

        string extra = world.CopyOutput(three, "extra");
        chunk = CapFiltRunner.ChunkPath(extra, 8);
        File.AppendAllText(chunk, File.ReadAllLines(CapFiltRunner.ChunkPath(extra, 0))[0] + "\n");
        (c, _, err) = Blip("capfilt", "merge", extra);
        Assert.Equal(BlipCli.UsageError, c);
        Assert.Contains($"{chunk}: line 2 holds record 0, expected 65", err);

        string truncated = world.CopyOutput(three, "truncated");
        chunk = CapFiltRunner.ChunkPath(truncated, 1);
        File.WriteAllLines(chunk, File.ReadAllLines(chunk).Take(7));
        (c, _, err) = Blip("capfilt", "merge", truncated);
        Assert.Equal(BlipCli.UsageError, c);
        Assert.Contains($"{chunk} holds records 8..14, expected 8..15", err);
    }

    [Fact]
    public void ARestartWithOtherSettingsIsRefusedAndOneWithTheSameOnlyMerges()
    {
        string output = world.CopyOutput(world.Reference, "restart");
        byte[] scores = File.ReadAllBytes(Path.Combine(output, CapFiltMerge.ScoresFile));

        var (code, _, error) = Blip(world.AnnotationRun(output, "--threshold", "0.6"));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains($"{output} holds a CapFilt run with other settings (threshold: 0.5 there, 0.6 now); restart with the same settings, or use another --out", error);
        (code, _, error) = Blip(world.AnnotationRun(output, "--seed", "12", "--chunk-size", "9"));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("seed: 11 there, 12 now; chunk_size: 8 there, 9 now", error);
        (code, _, error) = Blip(world.AnnotationRun(output, "--itc-threshold", "0.1"));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("itc_threshold: absent there, 0.1 now", error);

        // Stale temporaries of killed runs: chunks being written, a part marker, a merge's staged files.
        string[] stale =
        [
            CapFiltRunner.ChunkPath(output, 3) + ".tmp-999999-0123",
            CapFiltRunner.ChunkPath(output, 4) + ".tmp-999999-4567",
            CapFiltRunner.PartPath(output, ShardSpec.Single) + ".tmp-999999-0123",
            Path.Combine(output, CapFiltMerge.DatasetFile) + ".tmp-999999-0123",
            Path.Combine(output, CapFiltMerge.ScoresFile) + ".tmp-999999-0123",
            Path.Combine(output, CapFiltMerge.SummaryFile) + ".tmp-999999-0123",
        ];
        foreach (string file in stale) File.WriteAllText(file, "half");

        // The shard split is no setting: part 1 of 2 finds its chunks done. It removes its own chunk's temporary, not
        // part 0's (that may be a live process's).
        (code, _, error) = Blip(world.AnnotationRun(output, "--shard", "1/2"));
        Assert.True(code == 0, error);
        Assert.Contains("part 1/2: 0 chunk(s) committed now, 4 already done", error);
        Assert.False(File.Exists(stale[0]));
        Assert.True(File.Exists(stale[1]));
        Assert.True(File.Exists(CapFiltRunner.PartPath(output, new ShardSpec(1, 2))));

        // The same command again: nothing to do but the merge, which gives the same bytes; no temporary is left.
        (code, var stdout, error) = Blip(world.AnnotationRun(output));
        Assert.True(code == 0, error);
        Assert.Contains("part 0/1: 0 chunk(s) committed now, 9 already done", error);
        Assert.StartsWith($"{Records} records: ", stdout);
        Assert.Equal(scores, File.ReadAllBytes(Path.Combine(output, CapFiltMerge.ScoresFile)));
        Assert.All(stale, f => Assert.False(File.Exists(f), $"{f} is left"));
        Assert.Empty(Directory.GetFiles(output, "*.tmp-*", SearchOption.AllDirectories));
    }

    [Fact]
    public void BadInputsAreRefusedNamingTheFile()
    {
        // A missing human file is found before any work (the merge reads it, at the end).
        string output = world.NewOutput("nohuman");
        string missing = Path.Combine(world.Root, "human-missing.json");
        var (code, _, error) = Blip(world.AnnotationRun(output, "--human", missing));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains($"--human: {missing} does not exist", error);
        Assert.False(Directory.Exists(output));

        (code, _, error) = Blip(world.AnnotationRun(output, "--input", world.Shards[0]));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("--input: give annotation files or .tar shards, not both", error);

        // A list file that is not JSON cannot be read record by record: the run stops, naming it.
        string broken = Path.Combine(world.Root, "broken.json");
        File.WriteAllText(broken, """[{"image": "world/images/pretrain/000000.png", "caption": "x"}, {"image": """);
        output = world.NewOutput("broken");
        (code, _, error) = Blip("capfilt", "--captioner", Captioner, "--filter", Filter, "--input", broken, "--out", output, "--threads", "1");
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains(broken, error);
        Assert.Contains("not valid JSON", error);
        Assert.Empty(Directory.GetFiles(Path.Combine(output, CapFiltRunner.ChunksDirectory)));
    }

    [Fact]
    public void AShardRunWritesTheKeptImagesAsShardsThatTheMergedDatasetLists()
    {
        string output = world.NewOutput("shards");
        var (code, stdout, error) = Blip("capfilt", "--captioner", Captioner, "--filter", Filter, "--input", world.Shards[0], world.BrokenShard, world.Shards[2],
            "--human", world.HumanFile, "--out", output, "--chunk-size", "8", "--batch-size", "4", "--seed", "11", "--max-length", "16", "--min-length", "5",
            "--threads", "1", "--json");
        Assert.True(code == 0, error);
        const int records = 20 + BrokenShardReadable + 1 + 20;
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(records, json.RootElement.GetProperty("records").GetInt64());
        Assert.Equal(records - 2, json.RootElement.GetProperty("images").GetInt64());
        Assert.Equal(2, json.RootElement.GetProperty("malformed").GetInt64());

        var scores = ReadLines(Path.Combine(output, CapFiltMerge.ScoresFile));
        Assert.Equal(Enumerable.Range(0, records).Select(i => (long)i), scores.Select(s => s.GetProperty("ordinal").GetInt64()));
        var issues = ReadLines(Path.Combine(output, CapFiltMerge.IssuesFile));
        Assert.Equal([22L, 25], issues.Select(i => i.GetProperty("ordinal").GetInt64()));
        Assert.Equal(["sample 'nocaption' (#2)", "end of shard"], issues.Select(i => i.GetProperty("location").GetString()));
        Assert.All(issues, i => Assert.Equal(world.BrokenShard, i.GetProperty("source").GetString()));
        Assert.Contains("truncated", issues[1].GetProperty("reason").GetString());

        // Each chunk's shard holds the images that kept a text, under their ordinal, with the kept texts.
        int chunks = (records + 7) / 8;
        var summary = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(output, CapFiltMerge.SummaryFile))).RootElement;
        var trainFiles = summary.GetProperty("train_files").EnumerateArray().Select(f => f.GetString()!).ToList();
        Assert.Equal(new[] { Path.Combine(output, CapFiltMerge.DatasetFile) }.Concat(Enumerable.Range(0, chunks).Select(k => Path.Combine(output, CapFiltMerge.ShardsDirectory, $"chunk-{k:D6}.tar"))),
            trainFiles);
        Assert.Equal(trainFiles.Select(f => f.Replace($"/{CapFiltMerge.ShardsDirectory}/", $"/{CapFiltRunner.ChunksDirectory}/", StringComparison.Ordinal)).Skip(1).Select(File.ReadAllBytes),
            trainFiles.Skip(1).Select(File.ReadAllBytes));
        int keptImages = 0;
        for (int k = 0; k < chunks; k++)
        {
            var members = new List<(string Name, byte[] Data)>();
            using (var reader = new TarReader(File.OpenRead(trainFiles[k + 1])))
            {
                while (reader.GetNextEntry() is { } entry)
                {
                    using var data = new MemoryStream();
                    entry.DataStream?.CopyTo(data);
                    members.Add((entry.Name, data.ToArray()));
                }
            }
            var expected = scores.Skip(k * 8).Take(8)
                .Select(s => (Record: s, Kept: new[] { "web", "synthetic" }.SelectMany(src => s.GetProperty(src).EnumerateArray().Where(t => t.GetProperty("kept").GetBoolean())
                    .Select(t => (Source: src, Text: t.GetProperty("text").GetString()!))).ToList()))
                .Where(x => x.Kept.Count > 0).ToList();
            Assert.Equal(expected.SelectMany(x => new[] { $"{x.Record.GetProperty("ordinal").GetInt64():D12}.png", $"{x.Record.GetProperty("ordinal").GetInt64():D12}.json" }),
                members.Select(m => m.Name));
            for (int i = 0; i < expected.Count; i++)
            {
                // The image: the world's file the input shard's sample came from (its key is the world's index).
                string image = expected[i].Record.GetProperty("image").GetString()!;
                int index = int.Parse(image[(image.LastIndexOf(':') + 1)..^4], CultureInfo.InvariantCulture);
                Assert.Equal(File.ReadAllBytes(world.WorldImage(index)), members[2 * i].Data);
                var meta = JsonDocument.Parse(members[2 * i + 1].Data).RootElement;
                Assert.Equal(expected[i].Kept.Select(t => t.Text), meta.GetProperty("caption").EnumerateArray().Select(c => c.GetString()));
                Assert.Equal(expected[i].Kept.Select(t => t.Source), meta.GetProperty("capfilt_source").EnumerateArray().Select(c => c.GetString()));
                Assert.Equal($"pretrain_{index:D6}", meta.GetProperty("image_id").GetString());
                Assert.Equal(expected[i].Record.GetProperty("extra").GetProperty("noisy").GetBoolean(), meta.GetProperty("noisy").GetBoolean());
            }
            keptImages += expected.Count;
        }
        Assert.InRange(keptImages, 1, records - 3); // some images keep nothing

        // The shards read back as a dataset of the kept pairs; the annotation file holds the human pairs.
        var shards = WebDataset.Load(trainFiles.Skip(1));
        Assert.Equal(keptImages, shards.Count);
        Assert.Equal(scores.Sum(s => new[] { "web", "synthetic" }.Sum(src => s.GetProperty(src).EnumerateArray().Count(t => t.GetProperty("kept").GetBoolean()))),
            shards.Sum(e => e.Captions.Count));
        var human = BlipAnnotations.Load(trainFiles[0]);
        Assert.Equal(6, human.Count);
    }
}
