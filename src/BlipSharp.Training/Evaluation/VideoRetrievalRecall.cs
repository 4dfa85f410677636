using System.Globalization;
using BlipSharp.Training.Retrieval;
using static TorchSharp.torch;

namespace BlipSharp.Training.Evaluation.Retrieval;

/// <summary>BLIP's video <c>itm_eval</c> output (recalls in percent, median ranks 1-based) plus the ranks behind it.</summary>
/// <param name="TxtR1">Video-to-text R@1 (<c>txt_r1</c>).</param>
/// <param name="TxtR5">Video-to-text R@5 (<c>txt_r5</c>).</param>
/// <param name="TxtR10">Video-to-text R@10 (<c>txt_r10</c>).</param>
/// <param name="TxtRMean">Mean of the three video-to-text recalls (<c>txt_r_mean</c>).</param>
/// <param name="VidR1">Text-to-video R@1 (<c>vid_r1</c>).</param>
/// <param name="VidR5">Text-to-video R@5 (<c>vid_r5</c>).</param>
/// <param name="VidR10">Text-to-video R@10 (<c>vid_r10</c>).</param>
/// <param name="VidRMean">Mean of the three text-to-video recalls (<c>vid_r_mean</c>).</param>
/// <param name="VidMdR">Text-to-video median rank, <c>np.median(ranks + 1)</c> over the texts (<c>vid_mdR</c>).</param>
/// <param name="TxtMdR">Video-to-text median rank, the same over the videos' ranks (<c>txt_mdR</c>; BLIP does not report it).</param>
/// <param name="RMean">Mean of <paramref name="TxtRMean"/> and <paramref name="VidRMean"/> (<c>r_mean</c>).</param>
/// <param name="VideoRanks">Per video: the 0-based position of its best-ranked text in its row of the video-to-text scores.</param>
/// <param name="TextRanks">Per text: the 0-based position of its video in its row of the text-to-video scores.</param>
public sealed record VideoRetrievalMetrics(
    double TxtR1, double TxtR5, double TxtR10, double TxtRMean,
    double VidR1, double VidR5, double VidR10, double VidRMean,
    double VidMdR, double TxtMdR, double RMean, int[] VideoRanks, int[] TextRanks)
{
    /// <summary>The metrics under BLIP's <c>eval_result</c> keys (<c>txt_r1</c> ... <c>vid_mdR</c>, <c>r_mean</c>) plus <c>txt_mdR</c>.</summary>
    public IReadOnlyDictionary<string, double> ToDictionary() => new Dictionary<string, double>
    {
        ["txt_r1"] = TxtR1, ["txt_r5"] = TxtR5, ["txt_r10"] = TxtR10, ["txt_r_mean"] = TxtRMean,
        ["vid_r1"] = VidR1, ["vid_r5"] = VidR5, ["vid_r10"] = VidR10, ["vid_r_mean"] = VidRMean,
        ["vid_mdR"] = VidMdR, ["txt_mdR"] = TxtMdR, ["r_mean"] = RMean,
    };

    /// <inheritdoc />
    public override string ToString() => string.Join(", ", ToDictionary().Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:0.##}")));
}

/// <summary>
/// Video retrieval metrics as salesforce/BLIP <c>eval_retrieval_video.py</c> <c>itm_eval</c> computes them: the
/// recalls of <see cref="RetrievalRecall"/> (a row's ranking is <c>np.argsort(score)[::-1]</c>; with one text per
/// video, as MSRVTT's test set, a video's rank is its text's position; with several, the best of them) and
/// <c>vid_mdR = np.median(ranks + 1)</c> over the text-to-video ranks (the mean of the two middle ranks for an even
/// count). <c>txt_mdR</c> is the same median over the video-to-text ranks, an addition: BLIP computes none.
/// </summary>
public static class VideoRetrievalRecall
{
    /// <summary>Computes the metrics from score tensors.</summary>
    /// <param name="scoresV2T">Video-to-text scores (nVideos, nTexts).</param>
    /// <param name="scoresT2V">Text-to-video scores (nTexts, nVideos).</param>
    /// <param name="textToVideo">Text j's video index (<c>txt2video</c>).</param>
    /// <param name="videoToTexts">Video i's text indices (<c>video2txt</c>).</param>
    /// <exception cref="ArgumentException">A shape, dtype, NaN score or mapping is wrong.</exception>
    public static VideoRetrievalMetrics Compute(Tensor scoresV2T, Tensor scoresT2V, IReadOnlyList<int> textToVideo, IReadOnlyList<IReadOnlyList<int>> videoToTexts) =>
        From(RetrievalRecall.Compute(scoresV2T, scoresT2V, textToVideo, videoToTexts));

    /// <summary>Computes the metrics from score matrices.</summary>
    /// <param name="scoresV2T">Video-to-text scores [nVideos, nTexts].</param>
    /// <param name="scoresT2V">Text-to-video scores [nTexts, nVideos].</param>
    /// <param name="textToVideo">Text j's video index.</param>
    /// <param name="videoToTexts">Video i's text indices.</param>
    /// <exception cref="ArgumentException">A shape, NaN score or mapping is wrong.</exception>
    public static VideoRetrievalMetrics Compute(double[,] scoresV2T, double[,] scoresT2V, IReadOnlyList<int> textToVideo, IReadOnlyList<IReadOnlyList<int>> videoToTexts) =>
        From(RetrievalRecall.Compute(scoresV2T, scoresT2V, textToVideo, videoToTexts));

    /// <summary>Computes the metrics from an evaluation's dense score matrices (BLIP's -100 fill outside the top-k).</summary>
    /// <param name="result">The result of <see cref="VideoRetrievalEvaluator"/>.</param>
    /// <param name="textToVideo">Text j's video index.</param>
    /// <param name="videoToTexts">Video i's text indices.</param>
    public static VideoRetrievalMetrics Compute(RetrievalResult result, IReadOnlyList<int> textToVideo, IReadOnlyList<IReadOnlyList<int>> videoToTexts)
    {
        ArgumentNullException.ThrowIfNull(result);
        using var v2t = result.DenseImageToText();                                      // (N_vid, N_txt)
        using var t2v = result.DenseTextToImage();                                      // (N_txt, N_vid)
        return Compute(v2t, t2v, textToVideo, videoToTexts);
    }

    /// <summary><c>np.median(ranks + 1)</c> of 0-based ranks: the middle value, or the mean of the two middle values.</summary>
    /// <param name="ranks">0-based ranks, at least one.</param>
    public static double MedianRank(IReadOnlyList<int> ranks)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        if (ranks.Count == 0) throw new ArgumentException("the median of no ranks is undefined.", nameof(ranks));
        var sorted = ranks.Select(r => r + 1.0).Order().ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    private static VideoRetrievalMetrics From(RetrievalRecallResult r) => new(
        r.TxtR1, r.TxtR5, r.TxtR10, r.TxtRMean, r.ImgR1, r.ImgR5, r.ImgR10, r.ImgRMean,
        MedianRank(r.TextRanks), MedianRank(r.ImageRanks), r.RMean, r.ImageRanks, r.TextRanks);
}
