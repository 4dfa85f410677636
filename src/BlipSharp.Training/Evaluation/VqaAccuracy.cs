using System.Globalization;
using System.Numerics;

namespace BlipSharp.Training.Evaluation.Vqa;

/// <summary>Which version of the official <c>vqaEval.py</c> to reproduce.</summary>
public enum VqaEvalVersion
{
    /// <summary>
    /// GT-Vision-Lab/VQA HEAD (a013f00, "Fixed processing answers bug", 2021): GT answers and prediction are cleaned
    /// (<c>\n</c>/<c>\t</c> to space, strip); only when the cleaned GT answers are not all identical are all of them and the
    /// prediction put through <c>processPunctuation</c> and <c>processDigitArticle</c>. When the humans agree nothing else
    /// happens, not even lowercasing.
    /// </summary>
    Head,

    /// <summary>
    /// The version before 2021 (a4f1afd), copied into salesforce/LAVIS: the prediction always gets clean + punctuation +
    /// digit/article; the GT answers are not stripped and get <c>processPunctuation</c> only, and only when they are not
    /// all identical.
    /// </summary>
    Pre2021,
}

/// <summary>One question scored: what was compared and the result.</summary>
/// <param name="Accuracy">Unrounded accuracy in [0, 1]: the mean over the GT answers (by position) of min(1, matches among the others / 3).</param>
/// <param name="EvalQA">What <c>vqaEval</c> stores per question: <c>round(100 * Accuracy, 2)</c>.</param>
/// <param name="PredictionCompared">The prediction as compared.</param>
/// <param name="GtAnswersCompared">The GT answers as compared, in order.</param>
public sealed record VqaAnswerScore(double Accuracy, double EvalQA, string PredictionCompared, IReadOnlyList<string> GtAnswersCompared);

/// <summary>One annotated question scored.</summary>
/// <param name="QuestionId">The question id.</param>
/// <param name="QuestionType">The annotation's <c>question_type</c>.</param>
/// <param name="AnswerType">The annotation's <c>answer_type</c>.</param>
/// <param name="Score">The comparison and its accuracy.</param>
public sealed record VqaQuestionScore(long QuestionId, string QuestionType, string AnswerType, VqaAnswerScore Score);

/// <summary>The official VQA evaluation's output (<c>vqaEval.accuracy</c> and <c>vqaEval.evalQA</c>).</summary>
/// <param name="Overall"><c>round(100 * mean(unrounded accuracies), 2)</c>.</param>
/// <param name="PerQuestionType">The same per <c>question_type</c>, in order of first appearance.</param>
/// <param name="PerAnswerType">The same per <c>answer_type</c>, in order of first appearance.</param>
/// <param name="MeanUnroundedAccuracyX100"><c>100 * sum(unrounded accuracies) / count</c>, before rounding.</param>
/// <param name="Questions">Every question, in annotation order.</param>
public sealed record VqaAccuracyResult(
    double Overall,
    IReadOnlyDictionary<string, double> PerQuestionType,
    IReadOnlyDictionary<string, double> PerAnswerType,
    double MeanUnroundedAccuracyX100,
    IReadOnlyList<VqaQuestionScore> Questions);

/// <summary>
/// VQA accuracy exactly as GT-Vision-Lab/VQA <c>vqaEval.py</c> (<c>VQAEval(n=2).evaluate()</c>) computes it, for
/// either <see cref="VqaEvalVersion"/>. Sums run in the reference's order (annotation order, left to right), so the
/// unrounded values are bit-identical; rounding is Python 2.7's <c>round</c> (exact, half away from zero).
/// </summary>
public static class VqaAccuracy
{
    /// <summary>Decimal places of the reported numbers (<c>VQAEval(n=2)</c>).</summary>
    public const int Decimals = 2;

    /// <summary>Scores one prediction against its GT answers.</summary>
    /// <param name="prediction">The predicted answer, raw.</param>
    /// <param name="gtAnswers">The human answers, raw, in annotation order (usually 10).</param>
    /// <param name="version">Which reference version to reproduce.</param>
    /// <returns>The compared strings, the unrounded accuracy and <c>evalQA</c>.</returns>
    public static VqaAnswerScore ScoreAnswer(string prediction, IReadOnlyList<string> gtAnswers, VqaEvalVersion version = VqaEvalVersion.Head)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        ArgumentNullException.ThrowIfNull(gtAnswers);
        if (gtAnswers.Count == 0) throw new ArgumentException("a question needs at least one GT answer", nameof(gtAnswers));
        string pred;
        string[] gts;
        if (version == VqaEvalVersion.Head)
        {
            pred = VqaAnswerNormalizer.CleanWhitespace(prediction);
            gts = gtAnswers.Select(VqaAnswerNormalizer.CleanWhitespace).ToArray();
            if (gts.Distinct(StringComparer.Ordinal).Skip(1).Any())
            {
                gts = gts.Select(VqaAnswerNormalizer.Normalize).ToArray();
                pred = VqaAnswerNormalizer.Normalize(pred);
            }
        }
        else
        {
            pred = VqaAnswerNormalizer.Normalize(VqaAnswerNormalizer.CleanWhitespace(prediction));
            gts = gtAnswers.ToArray();
            if (gts.Distinct(StringComparer.Ordinal).Skip(1).Any())
                gts = gts.Select(VqaAnswerNormalizer.ProcessPunctuation).ToArray();
        }

        // Leave-one-out by position: for GT answer i, count the other answers equal to the prediction.
        int total = gts.Count(g => string.Equals(g, pred, StringComparison.Ordinal));
        double sum = 0;
        for (int i = 0; i < gts.Length; i++)
        {
            int matches = total - (string.Equals(gts[i], pred, StringComparison.Ordinal) ? 1 : 0);
            sum += Math.Min(1.0, matches / 3.0);
        }
        double accuracy = sum / gts.Length;
        return new VqaAnswerScore(accuracy, PythonRound(100 * accuracy, Decimals), pred, gts);
    }

    /// <summary>Scores every annotated question (in annotation order) with its prediction.</summary>
    /// <param name="annotations">The annotations.</param>
    /// <param name="predictions">The predicted answer of every annotated question id.</param>
    /// <param name="version">Which reference version to reproduce.</param>
    /// <returns>Overall, per question type and per answer type accuracy, and every question's score.</returns>
    /// <exception cref="KeyNotFoundException">A question id has no prediction.</exception>
    public static VqaAccuracyResult Evaluate(IReadOnlyList<OfficialVqaAnnotation> annotations, IReadOnlyDictionary<long, string> predictions, VqaEvalVersion version = VqaEvalVersion.Head)
    {
        ArgumentNullException.ThrowIfNull(annotations);
        ArgumentNullException.ThrowIfNull(predictions);
        if (annotations.Count == 0) throw new ArgumentException("no annotations to score", nameof(annotations));
        var questions = new List<VqaQuestionScore>(annotations.Count);
        var byQuestionType = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        var byAnswerType = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        var questionTypeOrder = new List<string>();
        var answerTypeOrder = new List<string>();
        var all = new List<double>(annotations.Count);
        foreach (var a in annotations)
        {
            if (!predictions.TryGetValue(a.QuestionId, out var prediction))
                throw new KeyNotFoundException($"no prediction for question_id {a.QuestionId}");
            var score = ScoreAnswer(prediction, a.Answers.Select(x => x.Answer).ToList(), version);
            questions.Add(new VqaQuestionScore(a.QuestionId, a.QuestionType, a.AnswerType, score));
            all.Add(score.Accuracy);
            Add(byQuestionType, questionTypeOrder, a.QuestionType, score.Accuracy);
            Add(byAnswerType, answerTypeOrder, a.AnswerType, score.Accuracy);
        }
        return new VqaAccuracyResult(
            RoundedMean(all),
            questionTypeOrder.ToDictionary(t => t, t => RoundedMean(byQuestionType[t]), StringComparer.Ordinal),
            answerTypeOrder.ToDictionary(t => t, t => RoundedMean(byAnswerType[t]), StringComparer.Ordinal),
            MeanX100(all),
            questions);
    }

    /// <summary>
    /// Python 2.7's <c>round(x, ndigits)</c> for <paramref name="ndigits"/> &gt;= 0: the exact binary value is rounded to
    /// <paramref name="ndigits"/> decimals, halfway cases away from zero, and the result is the double nearest that
    /// decimal. (Python 3 rounds halfway cases to even; <c>Math.Round</c> scales inexactly.)
    /// </summary>
    /// <param name="x">The value.</param>
    /// <param name="ndigits">Decimal places, 0 or more.</param>
    /// <returns>The rounded value.</returns>
    public static double PythonRound(double x, int ndigits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ndigits);
        if (!double.IsFinite(x) || x == 0) return x;
        long bits = BitConverter.DoubleToInt64Bits(x);
        bool negative = bits < 0;
        int exponentField = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        // |x| = mantissa * 2^exponent exactly.
        BigInteger mantissa = exponentField == 0 ? fraction : fraction | (1L << 52);
        int exponent = exponentField == 0 ? -1074 : exponentField - 1075;
        BigInteger scaled = mantissa * BigInteger.Pow(10, ndigits);
        BigInteger quotient;
        if (exponent >= 0)
        {
            quotient = scaled << exponent;
        }
        else
        {
            BigInteger denominator = BigInteger.One << -exponent;
            quotient = BigInteger.DivRem(scaled, denominator, out var remainder);
            if (remainder * 2 >= denominator) quotient += 1;
        }
        double result = double.Parse($"{quotient.ToString(CultureInfo.InvariantCulture)}E-{ndigits}", NumberStyles.Float, CultureInfo.InvariantCulture);
        return negative ? -result : result;
    }

    private static void Add(Dictionary<string, List<double>> groups, List<string> order, string key, double value)
    {
        if (!groups.TryGetValue(key, out var list))
        {
            groups[key] = list = [];
            order.Add(key);
        }
        list.Add(value);
    }

    /// <summary><c>100 * float(sum(values)) / len(values)</c>, summed left to right.</summary>
    private static double MeanX100(List<double> values)
    {
        double sum = 0;
        foreach (double v in values) sum += v;
        return 100 * sum / values.Count;
    }

    private static double RoundedMean(List<double> values) => PythonRound(MeanX100(values), Decimals);
}
