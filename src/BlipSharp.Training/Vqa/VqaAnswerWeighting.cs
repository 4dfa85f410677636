using BlipSharp.Training.Data;

namespace BlipSharp.Training.Vqa;

/// <summary>One distinct answer of a training question and its weight.</summary>
/// <param name="Answer">The answer text as annotated.</param>
/// <param name="Weight">Its share of the annotators (VQA) or <see cref="VqaAnswerWeighting.VisualGenomeWeight"/>.</param>
public sealed record WeightedAnswer(string Answer, double Weight);

/// <summary>
/// One training question with its cleaned text and weighted answers, as BLIP's <c>vqa_dataset.__getitem__</c>
/// (split <c>'train'</c>) returns it (the image is loaded separately).
/// </summary>
/// <param name="Question">The question after <see cref="TextCleaning.PreQuestion"/>.</param>
/// <param name="Answers">The distinct answers in order of first appearance, with their weights.</param>
/// <param name="Image">The annotation's image path.</param>
public sealed record VqaTrainingItem(string Question, IReadOnlyList<WeightedAnswer> Answers, string Image);

/// <summary>
/// A collated batch as BLIP's <c>vqa_collate_fn</c> makes it: questions, every question's answers flattened in
/// order, the float32 weight of each answer, and how many answers each question has.
/// </summary>
/// <param name="Questions">(Nq) cleaned questions.</param>
/// <param name="Answers">(Na) answers, question by question.</param>
/// <param name="Weights">(Na) answer weights, rounded to float32 as <c>torch.Tensor(weight_list)</c> does.</param>
/// <param name="AnswerCounts">(Nq) answers per question (BLIP's <c>n</c>); they sum to Na.</param>
public sealed record VqaCollatedText(IReadOnlyList<string> Questions, IReadOnlyList<string> Answers, float[] Weights, int[] AnswerCounts);

/// <summary>BLIP's answer weighting for VQA fine-tuning (<c>data/vqa_dataset.py</c>).</summary>
public static class VqaAnswerWeighting
{
    /// <summary>The weight of a Visual Genome answer (BLIP: 0.2).</summary>
    public const double VisualGenomeWeight = 0.2;

    /// <summary>
    /// <c>__getitem__</c> of the training split: the question through <c>pre_question</c> (BLIP's default of 50 words);
    /// for a VQA item each annotator answer adds <c>1/len(answers)</c> to its answer, summed in double precision in
    /// annotation order (a Python dict: distinct answers in order of first appearance); a Visual Genome item's answer
    /// gets <see cref="VisualGenomeWeight"/>.
    /// </summary>
    /// <param name="annotation">A training annotation (with answers).</param>
    /// <param name="maxQuestionWords">The <c>max_ques_words</c> of <c>pre_question</c>.</param>
    public static VqaTrainingItem Weigh(VqaAnnotation annotation, int maxQuestionWords = TextCleaning.DefaultMaxWords)
    {
        ArgumentNullException.ThrowIfNull(annotation);
        if (annotation.Answers.Count == 0)
            throw new ArgumentException($"the annotation of question '{annotation.Question}' has no answer to train on.", nameof(annotation));
        string question = TextCleaning.PreQuestion(annotation.Question, maxQuestionWords);
        if (annotation.Source == VqaSource.VisualGenome)
        {
            if (annotation.Answers.Count != 1)
                throw new ArgumentException($"a Visual Genome annotation has one answer, got {annotation.Answers.Count}.", nameof(annotation));
            return new VqaTrainingItem(question, [new WeightedAnswer(annotation.Answers[0], VisualGenomeWeight)], annotation.Image);
        }
        double share = 1.0 / annotation.Answers.Count;
        var order = new List<string>();
        var weights = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (string answer in annotation.Answers)
        {
            if (weights.TryGetValue(answer, out double w)) weights[answer] = w + share;
            else
            {
                weights[answer] = share;
                order.Add(answer);
            }
        }
        return new VqaTrainingItem(question, order.Select(a => new WeightedAnswer(a, weights[a])).ToList(), annotation.Image);
    }

    /// <summary><c>vqa_collate_fn</c> of the texts: flattens the answers and weights and records each question's count.</summary>
    /// <param name="items">The batch's items, in order.</param>
    public static VqaCollatedText Collate(IReadOnlyList<VqaTrainingItem> items)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0) throw new ArgumentException("a batch needs at least one question.", nameof(items));
        var answers = new List<string>();
        var weights = new List<float>();
        var counts = new int[items.Count];
        for (int i = 0; i < items.Count; i++)
        {
            foreach (var a in items[i].Answers)
            {
                answers.Add(a.Answer);
                weights.Add((float)a.Weight);
            }
            counts[i] = items[i].Answers.Count;
        }
        return new VqaCollatedText(items.Select(i => i.Question).ToList(), answers, weights.ToArray(), counts);
    }
}
