using System.Text.Json;
using BlipSharp.Tests.TestSupport;
using BlipSharp.Training.Evaluation.Retrieval;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Metrics;

/// <summary>
/// <see cref="RetrievalRecall"/> against <c>retrieval_golden.json</c> (BLIP <c>itm_eval</c> run verbatim): every case's
/// recalls, means and 0-based ranks, from float32 and float64 tensors and from plain arrays. The scores are float32 values
/// with no ties except BLIP's -100 fill, and the recalls are the reference's own arithmetic, so everything is compared
/// for equality.
/// </summary>
[Trait("Category", "Metrics")]
public sealed class RetrievalRecallTests(ITestOutputHelper output)
{
    private static string PathOf => Path.Combine(Fixtures.MetricsDir, "retrieval_golden.json");

    private static List<JsonElement> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(PathOf));
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => c.Clone()).ToList();
        if (cases.Count == 0) throw new InvalidOperationException($"{PathOf} has no cases");
        return cases;
    }

    private static double[,] Matrix(JsonElement rows)
    {
        var list = rows.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToList();
        var m = new double[list.Count, list[0].Length];
        for (int i = 0; i < list.Count; i++)
        {
            Assert.Equal(list[0].Length, list[i].Length);
            for (int j = 0; j < list[i].Length; j++) m[i, j] = list[i][j];
        }
        return m;
    }

    private static int[] Ints(JsonElement list) => list.EnumerateArray().Select(v => v.GetInt32()).ToArray();

    private sealed record Case(string Name, double[,] I2T, double[,] T2I, int[] TextToImage, IReadOnlyList<IReadOnlyList<int>> ImageToTexts, JsonElement Json);

    private static Case Read(JsonElement c) => new(
        c.GetProperty("name").GetString()!, Matrix(c.GetProperty("scores_i2t")), Matrix(c.GetProperty("scores_t2i")),
        Ints(c.GetProperty("txt2img")), c.GetProperty("img2txt").EnumerateArray().Select(l => (IReadOnlyList<int>)Ints(l)).ToList(), c);

    private static void AssertMatches(Case c, RetrievalRecallResult r, string how)
    {
        var e = c.Json.GetProperty("expected");
        var got = new Dictionary<string, double>
        {
            ["txt_r1"] = r.TxtR1, ["txt_r5"] = r.TxtR5, ["txt_r10"] = r.TxtR10, ["txt_r_mean"] = r.TxtRMean,
            ["img_r1"] = r.ImgR1, ["img_r5"] = r.ImgR5, ["img_r10"] = r.ImgR10, ["img_r_mean"] = r.ImgRMean, ["r_mean"] = r.RMean,
        };
        Assert.Equal(e.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal), got.Keys.Order(StringComparer.Ordinal));
        foreach (var p in e.EnumerateObject())
            Assert.True(got[p.Name] == p.Value.GetDouble(), $"{c.Name} ({how}): {p.Name} = {got[p.Name]:R}, expected {p.Value.GetDouble():R}");
        AssertRanks(c, c.I2T, i => c.ImageToTexts[i], Ints(c.Json.GetProperty("ranks_i2t_best_caption_0based")), r.ImageRanks, $"{how} i2t");
        AssertRanks(c, c.T2I, j => [c.TextToImage[j]], Ints(c.Json.GetProperty("ranks_t2i_0based")), r.TextRanks, $"{how} t2i");
    }

    /// <summary>
    /// Ranks equal the fixture's wherever the target's score is unique in its row. Where it ties (only BLIP's -100 fill,
    /// by the fixture's guarantee) numpy's unstable quicksort fixes the order, so both ranks must only lie in the tie's
    /// range: [#higher, #higher + #tied others], minimised over the query's targets.
    /// </summary>
    private static void AssertRanks(Case c, double[,] scores, Func<int, IReadOnlyList<int>> targets, int[] expected, int[] actual, string how)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int q = 0; q < expected.Length; q++)
        {
            int lo = int.MaxValue, hi = int.MaxValue;
            foreach (int t in targets(q))
            {
                int higher = 0, tied = 0;
                for (int k = 0; k < scores.GetLength(1); k++)
                {
                    if (scores[q, k] > scores[q, t]) higher++;
                    else if (k != t && scores[q, k] == scores[q, t]) tied++;
                }
                lo = Math.Min(lo, higher);
                hi = Math.Min(hi, higher + tied);
            }
            if (lo == hi)
            {
                Assert.True(expected[q] == actual[q], $"{c.Name} ({how}): query {q} rank {actual[q]}, expected {expected[q]}");
            }
            else
            {
                Assert.InRange(expected[q], lo, hi);
                Assert.InRange(actual[q], lo, hi);
            }
        }
    }

    [Fact]
    public void EveryCaseMatchesItmEvalFromArrays()
    {
        foreach (var json in Cases())
        {
            var c = Read(json);
            AssertMatches(c, RetrievalRecall.Compute(c.I2T, c.T2I, c.TextToImage, c.ImageToTexts), "double[,]");
            output.WriteLine($"{c.Name}: {c.ImageToTexts.Count} images, {c.TextToImage.Length} texts");
        }
    }

    [Fact]
    public void EveryCaseMatchesItmEvalFromFloat32AndFloat64Tensors()
    {
        foreach (var json in Cases())
        {
            var c = Read(json);
            using var scope = NewDisposeScope();
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64 })
            {
                var i2t = tensor(c.I2T, dtype); // (nImages, nTexts)
                var t2i = tensor(c.T2I, dtype); // (nTexts, nImages)
                AssertMatches(c, RetrievalRecall.Compute(i2t, t2i, c.TextToImage, c.ImageToTexts), dtype.ToString());
            }
            // The fixture's scores are float32 values: narrowing them loses nothing.
            var narrow = new float[c.I2T.GetLength(0), c.I2T.GetLength(1)];
            var narrowT = new float[c.T2I.GetLength(0), c.T2I.GetLength(1)];
            for (int i = 0; i < narrow.GetLength(0); i++) for (int j = 0; j < narrow.GetLength(1); j++) narrow[i, j] = (float)c.I2T[i, j];
            for (int i = 0; i < narrowT.GetLength(0); i++) for (int j = 0; j < narrowT.GetLength(1); j++) narrowT[i, j] = (float)c.T2I[i, j];
            AssertMatches(c, RetrievalRecall.Compute(narrow, narrowT, c.TextToImage, c.ImageToTexts), "float[,]");
        }
    }

    [Fact]
    public void TiesRankAsAReversedStableArgsort()
    {
        // Two images; texts 0 and 2 belong to image 0, texts 1 and 3 to image 1. In image 0's row, texts 0, 1 and 3 tie at
        // the top: np.argsort(row, kind='stable')[::-1] = [3, 1, 0, 2], so image 0's best own text (text 0) is at 2.
        double[,] i2t = { { 0.5, 0.5, 0.1, 0.5 }, { 0.0, 0.9, 0.0, 0.1 } };
        // Every text ties its two images: reversed stable order [1, 0] puts image 1 first.
        double[,] t2i = { { 1.0, 1.0 }, { 1.0, 1.0 }, { 1.0, 1.0 }, { 1.0, 1.0 } };
        var r = RetrievalRecall.Compute(i2t, t2i, [0, 1, 0, 1], [new[] { 0, 2 }, new[] { 1, 3 }]);
        Assert.Equal([2, 0], r.ImageRanks);
        Assert.Equal([1, 0, 1, 0], r.TextRanks);
        Assert.Equal(50.0, r.TxtR1);
        Assert.Equal(100.0, r.TxtR5);
        Assert.Equal(50.0, r.ImgR1);
    }

    [Fact]
    public void BadShapesAndMappingsAreClearErrors()
    {
        var c = Read(Cases()[0]);
        int nImages = c.ImageToTexts.Count, nTexts = c.TextToImage.Length;
        var e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(c.T2I, c.T2I, c.TextToImage, c.ImageToTexts));
        Assert.Contains($"scoresI2T must be [nImages, nTexts] = [{nImages}, {nTexts}]", e.Message);

        var badText = (int[])c.TextToImage.Clone();
        badText[3] = nImages;
        e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(c.I2T, c.T2I, badText, c.ImageToTexts));
        Assert.Contains($"textToImage[3] = {nImages}", e.Message);

        var moved = (int[])c.TextToImage.Clone();
        int t = c.ImageToTexts[0][0];
        moved[t] = nImages - 1;
        e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(c.I2T, c.T2I, moved, c.ImageToTexts));
        Assert.Contains($"lists text {t}, but textToImage[{t}] = {nImages - 1}", e.Message);

        int last = nImages - 1;
        var empty = c.ImageToTexts.Select((l, i) => i == last ? (IReadOnlyList<int>)[] : l).ToList();
        e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(c.I2T, c.T2I, c.TextToImage, empty));
        Assert.Contains($"imageToTexts[{last}] is empty", e.Message);

        using var scope = NewDisposeScope();
        e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(zeros(nImages, nTexts, 1), zeros(nTexts, nImages), c.TextToImage, c.ImageToTexts));
        Assert.Contains("2-D", e.Message);
        e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(zeros(new long[] { nImages, nTexts }, ScalarType.Int64), zeros(nTexts, nImages), c.TextToImage, c.ImageToTexts));
        Assert.Contains("floating dtype", e.Message);
        var nan = (double[,])c.I2T.Clone();
        nan[last, nTexts - 1] = double.NaN;
        e = Assert.Throws<ArgumentException>(() => RetrievalRecall.Compute(nan, c.T2I, c.TextToImage, c.ImageToTexts));
        Assert.Contains($"scoresI2T[{last}, {nTexts - 1}] is NaN", e.Message);
    }
}
