using static TorchSharp.torch;

namespace BlipSharp.Training.Evaluation.Retrieval;

/// <summary>BLIP's <c>itm_eval</c> output (recalls in percent) plus the ranks behind it.</summary>
/// <param name="TxtR1">Image-to-text R@1: the share of images whose best-ranked own text is first (<c>txt_r1</c>).</param>
/// <param name="TxtR5">Image-to-text R@5 (<c>txt_r5</c>).</param>
/// <param name="TxtR10">Image-to-text R@10 (<c>txt_r10</c>).</param>
/// <param name="TxtRMean">Mean of the three image-to-text recalls (<c>txt_r_mean</c>).</param>
/// <param name="ImgR1">Text-to-image R@1: the share of texts whose image is first (<c>img_r1</c>).</param>
/// <param name="ImgR5">Text-to-image R@5 (<c>img_r5</c>).</param>
/// <param name="ImgR10">Text-to-image R@10 (<c>img_r10</c>).</param>
/// <param name="ImgRMean">Mean of the three text-to-image recalls (<c>img_r_mean</c>).</param>
/// <param name="RMean">Mean of <paramref name="TxtRMean"/> and <paramref name="ImgRMean"/> (<c>r_mean</c>).</param>
/// <param name="ImageRanks">Per image: the 0-based position of its best-ranked text in its row of the image-to-text scores.</param>
/// <param name="TextRanks">Per text: the 0-based position of its image in its row of the text-to-image scores.</param>
public sealed record RetrievalRecallResult(
    double TxtR1, double TxtR5, double TxtR10, double TxtRMean,
    double ImgR1, double ImgR5, double ImgR10, double ImgRMean,
    double RMean, int[] ImageRanks, int[] TextRanks);

/// <summary>
/// Retrieval recall exactly as salesforce/BLIP <c>train_retrieval.py</c> <c>itm_eval</c> computes it. Each query row is
/// ranked by <c>np.argsort(score)[::-1]</c> (highest score first): an image's rank is the best (smallest) position among
/// all its texts, a text's rank is the position of its one image; R@K = 100 · #(rank &lt; K) / #queries.
/// <para>
/// Ties: a candidate's position is the number of candidates with a strictly higher score plus the number of equal-scored
/// candidates with a higher index, i.e. a stable ascending argsort reversed. numpy's default (unstable) quicksort may
/// order ties differently when a target ties with another candidate; for BLIP's <c>-100</c> fill this cannot change
/// R@1/5/10 as long as every query's real scores (k_test &gt;= 10 of them) lie above the fill.
/// </para>
/// </summary>
public static class RetrievalRecall
{
    /// <summary>Computes <c>itm_eval</c> from score tensors.</summary>
    /// <param name="scoresI2T">Image-to-text scores, (nImages, nTexts), any floating dtype, any device.</param>
    /// <param name="scoresT2I">Text-to-image scores, (nTexts, nImages); not necessarily the transpose (BLIP fills them separately).</param>
    /// <param name="textToImage">Text j's image index (<c>txt2img</c>).</param>
    /// <param name="imageToTexts">Image i's text indices (<c>img2txt</c>).</param>
    /// <returns>The recalls and ranks.</returns>
    /// <exception cref="ArgumentException">A shape, dtype, NaN score or mapping is wrong.</exception>
    public static RetrievalRecallResult Compute(Tensor scoresI2T, Tensor scoresT2I, IReadOnlyList<int> textToImage, IReadOnlyList<IReadOnlyList<int>> imageToTexts)
    {
        ArgumentNullException.ThrowIfNull(scoresI2T);
        ArgumentNullException.ThrowIfNull(scoresT2I);
        return Compute(ToMatrix(scoresI2T, nameof(scoresI2T)), ToMatrix(scoresT2I, nameof(scoresT2I)), textToImage, imageToTexts);
    }

    /// <summary>Computes <c>itm_eval</c> from single-precision score matrices.</summary>
    /// <param name="scoresI2T">Image-to-text scores, [nImages, nTexts].</param>
    /// <param name="scoresT2I">Text-to-image scores, [nTexts, nImages].</param>
    /// <param name="textToImage">Text j's image index.</param>
    /// <param name="imageToTexts">Image i's text indices.</param>
    /// <returns>The recalls and ranks.</returns>
    /// <exception cref="ArgumentException">A shape, NaN score or mapping is wrong.</exception>
    public static RetrievalRecallResult Compute(float[,] scoresI2T, float[,] scoresT2I, IReadOnlyList<int> textToImage, IReadOnlyList<IReadOnlyList<int>> imageToTexts)
    {
        ArgumentNullException.ThrowIfNull(scoresI2T);
        ArgumentNullException.ThrowIfNull(scoresT2I);
        return Compute(Widen(scoresI2T), Widen(scoresT2I), textToImage, imageToTexts);
    }

    /// <summary>Computes <c>itm_eval</c> from double-precision score matrices.</summary>
    /// <param name="scoresI2T">Image-to-text scores, [nImages, nTexts].</param>
    /// <param name="scoresT2I">Text-to-image scores, [nTexts, nImages].</param>
    /// <param name="textToImage">Text j's image index.</param>
    /// <param name="imageToTexts">Image i's text indices.</param>
    /// <returns>The recalls and ranks.</returns>
    /// <exception cref="ArgumentException">A shape, NaN score or mapping is wrong.</exception>
    public static RetrievalRecallResult Compute(double[,] scoresI2T, double[,] scoresT2I, IReadOnlyList<int> textToImage, IReadOnlyList<IReadOnlyList<int>> imageToTexts)
    {
        ArgumentNullException.ThrowIfNull(scoresI2T);
        ArgumentNullException.ThrowIfNull(scoresT2I);
        ArgumentNullException.ThrowIfNull(textToImage);
        ArgumentNullException.ThrowIfNull(imageToTexts);
        int nImages = imageToTexts.Count, nTexts = textToImage.Count;
        if (nImages == 0 || nTexts == 0)
            throw new ArgumentException($"retrieval needs at least one image and one text, got {nImages} images and {nTexts} texts");
        if (scoresI2T.GetLength(0) != nImages || scoresI2T.GetLength(1) != nTexts)
            throw new ArgumentException($"scoresI2T must be [nImages, nTexts] = [{nImages}, {nTexts}] (from imageToTexts and textToImage), got [{scoresI2T.GetLength(0)}, {scoresI2T.GetLength(1)}]", nameof(scoresI2T));
        if (scoresT2I.GetLength(0) != nTexts || scoresT2I.GetLength(1) != nImages)
            throw new ArgumentException($"scoresT2I must be [nTexts, nImages] = [{nTexts}, {nImages}], got [{scoresT2I.GetLength(0)}, {scoresT2I.GetLength(1)}]", nameof(scoresT2I));
        CheckMappings(textToImage, imageToTexts);
        CheckFinite(scoresI2T, nameof(scoresI2T));
        CheckFinite(scoresT2I, nameof(scoresT2I));

        // Images -> texts: the best position among the image's texts.
        var imageRanks = new int[nImages];
        for (int i = 0; i < nImages; i++)
        {
            int best = int.MaxValue;
            foreach (int t in imageToTexts[i]) best = Math.Min(best, Position(scoresI2T, i, t));
            imageRanks[i] = best;
        }
        // Texts -> images: the position of the text's image.
        var textRanks = new int[nTexts];
        for (int j = 0; j < nTexts; j++) textRanks[j] = Position(scoresT2I, j, textToImage[j]);

        double tr1 = Recall(imageRanks, 1), tr5 = Recall(imageRanks, 5), tr10 = Recall(imageRanks, 10);
        double ir1 = Recall(textRanks, 1), ir5 = Recall(textRanks, 5), ir10 = Recall(textRanks, 10);
        double trMean = (tr1 + tr5 + tr10) / 3;
        double irMean = (ir1 + ir5 + ir10) / 3;
        double rMean = (trMean + irMean) / 2;
        return new RetrievalRecallResult(tr1, tr5, tr10, trMean, ir1, ir5, ir10, irMean, rMean, imageRanks, textRanks);
    }

    /// <summary>
    /// The 0-based position of <paramref name="target"/> in <c>argsort(scores[row])[::-1]</c>: higher scores first,
    /// ties broken towards the higher index (a stable ascending sort, reversed).
    /// </summary>
    private static int Position(double[,] scores, int row, int target)
    {
        double s = scores[row, target];
        int n = scores.GetLength(1), position = 0;
        for (int k = 0; k < n; k++)
        {
            double v = scores[row, k];
            if (v > s || (v == s && k > target)) position++;
        }
        return position;
    }

    /// <summary><c>100.0 * len(np.where(ranks &lt; k)[0]) / len(ranks)</c>.</summary>
    private static double Recall(int[] ranks, int k) => 100.0 * ranks.Count(r => r < k) / ranks.Length;

    private static void CheckMappings(IReadOnlyList<int> textToImage, IReadOnlyList<IReadOnlyList<int>> imageToTexts)
    {
        int nImages = imageToTexts.Count, nTexts = textToImage.Count;
        for (int j = 0; j < nTexts; j++)
            if (textToImage[j] < 0 || textToImage[j] >= nImages)
                throw new ArgumentException($"textToImage[{j}] = {textToImage[j]} is not an image index (0..{nImages - 1})", nameof(textToImage));
        var owner = new int[nTexts];
        Array.Fill(owner, -1);
        for (int i = 0; i < nImages; i++)
        {
            var texts = imageToTexts[i] ?? throw new ArgumentException($"imageToTexts[{i}] is null", nameof(imageToTexts));
            if (texts.Count == 0) throw new ArgumentException($"imageToTexts[{i}] is empty: image {i} has no texts, so it has no rank", nameof(imageToTexts));
            foreach (int t in texts)
            {
                if (t < 0 || t >= nTexts)
                    throw new ArgumentException($"imageToTexts[{i}] lists text {t}, not a text index (0..{nTexts - 1})", nameof(imageToTexts));
                if (owner[t] >= 0)
                    throw new ArgumentException($"text {t} is listed under image {owner[t]} and image {i} in imageToTexts", nameof(imageToTexts));
                owner[t] = i;
                if (textToImage[t] != i)
                    throw new ArgumentException($"imageToTexts[{i}] lists text {t}, but textToImage[{t}] = {textToImage[t]}", nameof(imageToTexts));
            }
        }
        for (int j = 0; j < nTexts; j++)
            if (owner[j] < 0)
                throw new ArgumentException($"text {j} (textToImage[{j}] = {textToImage[j]}) is not listed in imageToTexts[{textToImage[j]}]", nameof(imageToTexts));
    }

    private static void CheckFinite(double[,] scores, string name)
    {
        for (int r = 0; r < scores.GetLength(0); r++)
            for (int c = 0; c < scores.GetLength(1); c++)
                if (double.IsNaN(scores[r, c]))
                    throw new ArgumentException($"{name}[{r}, {c}] is NaN: a NaN score has no rank", name);
    }

    private static double[,] ToMatrix(Tensor scores, string name)
    {
        if (scores.dim() != 2) throw new ArgumentException($"{name} must be a 2-D score matrix, got shape [{string.Join(", ", scores.shape)}]", name);
        if (!scores.is_floating_point()) throw new ArgumentException($"{name} must have a floating dtype, got {scores.dtype}", name);
        using var scope = NewDisposeScope();
        var cpu = scores.detach().to(CPU).to_type(ScalarType.Float64).contiguous();
        int rows = (int)scores.shape[0], cols = (int)scores.shape[1];
        var flat = cpu.data<double>().ToArray(); // (rows * cols), row-major
        var matrix = new double[rows, cols];
        Buffer.BlockCopy(flat, 0, matrix, 0, flat.Length * sizeof(double));
        return matrix;
    }

    private static double[,] Widen(float[,] scores)
    {
        var matrix = new double[scores.GetLength(0), scores.GetLength(1)];
        for (int r = 0; r < scores.GetLength(0); r++)
            for (int c = 0; c < scores.GetLength(1); c++)
                matrix[r, c] = scores[r, c];
        return matrix;
    }
}
