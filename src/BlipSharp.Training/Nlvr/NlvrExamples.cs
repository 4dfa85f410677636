using BlipSharp.Training.Data;

namespace BlipSharp.Training.Nlvr;

/// <summary>
/// One NLVR2 statement as the model reads it: the two images in the order they are given to the model, the cleaned
/// (and possibly left/right-swapped) sentence, and the target.
/// </summary>
/// <param name="First">The image given as the first (left) image.</param>
/// <param name="Second">The image given as the second (right) image.</param>
/// <param name="Sentence">The sentence after <c>pre_caption(sentence, max_words)</c> and, when <paramref name="Swapped"/>, the left/right swap.</param>
/// <param name="Target">1 when the statement is true, else 0.</param>
/// <param name="Swapped">The images were swapped (and "left"/"right" in the sentence with them).</param>
/// <param name="Item">The annotation it came from.</param>
public sealed record NlvrExample(ImageSource First, ImageSource Second, string Sentence, int Target, bool Swapped, NlvrItem Item);

/// <summary>
/// What salesforce/BLIP's <c>data/nlvr_dataset.py</c> does to a statement besides the image transform: the sentence
/// becomes <c>pre_caption(sentence, 40)</c>, the label <c>'True'</c> 1 and anything else 0, and with probability 0.5
/// the two images trade places and every word that is exactly <c>left</c> becomes <c>right</c> and vice versa.
/// </summary>
/// <remarks>
/// BLIP's <c>__getitem__</c> spells this as two branches (with and without a left/right word) that draw one or two
/// random numbers; either way the pair is kept with probability 0.5, and otherwise the images are swapped and the
/// words swapped (a sentence without them is unchanged by the word swap). Words are the pieces of
/// <c>sentence.split(' ')</c>, so <c>left,</c> or <c>left-hand</c> are not swapped, exactly as in BLIP
/// (<see cref="TextCleaning.SwapLeftRight"/> would swap <c>left,</c>). BLIP applies the same random swap to its
/// validation and test sets, which makes its reported accuracy vary from run to run; BlipSharp's evaluation
/// (<see cref="ForEvaluation"/>) does not swap.
/// </remarks>
public static class NlvrExamples
{
    /// <summary>The <c>max_words</c> BLIP's NLVR dataset passes to <c>pre_caption</c>.</summary>
    public const int BlipMaxWords = 40;

    /// <summary>BLIP's probability of keeping the pair as it is.</summary>
    public const double KeepProbability = 0.5;

    /// <summary>A training example: cleaned, then swapped with probability 0.5 (one draw of <paramref name="random"/>).</summary>
    /// <param name="item">The statement.</param>
    /// <param name="maxWords">The <c>max_words</c> of <c>pre_caption</c> (BLIP: 40).</param>
    /// <param name="random">The random source of the swap.</param>
    public static NlvrExample ForTraining(NlvrItem item, int maxWords, Random random)
    {
        ArgumentNullException.ThrowIfNull(item);
        ArgumentNullException.ThrowIfNull(random);
        string sentence = TextCleaning.PreCaption(item.Sentence, maxWords);
        int target = item.Label ? 1 : 0;
        return random.NextDouble() < KeepProbability
            ? new NlvrExample(item.Left, item.Right, sentence, target, false, item)
            : new NlvrExample(item.Right, item.Left, SwapLeftRightWords(sentence), target, true, item);
    }

    /// <summary>An evaluation example: cleaned, never swapped.</summary>
    /// <param name="item">The statement.</param>
    /// <param name="maxWords">The <c>max_words</c> of <c>pre_caption</c> (BLIP: 40).</param>
    public static NlvrExample ForEvaluation(NlvrItem item, int maxWords)
    {
        ArgumentNullException.ThrowIfNull(item);
        return new NlvrExample(item.Left, item.Right, TextCleaning.PreCaption(item.Sentence, maxWords), item.Label ? 1 : 0, false, item);
    }

    /// <summary>
    /// BLIP's word swap: the sentence split on single spaces, each piece that is exactly <c>left</c> replaced by
    /// <c>right</c> and vice versa, joined with single spaces.
    /// </summary>
    /// <param name="sentence">A cleaned sentence.</param>
    public static string SwapLeftRightWords(string sentence)
    {
        ArgumentNullException.ThrowIfNull(sentence);
        var words = sentence.Split(' ');
        for (int i = 0; i < words.Length; i++)
            words[i] = words[i] switch
            {
                "left" => "right",
                "right" => "left",
                var w => w,
            };
        return string.Join(' ', words);
    }
}
