using System.Text.Json;
using BlipSharp.Cli;
using BlipSharp.Tests.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace BlipSharp.Tests.Finetuning;

/// <summary>
/// <c>blip evaluate video-retrieval</c> end to end on the synthetic world's clips (frame folders of a scene whose objects
/// drift, one caption each) with the tiny pretrained model as the retrieval model: zero-shot, as BLIP evaluates MSRVTT
/// with its COCO retrieval model.
/// </summary>
[Collection(TinyPretrainedWorldCollection.Name)]
public sealed class VideoRetrievalCliTests(TinyPretrainedWorld tiny, ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Training")]
    public void ZeroShotVideoRetrievalFindsTheClipsAndItsResultFileAgreesWithItsRecalls()
    {
        string outDir = tiny.NewFolder("video-eval");
        string json = TinyPretrainedWorld.Blip("evaluate", "video-retrieval", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "video-retrieval-tiny.json"),
            "--set", $"model.init={tiny.Pretrain}", "--set", $"model.tokenizer={tiny.Tokenizer}",
            "--set", $"evaluation.splits.test.annotation={Path.Combine(tiny.World, "video_test.jsonl")}",
            "--set", $"evaluation.splits.test.video_root={Path.Combine(tiny.World, "videos")}",
            "--out", outDir, "--threads", "1", "--json");
        using var report = JsonDocument.Parse(json);
        var metrics = report.RootElement.GetProperty("metrics");
        double M(string name) => metrics.GetProperty(name).GetDouble();
        output.WriteLine(metrics.ToString());

        // Measured on the seed-1 world with the fixture's pretraining: txt_r1 44, vid_r1 36, vid_mdR 2, r_mean 70.7 (50 clips: chance R@1 2 %).
        Assert.Equal("r_mean", report.RootElement.GetProperty("primary_metric").GetString());
        Assert.InRange(M("txt_r1"), 20, 100);
        Assert.InRange(M("vid_r1"), 15, 100);
        Assert.InRange(M("vid_mdR"), 1, 5);
        Assert.Equal((M("txt_r_mean") + M("vid_r_mean")) / 2, M("r_mean"), 9);

        // The result file ranks every clip's texts and every text's clips; its top-10s give the reported recalls.
        using var results = JsonDocument.Parse(File.ReadAllText(report.RootElement.GetProperty("results").GetString()!));
        var videos = results.RootElement.GetProperty("videos").EnumerateArray().ToList();
        var texts = results.RootElement.GetProperty("texts").EnumerateArray().ToList();
        Assert.Equal(50, videos.Count);
        Assert.Equal(50, texts.Count);
        double Recall(List<JsonElement> queries, string list, Func<int, int> truth, int k) =>
            100.0 * Enumerable.Range(0, queries.Count).Count(q => queries[q].GetProperty(list).EnumerateArray().Take(k).Any(c => c.GetInt32() == truth(q))) / queries.Count;
        foreach (int k in new[] { 1, 5, 10 })
        {
            Assert.Equal(M($"txt_r{k}"), Recall(videos, "texts", v => v, k), 9);                                           // one caption per clip: text v is clip v's
            Assert.Equal(M($"vid_r{k}"), Recall(texts, "videos", t => texts[t].GetProperty("video").GetInt32(), k), 9);
        }
        Assert.All(videos, v => Assert.StartsWith("clip_", v.GetProperty("clip_name").GetString()));

        var (code, _, error) = CliRunner.Run("finetune", "video-retrieval", "--config", Path.Combine(Fixtures.RepoRoot, "configs", "video-retrieval-tiny.json"));
        Assert.Equal(BlipCli.UsageError, code);
        Assert.Contains("'video-retrieval' is evaluated only (zero-shot); use blip evaluate video-retrieval", error);
    }
}
