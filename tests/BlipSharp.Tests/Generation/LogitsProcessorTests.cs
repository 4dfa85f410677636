using BlipSharp.Generation;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace BlipSharp.Tests.Generation;

/// <summary>Each logits processor against values worked out by hand from transformers' definitions.</summary>
public sealed class LogitsProcessorTests
{
    private static List<long>[] Rows(params long[][] rows) => rows.Select(r => r.ToList()).ToArray();

    private static float[] Row(Tensor scores, int row) => scores[row].data<float>().ToArray();

    [Fact]
    public void MinLengthForbidsTheEndTokenOnlyWhileTooShort()
    {
        var scores = tensor(new float[] { 1, 2, 3, 4 }).reshape(1, 4);
        new MinLengthProcessor(3, eosTokenId: 2).Process(Rows([7, 8]), scores);
        Assert.Equal(new float[] { 1, 2, float.NegativeInfinity, 4 }, Row(scores, 0));
        var later = tensor(new float[] { 1, 2, 3, 4 }).reshape(1, 4);
        new MinLengthProcessor(3, eosTokenId: 2).Process(Rows([7, 8, 9]), later);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, Row(later, 0));
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeScoresOfSeenTokensOnce()
    {
        var scores = tensor(new float[] { 2, -2, 4, -4, 8 }).reshape(1, 5);
        new RepetitionPenaltyProcessor(2.0).Process(Rows([0, 1, 1, 3]), scores); // token 1 seen twice: penalised once
        Assert.Equal(new float[] { 1, -4, 4, -8, 8 }, Row(scores, 0));
    }

    [Fact]
    public void NoRepeatNgramBansTheTokenThatWouldRepeatAnNgram()
    {
        // Row 0: "5 6 7 5 6" -> the bigram (6, 7) follows 6: with n = 3, the prefix (5, 6) was followed by 7, so 7 is banned.
        // Row 1: no repeated prefix, nothing banned.
        var scores = zeros(2, 10);
        new NoRepeatNgramProcessor(3).Process(Rows([5, 6, 7, 5, 6], [1, 2, 3, 4, 5]), scores);
        Assert.Equal(float.NegativeInfinity, Row(scores, 0)[7]);
        Assert.Equal(1, Row(scores, 0).Count(float.IsNegativeInfinity));
        Assert.DoesNotContain(Row(scores, 1), float.IsNegativeInfinity);
        // n = 1 bans every token already present.
        var unigram = zeros(1, 10);
        new NoRepeatNgramProcessor(1).Process(Rows([2, 4, 4]), unigram);
        Assert.Equal(new[] { 2, 4 }, Row(unigram, 0).Select((v, i) => (v, i)).Where(x => float.IsNegativeInfinity(x.v)).Select(x => x.i));
    }

    [Fact]
    public void TopKKeepsTheKHighestAndTies()
    {
        var scores = tensor(new float[] { 1, 5, 3, 5, 2 }).reshape(1, 5);
        new TopKWarper(2).Process(Rows([0]), scores);
        Assert.Equal(new float[] { float.NegativeInfinity, 5, float.NegativeInfinity, 5, float.NegativeInfinity }, Row(scores, 0));
        var tie = tensor(new float[] { 1, 5, 3, 3, 2 }).reshape(1, 5);
        new TopKWarper(2).Process(Rows([0]), tie); // the 2nd highest is tied: both 3s stay
        Assert.Equal(3, Row(tie, 0).Count(v => !float.IsNegativeInfinity(v)));
    }

    [Fact]
    public void TopPKeepsTheSmallestSetReachingP()
    {
        // probabilities 0.5, 0.3, 0.15, 0.05
        var probs = new double[] { 0.5, 0.3, 0.15, 0.05 };
        var scores = tensor(probs.Select(p => (float)Math.Log(p)).ToArray()).reshape(1, 4);
        new TopPWarper(0.75).Process(Rows([0]), scores); // 0.5 + 0.3 >= 0.75: keep two
        Assert.Equal(new[] { false, false, true, true }, Row(scores, 0).Select(float.IsNegativeInfinity));
        var one = tensor(new float[] { 10, 0, 0 }).reshape(1, 3);
        new TopPWarper(0.01).Process(Rows([0]), one); // always keeps the most likely token
        Assert.Equal(new[] { false, true, true }, Row(one, 0).Select(float.IsNegativeInfinity));
    }

    [Fact]
    public void TemperatureDividesTheScores()
    {
        var scores = tensor(new float[] { 1, -2, 4 }).reshape(1, 3);
        new TemperatureWarper(0.5).Process(Rows([0]), scores);
        Assert.Equal(new float[] { 2, -4, 8 }, Row(scores, 0));
    }

    [Fact]
    public void OptionsRejectImpossibleSettingsByName()
    {
        Assert.Equal("NumBeams", Assert.ThrowsAny<ArgumentException>(() => new GenerationOptions { NumBeams = 0 }.Validate()).ParamName);
        Assert.Equal("TopP", Assert.ThrowsAny<ArgumentException>(() => new GenerationOptions { TopP = 0 }.Validate()).ParamName);
        Assert.Equal("NumReturnSequences", Assert.ThrowsAny<ArgumentException>(() => new GenerationOptions { NumBeams = 2, NumReturnSequences = 3 }.Validate()).ParamName);
        Assert.Equal("NumReturnSequences", Assert.ThrowsAny<ArgumentException>(() => new GenerationOptions { NumReturnSequences = 2 }.Validate()).ParamName);
        new GenerationOptions { DoSample = true, NumReturnSequences = 5 }.Validate();
    }
}
